#include "core/latency_histogram.h"

#include <bit>

namespace faultline {

int LatencyHistogram::bucket_of(uint64_t value) {
  constexpr uint64_t kLinear = 1u << kSubBucketBits;
  if (value < kLinear) return static_cast<int>(value);
  const int top = 63 - std::countl_zero(value);  // >= kSubBucketBits
  const int shift = top - kSubBucketBits;
  const auto sub = static_cast<int>((value >> shift) & (kLinear - 1));
  return ((shift + 1) << kSubBucketBits) + sub;
}

uint64_t LatencyHistogram::bucket_upper_bound(int bucket) {
  constexpr int kLinear = 1 << kSubBucketBits;
  if (bucket < kLinear) return static_cast<uint64_t>(bucket);
  const int shift = (bucket >> kSubBucketBits) - 1;
  const uint64_t sub = static_cast<uint64_t>(bucket & (kLinear - 1));
  const uint64_t low = (uint64_t{kLinear} + sub) << shift;
  return low + ((uint64_t{1} << shift) - 1);
}

void LatencyHistogram::record(uint64_t nanoseconds) {
  buckets_[static_cast<size_t>(bucket_of(nanoseconds))].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(nanoseconds, std::memory_order_relaxed);
  uint64_t seen = max_.load(std::memory_order_relaxed);
  while (nanoseconds > seen &&
         !max_.compare_exchange_weak(seen, nanoseconds, std::memory_order_relaxed)) {
  }
}

LatencySummary LatencyHistogram::summary() const {
  std::array<uint64_t, kBuckets> counts{};
  uint64_t total = 0;
  for (int i = 0; i < kBuckets; ++i) {
    counts[static_cast<size_t>(i)] =
        buckets_[static_cast<size_t>(i)].load(std::memory_order_relaxed);
    total += counts[static_cast<size_t>(i)];
  }
  LatencySummary s;
  s.count = total;
  s.max_ns = max_.load(std::memory_order_relaxed);
  if (total == 0) return s;
  s.mean_ns = sum_.load(std::memory_order_relaxed) / count_.load(std::memory_order_relaxed);

  auto percentile = [&](double q) {
    const auto rank = static_cast<uint64_t>(q * static_cast<double>(total - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts[static_cast<size_t>(i)];
      if (seen >= rank) return std::min(bucket_upper_bound(i), s.max_ns);
    }
    return s.max_ns;
  };
  s.p50_ns = percentile(0.50);
  s.p90_ns = percentile(0.90);
  s.p99_ns = percentile(0.99);
  return s;
}

}  // namespace faultline
