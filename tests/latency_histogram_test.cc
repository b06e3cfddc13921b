#include "core/latency_histogram.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace faultline {
namespace {

TEST(LatencyHistogramTest, EmptyHistogramSummarisesToZeros) {
  LatencyHistogram h;
  LatencySummary s = h.summary();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.p99_ns, 0u);
}

TEST(LatencyHistogramTest, PercentilesAreWithinTheBucketWidth) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 10000; ++v) h.record(v * 1000);  // 1 us .. 10 ms, uniform
  LatencySummary s = h.summary();
  EXPECT_EQ(s.count, 10000u);
  EXPECT_EQ(s.max_ns, 10'000'000u);
  EXPECT_NEAR(static_cast<double>(s.p50_ns), 5'000'000.0, 5'000'000.0 * 0.07);
  EXPECT_NEAR(static_cast<double>(s.p90_ns), 9'000'000.0, 9'000'000.0 * 0.07);
  EXPECT_NEAR(static_cast<double>(s.p99_ns), 9'900'000.0, 9'900'000.0 * 0.07);
  EXPECT_NEAR(static_cast<double>(s.mean_ns), 5'000'500.0, 1.0);
}

TEST(LatencyHistogramTest, SmallAndHugeValuesLandInRange) {
  LatencyHistogram h;
  h.record(0);
  h.record(3);
  h.record(UINT64_MAX);
  LatencySummary s = h.summary();
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.max_ns, UINT64_MAX);
  EXPECT_EQ(s.p50_ns, 3u);
}

TEST(LatencyHistogramTest, ConcurrentRecordsAreAllCounted) {
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 100000; ++i) h.record(static_cast<uint64_t>(i));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(h.summary().count, 800000u);
}

}  // namespace
}  // namespace faultline
