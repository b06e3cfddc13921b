#include <nlohmann/json.hpp>

#include "faultline/stats.h"

namespace faultline {

std::string PagerStats::to_json() const {
  nlohmann::ordered_json latency = {
      {"count", fault_latency.count},   {"p50_ns", fault_latency.p50_ns},
      {"p90_ns", fault_latency.p90_ns}, {"p99_ns", fault_latency.p99_ns},
      {"max_ns", fault_latency.max_ns}, {"mean_ns", fault_latency.mean_ns},
  };
#define FAULTLINE_COUNTER_JSON(name) {#name, name},
  nlohmann::ordered_json j = {
      FAULTLINE_PAGER_COUNTERS(FAULTLINE_COUNTER_JSON){"fault_latency", latency},
  };
#undef FAULTLINE_COUNTER_JSON
  return j.dump();
}

}  // namespace faultline
