// A cost model of the page source, measured while it runs: how long one
// fetch-and-install takes as a fixed cost per call plus a cost per byte,
// fitted by least squares over recent calls (older ones weigh less). The
// prefetch scheduler sizes its windows from it: a window is worth growing
// while moving its bytes costs less than the round trip it saves.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace faultline {

class FetchCostModel {
 public:
  // What a fault costs the guest before any byte moves: the kernel queueing
  // the fault, waking a handler thread and, after the install, waking the
  // faulting thread. 6 to 60 us on 2-vCPU cloud VMs, depending on the host:
  // the fault backend measures it (set_round_trip_ns); this until it does.
  static constexpr double kPriorRoundTripNs = 10'000;

  void set_round_trip_ns(double ns) { round_trip_ns_.store(ns, std::memory_order_relaxed); }
  double round_trip_ns() const { return round_trip_ns_.load(std::memory_order_relaxed); }

  // One call that moved `bytes` (fetched, or installed) in `ns`.
  void record(uint64_t bytes, uint64_t ns);

  // The fitted fixed cost of one call, and the cost of one byte, in ns.
  // Before enough calls of different sizes are seen: the priors below.
  double per_call_ns() const;
  double per_byte_ns() const;
  uint64_t samples() const { return samples_.load(std::memory_order_relaxed); }

  // The window for a fault that follows no stream: the largest power of two
  // (in [page_size, max_window]) whose bytes cost at most `ratio` times the
  // fixed cost of a fault (the round trip plus the source's per-call cost).
  uint64_t window_for(uint64_t page_size, uint64_t max_window, double ratio = kWindowRatio) const;
  // Whether fetching the faulting page alone first (one more call) costs
  // less than making it wait for a whole `window` of bytes.
  bool split_pays(uint64_t window) const;

 private:
  struct Fit {
    double call_ns;
    double byte_ns;
  };
  Fit fit() const;

  // How many round trips' worth of bytes a window may hold: a larger window
  // saves faults if its neighbours are touched, and delays the next fault
  // if they are not. Chosen by measurement (faultline-handle-bench, 512 MiB,
  // 2-vCPU VM): against 4, 8 took random 25% from 146-162 ms to 139-140 and
  // hot from 140-157 to 133-135, with first-touch p99 from ~95 to ~140 us;
  // 16 gained little more (132, 135) for p99 over 200 us.
  static constexpr double kWindowRatio = 8;
  // Priors: a page-cached file (a few us a call, ~3 GB/s with the install).
  static constexpr double kPriorCallNs = 5'000;
  static constexpr double kPriorByteNs = 0.3;
  // Each new sample weighs this much against everything before it.
  static constexpr double kDecay = 1.0 / 64;

  mutable std::mutex mu_;
  double w_ = 0, x_ = 0, y_ = 0, xx_ = 0, xy_ = 0;  // decayed sums
  std::atomic<uint64_t> samples_{0};
  std::atomic<double> round_trip_ns_{kPriorRoundTripNs};
};

}  // namespace faultline
