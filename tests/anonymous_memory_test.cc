// The one owner of private anonymous mappings: zero-filled, movable, unmapped
// once, and a reservation that regions are mapped into.
#include "os_linux/anonymous_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <span>
#include <utility>
#include <vector>

#include "support/page_size.h"

namespace faultline {
namespace {

using testing::kPage;

// Whether [at, at + size) is mapped at all (mincore fails with ENOMEM on a hole).
bool mapped(const std::byte* at, uint64_t size) {
  std::vector<unsigned char> residency(size / kPage);
  return ::mincore(const_cast<std::byte*>(at), size, residency.data()) == 0;
}

TEST(AnonymousMemory, MapsZeroedReadWriteMemory) {
  auto memory = AnonymousMemory::map(16 * kPage, "test memory");
  ASSERT_TRUE(memory.is_ok()) << memory.status().to_string();
  ASSERT_TRUE(*memory);
  EXPECT_EQ(memory->size(), 16 * kPage);
  EXPECT_EQ(memory->bytes().size(), 16 * kPage);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(memory->data()) % kPage, 0u);
  const auto bytes = memory->bytes();
  EXPECT_TRUE(
      std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; }));
  memory->data()[5 * kPage] = std::byte{9};
  EXPECT_EQ(memory->data()[5 * kPage], std::byte{9});
}

TEST(AnonymousMemory, TheLastOwnerUnmapsItOnce) {
  auto memory = AnonymousMemory::map(4 * kPage, "test memory",
                                     {.no_reserve = true, .pages = PageBacking::kSmallPages});
  ASSERT_TRUE(memory.is_ok()) << memory.status().to_string();
  std::byte* const at = memory->data();
  AnonymousMemory owner = std::move(*memory);
  EXPECT_FALSE(*memory);
  EXPECT_EQ(memory->size(), 0u);
  EXPECT_EQ(owner.data(), at);
  ASSERT_TRUE(mapped(at, 4 * kPage));
  AnonymousMemory other;
  other = std::move(owner);
  EXPECT_TRUE(mapped(at, 4 * kPage));
  other = {};
  EXPECT_FALSE(mapped(at, 4 * kPage));
}

TEST(AnonymousMemory, ReleasedMemoryStaysMapped) {
  auto memory = AnonymousMemory::map(2 * kPage, "test memory");
  ASSERT_TRUE(memory.is_ok());
  std::span<std::byte> released = memory->release();
  EXPECT_FALSE(*memory);
  ASSERT_EQ(released.size(), 2 * kPage);
  *memory = {};
  EXPECT_TRUE(mapped(released.data(), released.size()));
  EXPECT_EQ(::munmap(released.data(), released.size()), 0);
}

TEST(AnonymousMemory, RegionsAreMappedIntoAReservationAndGoWithIt) {
  auto reservation = AnonymousMemory::map(8 * kPage, "address space", {.reserve_only = true});
  ASSERT_TRUE(reservation.is_ok()) << reservation.status().to_string();
  auto region =
      reservation->map_within(2 * kPage, 3 * kPage, "region", {.pages = PageBacking::kSmallPages});
  ASSERT_TRUE(region.is_ok()) << region.status().to_string();
  EXPECT_EQ(region->data(), reservation->data() + 2 * kPage);
  EXPECT_EQ(region->size(), 3 * kPage);
  (*region)[0] = std::byte{1};
  (*region)[3 * kPage - 1] = std::byte{2};
  EXPECT_EQ((*region)[3 * kPage - 1], std::byte{2});
  std::byte* const at = reservation->data();
  *reservation = {};
  EXPECT_FALSE(mapped(at + 2 * kPage, 3 * kPage));
}

TEST(AnonymousMemory, ARegionOutsideTheReservationIsRefused) {
  auto reservation = AnonymousMemory::map(4 * kPage, "address space", {.reserve_only = true});
  ASSERT_TRUE(reservation.is_ok());
  EXPECT_EQ(reservation->map_within(3 * kPage, 2 * kPage, "region").status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(reservation->map_within(5 * kPage, kPage, "region").status().code(),
            ErrorCode::kInvalidArgument);
}

TEST(AnonymousMemory, AFailedMappingIsAnIoError) {
  auto memory = AnonymousMemory::map(0, "nothing at all");
  ASSERT_FALSE(memory.is_ok());
  EXPECT_EQ(memory.status().code(), ErrorCode::kIo);
}

}  // namespace
}  // namespace faultline
