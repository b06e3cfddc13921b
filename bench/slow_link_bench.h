// The slow-link bench: `faultline handle --page-server` taking pages from
// `faultline serve-pages` through a proxy that adds a round-trip delay, in the
// scheduler's default and against one page per fault and a fixed 2 MiB window.
#pragma once

#include "bench_config.h"

namespace faultline::bench {

// Prints the tables; returns how many rows had wrong bytes or failed. A row
// cut at the cap shows "-" and is not a failure.
int run_slow_link_bench(const BenchConfig& config);

}  // namespace faultline::bench
