// The four access patterns every restore benchmark runs, and what one run of
// a workload over restored memory measured. Every touch reads a word of a page
// and writes one; each page's first touch is timed and its first word checked
// against the image.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/latency_histogram.h"
#include "os_linux/anonymous_memory.h"

namespace faultline::bench {

using Clock = std::chrono::steady_clock;

double ms(Clock::duration d);

struct Workload {
  std::string name;  // seq, random, hot, seq4
  std::string title;
  // Each thread's page indexes, touched in this order.
  std::vector<std::vector<uint64_t>> touches;
};

// seq: every page in order; random: 25% of pages in random order; hot: 10% of
// pages, each touched 10 times; seq4: seq split over 4 threads, a quarter each.
std::vector<Workload> make_workloads(uint64_t pages);

struct Outcome {
  double total_ms = 0;      // restore start to workload done
  double resident_ms = -1;  // restore start to all of memory resident; -1: unknown
  uint64_t faults = 0;
  LatencySummary first_touch;  // latency of each page's first touch
  uint64_t wrong = 0;          // touched pages whose first word was not the image's
  bool aborted = false;        // stopped at the deadline: the figures mean nothing
};

struct WorkloadResult {
  LatencySummary first_touch;
  uint64_t wrong = 0;
  bool aborted = false;
};

// Runs `w` over `memory` (page 0 of the image at memory[0]). Threads stop
// early, between touches, once `deadline` passes.
WorkloadResult run_workload(const Workload& w, std::byte* memory,
                            Clock::time_point deadline = Clock::time_point::max());

// The outcome of a run that started at `start` and has just ended with `r`.
Outcome outcome_since(Clock::time_point start, const WorkloadResult& r);

// Guest memory as a VMM maps it: anonymous, private, on 4 KiB pages.
AnonymousMemory guest_memory(uint64_t size);

}  // namespace faultline::bench
