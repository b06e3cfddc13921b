// MappingTable and Mapping: the fault server's host-to-guest mappings and their
// per-page bitmaps. Host addresses here are only numbers: nothing is touched.
#include "os_linux/mapping_table.h"

#include <gtest/gtest.h>

#include "support/page_size.h"

namespace faultline {
namespace {

using testing::kPage;
constexpr uint64_t kHost = 0x7f00'0000'0000;
constexpr uint64_t kGuest = 0x4000'0000;

GuestMapping Layout(uint64_t gpa, uint64_t host, uint64_t pages, uint64_t page_size = kPage) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): addresses only compared, never touched
  return {gpa, reinterpret_cast<void*>(host), pages * page_size, page_size};
}

TEST(MappingTableTest, OverlapOnTheHostOrTheGuestSideIsRefused) {
  MappingTable table;
  ASSERT_TRUE(table.add(Layout(kGuest, kHost, 8), 0).is_ok());
  // Host overlap, guest elsewhere.
  EXPECT_EQ(table.add(Layout(kGuest + 64 * kPage, kHost + 7 * kPage, 2), 0).code(),
            ErrorCode::kInvalidArgument);
  // Guest overlap, host elsewhere.
  EXPECT_EQ(table.add(Layout(kGuest + 7 * kPage, kHost + 64 * kPage, 2), 0).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.add(Layout(kGuest - kPage, kHost - kPage, 2), 0).code(),
            ErrorCode::kInvalidArgument);
  // Adjacent on both sides is fine.
  EXPECT_TRUE(table.add(Layout(kGuest + 8 * kPage, kHost + 8 * kPage, 2), 0).is_ok());
  EXPECT_EQ(table.size(), 2u);
}

TEST(MappingTableTest, AnAliasMayShareGuestPagesAndTheNewestIsFoundFirst) {
  MappingTable table;
  ASSERT_TRUE(table.add(Layout(kGuest, kHost, 8), 1).is_ok());
  Result<Mapping*> alias = table.add_alias(Layout(kGuest, kHost + 64 * kPage, 8), 2);
  ASSERT_TRUE(alias.is_ok()) << alias.status().to_string();
  EXPECT_EQ(table.find_guest(kGuest, kPage), *alias);
  EXPECT_EQ(table.find_host(kHost + 64 * kPage), *alias);
  ASSERT_NE(table.find_host(kHost), nullptr);
  EXPECT_EQ(table.find_host(kHost)->allowed_ioctls, 1u);
}

TEST(MappingTableTest, AtMostTheMaximumNumberOfMappings) {
  MappingTable table;
  for (uint64_t i = 0; i < MappingTable::kMaxMappings; ++i) {
    ASSERT_TRUE(table.add(Layout(kGuest + 2 * i * kPage, kHost + 2 * i * kPage, 1), 0).is_ok())
        << i;
  }
  const uint64_t next = 2 * MappingTable::kMaxMappings * kPage;
  EXPECT_EQ(table.add(Layout(kGuest + next, kHost + next, 1), 0).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.add_alias(Layout(kGuest, kHost + next, 1), 0).status().code(),
            ErrorCode::kInvalidArgument);
}

TEST(MappingTableTest, FindHostAnswersFromTheFirstToTheLastByte) {
  MappingTable table;
  ASSERT_TRUE(table.add(Layout(kGuest, kHost, 4), 0).is_ok());
  EXPECT_EQ(table.find_host(kHost - 1), nullptr);
  ASSERT_NE(table.find_host(kHost), nullptr);
  EXPECT_NE(table.find_host(kHost + 4 * kPage - 1), nullptr);
  EXPECT_EQ(table.find_host(kHost + 4 * kPage), nullptr);
}

TEST(MappingTableTest, FindGuestNeedsTheWholeRangeInsideOneMapping) {
  MappingTable table;
  ASSERT_TRUE(table.add(Layout(kGuest, kHost, 4), 0).is_ok());
  ASSERT_TRUE(table.add(Layout(kGuest + 4 * kPage, kHost + 16 * kPage, 4), 0).is_ok());
  Mapping* first = table.find_guest(kGuest, 4 * kPage);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->host_begin(), kHost);
  EXPECT_EQ(table.find_guest(kGuest + 3 * kPage, 2 * kPage), nullptr);  // spans both
  EXPECT_EQ(table.find_guest(kGuest - kPage, kPage), nullptr);
  EXPECT_EQ(table.find_guest(kGuest + 8 * kPage, kPage), nullptr);
  Mapping* second = table.find_guest(kGuest + 7 * kPage, kPage);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->host_begin(), kHost + 16 * kPage);
}

