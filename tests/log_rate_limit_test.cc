// Repeated log lines are limited per key and interval, and the count of those
// held back is reported with the next line let through.
#include "core/log_rate_limit.h"

#include <gtest/gtest.h>

namespace faultline {
namespace {

using namespace std::chrono_literals;
using Clock = LogRateLimiter::Clock;

TEST(LogRateLimiterTest, AtMostTheLimitPerIntervalAreWrittenAndTheRestCounted) {
  LogRateLimiter limiter({3, 1000ms});
  const Clock::time_point t0{};
  int written = 0;
  for (int i = 0; i < 1000; ++i) written += limiter.admit("bad request", t0 + 1ms * i / 2).write;
  EXPECT_EQ(written, 3);
  // The next interval's first line says how many were held back.
  const auto next = limiter.admit("bad request", t0 + 1000ms);
  EXPECT_TRUE(next.write);
  EXPECT_EQ(next.suppressed, 997u);
  EXPECT_EQ(limiter.admit("bad request", t0 + 1001ms).suppressed, 0u);
}

TEST(LogRateLimiterTest, EachKeyHasItsOwnAllowance) {
  LogRateLimiter limiter({1, 1000ms});
  const Clock::time_point t0{};
  EXPECT_TRUE(limiter.admit("a", t0).write);
  EXPECT_FALSE(limiter.admit("a", t0).write);
  EXPECT_TRUE(limiter.admit("b", t0).write);
}

}  // namespace
}  // namespace faultline
