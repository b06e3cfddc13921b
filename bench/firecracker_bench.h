// The Firecracker-protocol bench: four workloads over the memory file, each
// under the baselines and under `faultline handle` in three settings, then the
// issue's targets checked against the same run.
#pragma once

#include "bench_config.h"

namespace faultline::bench {

// Prints the tables; returns how many rows had wrong bytes or failed.
int run_firecracker_bench(const BenchConfig& config);

}  // namespace faultline::bench
