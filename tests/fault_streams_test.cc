// FaultStreams: which faults continue a sequential stream, and how its
// fault-around window grows.
#include "os_linux/fault_streams.h"

#include <gtest/gtest.h>

#include "support/page_size.h"

namespace faultline {
namespace {

using testing::kPage;
constexpr uint64_t kBase = 0x7f00'0000'0000;

// Asks for the window of a fault at `host` and says it was served in full.
uint64_t Serve(FaultStreams& streams, uint64_t host, uint64_t page_size = kPage) {
  const uint64_t window = streams.window_for(host, page_size);
  streams.served_until(host + window * page_size);
  return window;
}

TEST(FaultStreamsTest, AFirstFaultGetsOnePage) {
  FaultStreams streams(256);
  EXPECT_EQ(streams.window_for(kBase, kPage), 1u);
}

TEST(FaultStreamsTest, FaultsRightAfterTheLastWindowDoubleItUpToTheMaximum) {
  FaultStreams streams(8);
  uint64_t host = kBase;
  std::vector<uint64_t> windows;
  for (int i = 0; i < 6; ++i) {
    const uint64_t w = Serve(streams, host);
    windows.push_back(w);
    host += w * kPage;
  }
  EXPECT_EQ(windows, (std::vector<uint64_t>{1, 2, 4, 8, 8, 8}));
}

TEST(FaultStreamsTest, AFaultInsideTheNextWindowContinuesTheStream) {
  FaultStreams streams(64);
  ASSERT_EQ(Serve(streams, kBase), 1u);          // served [0, 1)
  ASSERT_EQ(Serve(streams, kBase + kPage), 2u);  // served [1, 3)
  // The next window would be two pages from page 3: page 4 is inside it.
  EXPECT_EQ(Serve(streams, kBase + 4 * kPage), 4u);
}

TEST(FaultStreamsTest, AFaultPastTheNextWindowOrBehindTheStreamStartsANewOne) {
  FaultStreams streams(64);
  ASSERT_EQ(Serve(streams, kBase), 1u);
  ASSERT_EQ(Serve(streams, kBase + kPage), 2u);  // next window: pages [3, 5)
  EXPECT_EQ(Serve(streams, kBase + 5 * kPage), 1u);
  FaultStreams other(64);
  ASSERT_EQ(Serve(other, kBase + 8 * kPage), 1u);
  EXPECT_EQ(Serve(other, kBase + 7 * kPage), 1u);  // backwards is no stream
}

TEST(FaultStreamsTest, AMaximumOfOnePageTurnsFaultAroundOff) {
  FaultStreams streams(1);
  uint64_t host = kBase;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(Serve(streams, host), 1u) << i;
    host += kPage;
  }
}

TEST(FaultStreamsTest, WindowsCountInPagesOfTheFaultsPageSize) {
  constexpr uint64_t kHuge = 2ull << 20;
  FaultStreams streams(16);
  ASSERT_EQ(Serve(streams, kBase, kHuge), 1u);
  EXPECT_EQ(Serve(streams, kBase + kHuge, kHuge), 2u);
  EXPECT_EQ(Serve(streams, kBase + 3 * kHuge, kHuge), 4u);
}

TEST(FaultStreamsTest, InterleavedStreamsEachKeepTheirOwnWindow) {
  FaultStreams streams(64);
  uint64_t a = kBase;
  uint64_t b = kBase + (1ull << 30);
  std::vector<uint64_t> windows;
  for (int i = 0; i < 3; ++i) {
    const uint64_t wa = Serve(streams, a);
    const uint64_t wb = Serve(streams, b);
    windows.push_back(wa);
    windows.push_back(wb);
    a += wa * kPage;
    b += wb * kPage;
  }
  EXPECT_EQ(windows, (std::vector<uint64_t>{1, 1, 2, 2, 4, 4}));
}

TEST(FaultStreamsTest, ANinthStreamReplacesTheLeastRecentlyUsed) {
  FaultStreams streams(64);
  std::vector<uint64_t> next(9);
  for (uint64_t s = 0; s < 9; ++s) {
    const uint64_t host = kBase + s * (1ull << 30);
    next[s] = host + Serve(streams, host) * kPage;
  }
  // Stream 0 was used least recently and made room for stream 8; the rest go on.
  EXPECT_EQ(Serve(streams, next[1]), 2u);
  EXPECT_EQ(Serve(streams, next[8]), 2u);
  EXPECT_EQ(Serve(streams, next[0]), 1u);
}

TEST(FaultStreamsTest, AShortServedWindowMovesWhereTheStreamContinues) {
  FaultStreams streams(64);
  ASSERT_EQ(Serve(streams, kBase), 1u);
  ASSERT_EQ(streams.window_for(kBase + kPage, kPage), 2u);
  streams.served_until(kBase + 2 * kPage);  // only one of the two pages was served
  EXPECT_EQ(Serve(streams, kBase + 2 * kPage), 4u);
}

}  // namespace
}  // namespace faultline
