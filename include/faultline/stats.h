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

// The Pager's monotonic counters, each named once here: PagerStats holds them
// as plain fields, and the Pager keeps atomics made from the same list.
#define FAULTLINE_PAGER_COUNTERS(X)                                               \
  X(faults)              /* serve_fault calls that produced a page */             \
  X(prewarmed)           /* pages served by prewarm() */                          \
  X(bytes_served)        /* bytes produced, faults and prewarm together */        \
  X(zero_pages)          /* pages the source reported as all zero */              \
  X(source_errors)       /* faults that failed after every retry */               \
  X(source_retries)      /* individual retried fetches */                         \
  X(out_of_region)       /* faults outside every registered region */             \
  X(fault_around_pages)  /* pages served with a fault, after the faulting page */ \
  X(fetched_ahead_pages) /* pages fetched by background fill */

// One counter as a plain field of a snapshot.
#define FAULTLINE_COUNTER_FIELD(name) uint64_t name = 0;

// A snapshot of the Pager's counters.
struct PagerStats {
  FAULTLINE_PAGER_COUNTERS(FAULTLINE_COUNTER_FIELD)
  LatencySummary fault_latency;  // serve_fault time, fetch and retries included

  std::string to_json() const;
};

}  // namespace faultline
