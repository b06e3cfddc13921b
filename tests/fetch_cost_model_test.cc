// FetchCostModel: the source's costs, fitted from what calls took, and the
// windows they lead to.
#include "core/fetch_cost_model.h"

#include <gtest/gtest.h>

namespace faultline {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMax = 2ull << 20;

// Calls of several sizes costing `call_ns` + `byte_ns` per byte.
void Feed(FetchCostModel& model, double call_ns, double byte_ns) {
  for (int round = 0; round < 50; ++round) {
    for (uint64_t bytes : {kPage, 16 * kPage, 64 * kPage, 256 * kPage}) {
      model.record(bytes, static_cast<uint64_t>(call_ns + byte_ns * static_cast<double>(bytes)));
    }
  }
}

TEST(FetchCostModelTest, FitsTheFixedAndPerByteCostsOfTheCallsItSaw) {
  FetchCostModel model;
  Feed(model, 2'000'000, 1.0);  // 2 ms a round trip, 1 GB/s
  EXPECT_NEAR(model.per_call_ns(), 2'000'000, 20'000);
  EXPECT_NEAR(model.per_byte_ns(), 1.0, 0.02);
}

TEST(FetchCostModelTest, APageCachedFileGetsLargeWindowsAndItsPageFirst) {
  FetchCostModel model;
  Feed(model, 3'000, 0.25);
  const uint64_t window = model.window_for(kPage, kMax);
  EXPECT_GE(window, 16 * kPage);
  EXPECT_TRUE(model.split_pays(window)) << "one more cheap call beats waiting for the window";
}

TEST(FetchCostModelTest, ASlowLinkGetsTheLargestWindowInOneCall) {
  FetchCostModel model;
  Feed(model, 2'000'000, 1.0);
  EXPECT_EQ(model.window_for(kPage, kMax), kMax);
  EXPECT_FALSE(model.split_pays(kMax)) << "a second round trip costs more than the bytes";
}

TEST(FetchCostModelTest, ExpensiveBytesAndCheapCallsGiveSmallWindows) {
  FetchCostModel model;
  Feed(model, 1'000, 50.0);  // 20 MB/s: each byte counts
  EXPECT_LE(model.window_for(kPage, kMax), 2 * kPage);
}

TEST(FetchCostModelTest, WindowsArePowersOfTwoBetweenThePageAndTheLargest) {
  FetchCostModel model;
  for (double byte_ns : {0.01, 0.3, 3.0, 300.0}) {
    FetchCostModel m;
    Feed(m, 5'000, byte_ns);
    for (uint64_t page : {kPage, kMax}) {
      const uint64_t w = m.window_for(page, kMax);
      EXPECT_GE(w, page);
      EXPECT_LE(w, kMax);
      EXPECT_EQ(w & (w - 1), 0u) << w;
    }
  }
  EXPECT_EQ(model.samples(), 0u);
  EXPECT_GE(model.window_for(kPage, kMax), kPage);  // priors before any call
}

TEST(FetchCostModelTest, RecentCallsOutweighOldOnes) {
  FetchCostModel model;
  Feed(model, 2'000'000, 1.0);
  Feed(model, 3'000, 0.25);  // the link got fast (a page-cached file now)
  EXPECT_LT(model.per_call_ns(), 100'000);
}

}  // namespace
}  // namespace faultline
