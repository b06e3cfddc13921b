// Counters and latency figures a user can read.
#pragma once

#include <cstdint>
#include <string>

namespace faultline {

// A summary of a latency histogram, in nanoseconds. Percentiles are accurate
// to the histogram's bucket width (about 6%).
struct LatencySummary {
  uint64_t count = 0;
  uint64_t p50_ns = 0;
  uint64_t p90_ns = 0;
  uint64_t p99_ns = 0;
  uint64_t max_ns = 0;
  uint64_t mean_ns = 0;
};

// A snapshot of the Pager's monotonic counters.
struct PagerStats {
  uint64_t faults = 0;               // serve_fault calls that produced a page
  uint64_t prewarmed = 0;            // pages served by prewarm()
  uint64_t bytes_served = 0;         // bytes produced, faults and prewarm together
  uint64_t zero_pages = 0;           // pages the source reported as all zero
  uint64_t source_errors = 0;        // faults that failed after every retry
  uint64_t source_retries = 0;       // individual retried fetches
  uint64_t out_of_region = 0;        // faults outside every registered region
  uint64_t fault_around_pages = 0;   // pages served with a fault, after the faulting page
  uint64_t fetched_ahead_pages = 0;  // pages fetched by background fill
  LatencySummary fault_latency;      // serve_fault time, fetch and retries included

  std::string to_json() const;
};

}  // namespace faultline
