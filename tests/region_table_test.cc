// RegionTable: the Pager's guest-physical regions, what it accepts and what
// its lookups answer at the edges.
#include "core/region_table.h"

#include <gtest/gtest.h>

#include <limits>

#include "support/page_size.h"

namespace faultline {
namespace {

using testing::kPage;
constexpr uint64_t kBase = 0x4000'0000;

TEST(RegionTableTest, AnEmptyRegionIsRefused) {
  RegionTable table;
  EXPECT_EQ(table.add(kBase, 0).code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(table.contains(kBase));
}

TEST(RegionTableTest, ARegionThatWrapsOrEndsPastTheAddressSpaceIsRefused) {
  RegionTable table;
  EXPECT_EQ(table.add(0xFFFF'FFFF'FFFF'0000, 0x20000).code(), ErrorCode::kInvalidArgument);
  // Ending exactly at 2^64 wraps too: base + size is 0.
  EXPECT_EQ(table.add(0xFFFF'FFFF'FFFF'F000, kPage).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.add(kPage, std::numeric_limits<uint64_t>::max() - kPage + 2).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_TRUE(table.add(0xFFFF'FFFF'FFFF'E000, kPage).is_ok());  // ends one page short
}

TEST(RegionTableTest, BaseAndSizeMustBeAlignedToTheSmallestPage) {
  RegionTable table;
  EXPECT_EQ(table.add(kBase + 1, kPage).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.add(kBase + kPage / 2, kPage).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.add(kBase, kPage + 1).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.add(kBase, kPage - 1).code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(table.contains(kBase));
  EXPECT_TRUE(table.add(kBase, kPage).is_ok());
}

TEST(RegionTableTest, OverlapsAreRefusedFromEitherSideAndAdjacentRegionsAccepted) {
  RegionTable table;
  ASSERT_TRUE(table.add(kBase, 8 * kPage).is_ok());
  EXPECT_EQ(table.add(kBase, 8 * kPage).code(), ErrorCode::kInvalidArgument);  // the same
  EXPECT_EQ(table.add(kBase + 7 * kPage, 2 * kPage).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.add(kBase - kPage, 2 * kPage).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.add(kBase + 2 * kPage, kPage).code(), ErrorCode::kInvalidArgument);   // inside
  EXPECT_EQ(table.add(kBase - kPage, 10 * kPage).code(), ErrorCode::kInvalidArgument);  // around
  EXPECT_TRUE(table.add(kBase + 8 * kPage, kPage).is_ok());  // just after
  EXPECT_TRUE(table.add(kBase - kPage, kPage).is_ok());      // just before
  EXPECT_EQ(table.snapshot().size(), 3u);
}

TEST(RegionTableTest, AtMostTheMaximumNumberOfRegions) {
  RegionTable table;
  for (size_t i = 0; i < RegionTable::kMaxRegions; ++i) {
    ASSERT_TRUE(table.add(i * 2 * kPage, kPage).is_ok()) << i;
  }
  EXPECT_EQ(table.add(RegionTable::kMaxRegions * 2 * kPage, kPage).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.snapshot().size(), RegionTable::kMaxRegions);
}

TEST(RegionTableTest, ContainsIsTrueFromTheFirstToTheLastByte) {
  RegionTable table;
  ASSERT_TRUE(table.add(kBase, 4 * kPage).is_ok());
  EXPECT_FALSE(table.contains(kBase - 1));
  EXPECT_TRUE(table.contains(kBase));
  EXPECT_TRUE(table.contains(kBase + 4 * kPage - 1));
  EXPECT_FALSE(table.contains(kBase + 4 * kPage));
  EXPECT_FALSE(table.contains(0));
  EXPECT_FALSE(table.contains(std::numeric_limits<uint64_t>::max()));
}

TEST(RegionTableTest, ARangeMustLieWhollyInsideOneRegion) {
  RegionTable table;
  ASSERT_TRUE(table.add(kBase, 4 * kPage).is_ok());
  ASSERT_TRUE(table.add(kBase + 4 * kPage, 4 * kPage).is_ok());  // adjacent
  EXPECT_TRUE(table.contains_range(kBase, 4 * kPage));
  EXPECT_TRUE(table.contains_range(kBase + 3 * kPage, kPage));
  EXPECT_FALSE(table.contains_range(kBase + 3 * kPage, 2 * kPage));  // spans both
  EXPECT_FALSE(table.contains_range(kBase - kPage, 2 * kPage));
  EXPECT_FALSE(table.contains_range(kBase + 7 * kPage, 2 * kPage));
  // A size that would wrap is not inside anything.
  EXPECT_FALSE(table.contains_range(kBase, std::numeric_limits<uint64_t>::max()));
}

TEST(RegionTableTest, RoomAfterIsClippedToTheRegionHoldingTheBase) {
  RegionTable table;
  ASSERT_TRUE(table.add(kBase, 4 * kPage).is_ok());
  ASSERT_TRUE(table.add(kBase + 4 * kPage, 4 * kPage).is_ok());
  EXPECT_EQ(table.room_after(kBase, 2 * kPage), 2 * kPage);
  EXPECT_EQ(table.room_after(kBase + 2 * kPage, 16 * kPage), 2 * kPage);  // not into the next
  EXPECT_EQ(table.room_after(kBase + 4 * kPage - 1, kPage), 1u);
  EXPECT_EQ(table.room_after(kBase + 8 * kPage, kPage), 0u);  // outside
  EXPECT_EQ(table.room_after(kBase - 1, kPage), 0u);
}

TEST(RegionTableTest, SnapshotListsRegionsInTheOrderAdded) {
  RegionTable table;
  ASSERT_TRUE(table.add(kBase + 8 * kPage, kPage).is_ok());
  ASSERT_TRUE(table.add(kBase, 2 * kPage).is_ok());
  const std::vector<GuestRange> regions = table.snapshot();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0].base, kBase + 8 * kPage);
  EXPECT_EQ(regions[0].size, kPage);
  EXPECT_EQ(regions[1].base, kBase);
  EXPECT_EQ(regions[1].size, 2 * kPage);
}

}  // namespace
}  // namespace faultline
