// One restore through the Firecracker Uffd protocol, as a VMM does it: the
// bench maps guest memory private and anonymous, registers a userfaultfd over
// it, sends the handshake (region mappings + the userfaultfd) and runs a
// workload, served by `faultline handle` in its own process, or by the naive
// handler in a thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "workloads.h"

namespace faultline::bench {

struct HandleRun {
  std::string cli;    // the faultline binary
  std::string dir;    // sockets and logs go here
  uint64_t size = 0;  // guest memory: one region, image offset 0
  // After `handle --socket S`: the source (--mem-file F, or --page-server A
  // --plain-tcp) and the flags of the row.
  std::vector<std::string> args;
  // Wait after the workload until the session is fully resident (fill on).
  bool wait_for_resident = false;
  // The workload stops there and the outcome is marked aborted.
  std::chrono::seconds cap{60};
};

struct HandleOutcome {
  Outcome outcome;
  nlohmann::json prefetch;  // the session's "prefetch" stats object; null if it has none
};

// Starts the handler, restores, runs `w`, reads `faultline stats`, stops the
// handler. Throws (with the handler's log) if it does not start or fails.
HandleOutcome run_under_handler(const HandleRun& run, const Workload& w);

// The same handshake's userfaultfd served by the naive handler (1 page per
// fault, one thread in poll) from `image`.
Outcome run_under_naive_handler(int image, uint64_t size, const Workload& w);

}  // namespace faultline::bench
