// A lock-free latency histogram with log-linear buckets (about 6% wide):
// recording is two relaxed atomic adds, safe from any number of threads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "faultline/stats.h"

namespace faultline {

class LatencyHistogram {
 public:
  void record(uint64_t nanoseconds);
  LatencySummary summary() const;

 private:
  static constexpr int kSubBucketBits = 4;  // 16 buckets per power of two
  static constexpr int kBuckets = 64 << kSubBucketBits;

  static int bucket_of(uint64_t value);
  static uint64_t bucket_upper_bound(int bucket);

  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
  std::atomic<uint64_t> max_{0};
};

}  // namespace faultline
