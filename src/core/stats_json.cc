#include <nlohmann/json.hpp>

#include "faultline/stats.h"

namespace faultline {

std::string PagerStats::to_json() const {
  nlohmann::ordered_json latency = {
      {"count", fault_latency.count},   {"p50_ns", fault_latency.p50_ns},
      {"p90_ns", fault_latency.p90_ns}, {"p99_ns", fault_latency.p99_ns},
      {"max_ns", fault_latency.max_ns}, {"mean_ns", fault_latency.mean_ns},
  };
  nlohmann::ordered_json j = {
      {"faults", faults},
      {"prewarmed", prewarmed},
      {"bytes_served", bytes_served},
      {"zero_pages", zero_pages},
      {"source_errors", source_errors},
      {"source_retries", source_retries},
      {"out_of_region", out_of_region},
      {"fault_around_pages", fault_around_pages},
      {"fetched_ahead_pages", fetched_ahead_pages},
      {"fault_latency", latency},
  };
  return j.dump();
}

}  // namespace faultline