TEST(MappingTableTest, RetiredMappingsAreNotFoundAndNoLongerBlockOverlap) {
  MappingTable table;
  ASSERT_TRUE(table.add(Layout(kGuest, kHost, 4), 0).is_ok());
  table.find_host(kHost)->retired.store(true);
  EXPECT_EQ(table.find_host(kHost), nullptr);
  EXPECT_EQ(table.find_guest(kGuest, kPage), nullptr);
  EXPECT_TRUE(table.add(Layout(kGuest, kHost, 4), 0).is_ok());
  EXPECT_NE(table.find_host(kHost), nullptr);
}

TEST(MappingTest, AddressesTranslateBetweenHostPagesAndGuest) {
  MappingTable table;
  ASSERT_TRUE(table.add(Layout(kGuest, kHost, 4, 2ull << 20), 0).is_ok());
  Mapping* m = table.find_host(kHost);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->pages(), 4u);
  EXPECT_EQ(m->host_end(), kHost + 4 * (2ull << 20));
  EXPECT_EQ(m->page_index(kHost + (2ull << 20) + 5), 1u);
  EXPECT_EQ(m->guest_address(kHost + 123), kGuest + 123);
}

TEST(MappingTest, MarkResidentSetsEveryTouchedPageClippedToTheMapping) {
  MappingTable table;
  ASSERT_TRUE(table.add(Layout(kGuest, kHost, 8), 0).is_ok());
  Mapping* m = table.find_host(kHost);
  m->mark_resident(kHost + kPage + 1, kPage);  // touches pages 1 and 2
  EXPECT_FALSE(m->resident.test(0));
  EXPECT_TRUE(m->resident.test(1));
  EXPECT_TRUE(m->resident.test(2));
  EXPECT_FALSE(m->resident.test(3));
  m->mark_resident(kHost - 4 * kPage, 5 * kPage);  // starts before: only page 0
  EXPECT_TRUE(m->resident.test(0));
  m->mark_resident(kHost + 7 * kPage, 8 * kPage);  // ends after: only page 7
  EXPECT_TRUE(m->resident.test(7));
  EXPECT_FALSE(m->resident.test(6));
  m->mark_resident(kHost + 8 * kPage, kPage);  // wholly outside: nothing
  EXPECT_FALSE(m->removed.test(7));
}

TEST(MappingTest, MarkRemovedCountsThePagesAndSettlesThem) {
  MappingTable table;
  ASSERT_TRUE(table.add(Layout(kGuest, kHost, 8), 0).is_ok());
  Mapping* m = table.find_host(kHost);
  EXPECT_EQ(m->mark_removed(kHost + 6 * kPage, 4 * kPage), 2u);  // clipped at the end
  EXPECT_TRUE(m->removed.test(6));
  EXPECT_TRUE(m->removed.test(7));
  EXPECT_TRUE(m->resident.test(6));  // removed pages are settled: never poisoned
  EXPECT_FALSE(m->removed.test(5));
  EXPECT_EQ(m->mark_removed(kHost + 8 * kPage, kPage), 0u);
}

TEST(PageBitmapTest, SetAndCopyRangesAcrossWordBoundaries) {
  PageBitmap from;
  from.resize(200);
  from.set_range(60, 10);  // bits 60..69 straddle the first word
  for (uint64_t page = 0; page < 200; ++page) {
    EXPECT_EQ(from.test(page), page >= 60 && page < 70) << page;
  }
  PageBitmap to;
  to.resize(100);
  to.copy_range(from, 50, 100);  // from's 50..149 become to's 0..99
  for (uint64_t page = 0; page < 100; ++page) {
    EXPECT_EQ(to.test(page), page >= 10 && page < 20) << page;
  }
}

}  // namespace
}  // namespace faultline
