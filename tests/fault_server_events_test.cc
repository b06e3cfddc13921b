// Events that are not faults: balloon removal, unmap, mremap, fork.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "faultline/fault_server.h"
#include "os_linux/anonymous_memory.h"
#include "os_linux/uffd.h"
#include "support/sigbus.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::kPage;
constexpr uint64_t kGuestBase = 0x4000'0000;

class FaultServerEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = testing::make_test_image(kPages * kPage, kPage, 0);
    auto source = make_memory_page_source(image_, kGuestBase);
    pager_ = Pager::create(std::move(source));
    ASSERT_TRUE(pager_->register_region(kGuestBase, kPages * kPage).is_ok());
    auto mapping =
        AnonymousMemory::map(kPages * kPage, "guest memory", {.pages = PageBacking::kSmallPages});
    ASSERT_TRUE(mapping.is_ok()) << mapping.status().to_string();
    mapping_ = std::move(mapping).value();
    memory_ = mapping_.data();
  }
  void TearDown() override {
    server_.reset();
    mapping_ = {};
  }

  // A userfaultfd made the way a VMM makes it, with the events it asks for,
  // registered over guest memory and handed to an adopting server.
  void StartAdopted(uint64_t features, int threads = 1) {
    auto uffd = linux_uffd::open(features);
    ASSERT_TRUE(uffd.is_ok()) << uffd.status().to_string();
    ASSERT_TRUE(linux_uffd::register_missing(uffd->get(), memory_, kPages * kPage).is_ok());
    FaultServerOptions options;
    options.threads = threads;
    auto server = FaultServer::adopt(pager_, std::move(uffd).value(), options);
    ASSERT_TRUE(server.is_ok()) << server.status().to_string();
    server_ = std::move(server).value();
    ASSERT_TRUE(server_->adopt_mapping({kGuestBase, memory_, kPages * kPage, kPage}).is_ok());
    ASSERT_TRUE(server_->start().is_ok());
  }

  bool PageIs(const std::byte* at, uint64_t index) const {
    return std::memcmp(at, image_.data() + index * kPage, kPage) == 0;
  }
  static bool IsZero(const std::byte* at) {
    for (uint64_t i = 0; i < kPage; ++i) {
      if (at[i] != std::byte{0}) return false;
    }
    return true;
  }
  FaultServerStats StopAndStats() {
    server_->request_shutdown();
    EXPECT_TRUE(server_->wait().is_ok());
    return server_->stats();
  }

  static constexpr uint64_t kPages = 2048;
  std::vector<std::byte> image_;
  PagerHandle pager_;
  AnonymousMemory mapping_;
  std::byte* memory_ = nullptr;  // mapping_'s bytes
  std::unique_ptr<FaultServer> server_;
};

TEST_F(FaultServerEventsTest, BalloonRemovedPagesReadAsZerosEvenIfNeverTouched) {
  StartAdopted(UFFD_FEATURE_EVENT_REMOVE);
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(PageIs(memory_ + i * kPage, i));
  // Half touched, half never touched: both must read as zeros afterwards.
  ASSERT_EQ(::madvise(memory_ + 8 * kPage, 16 * kPage, MADV_DONTNEED), 0);
  for (uint64_t i = 8; i < 24; ++i) EXPECT_TRUE(IsZero(memory_ + i * kPage)) << i;
  for (uint64_t i = 0; i < 8; ++i) EXPECT_TRUE(PageIs(memory_ + i * kPage, i)) << i;
  EXPECT_TRUE(PageIs(memory_ + 24 * kPage, 24));
  // Written after removal, the page keeps what was written.
  memory_[10 * kPage] = std::byte{7};
  EXPECT_EQ(memory_[10 * kPage], std::byte{7});
  FaultServerStats s = StopAndStats();
  EXPECT_EQ(s.removed_ranges, 1u);
  EXPECT_EQ(s.removed_pages, 16u);
  EXPECT_EQ(s.removed_zero_installs, 16u);
}

TEST_F(FaultServerEventsTest, FaultServersOwnUserfaultfdSeesBalloonRemovalToo) {
  auto server = FaultServer::create(pager_);
  ASSERT_TRUE(server.is_ok());
  server_ = std::move(server).value();
  ASSERT_TRUE(server_->map({kGuestBase, memory_, kPages * kPage, kPage}).is_ok());
  ASSERT_TRUE(server_->start().is_ok());
  ASSERT_TRUE(PageIs(memory_, 0));
  ASSERT_EQ(::madvise(memory_, 4 * kPage, MADV_DONTNEED), 0);
  for (uint64_t i = 0; i < 4; ++i) EXPECT_TRUE(IsZero(memory_ + i * kPage)) << i;
  EXPECT_EQ(StopAndStats().removed_ranges, 1u);
}

// The race the notes warn about: a fault whose bytes were fetched before a
// removal must not land after it. After madvise returns, the page reads zero.
TEST_F(FaultServerEventsTest, RemovalRacingWithFaultsNeverLeavesSourceBytesInARemovedPage) {
  StartAdopted(UFFD_FEATURE_EVENT_REMOVE, /*threads=*/2);
  std::atomic<bool> done{false};
  std::thread toucher([&] {
    while (!done.load()) {
      for (uint64_t i = 0; i < kPages && !done.load(); ++i) {
        volatile std::byte b = memory_[i * kPage];
        (void)b;
      }
    }
  });
  uint64_t not_zero = 0;
  for (uint64_t i = 0; i < kPages; ++i) {
    ASSERT_EQ(::madvise(memory_ + i * kPage, kPage, MADV_DONTNEED), 0);
    if (!IsZero(memory_ + i * kPage)) ++not_zero;
  }
  done = true;
  toucher.join();
  EXPECT_EQ(not_zero, 0u);
}

TEST_F(FaultServerEventsTest, MremapIsFollowedToTheNewAddress) {
  StartAdopted(UFFD_FEATURE_EVENT_REMAP);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(PageIs(memory_ + i * kPage, i));
  // Move the first half of guest memory elsewhere.
  auto target = AnonymousMemory::map(kPages / 2 * kPage, "mremap target", {.reserve_only = true});
  ASSERT_TRUE(target.is_ok()) << target.status().to_string();
  // From here the target owns the first half, and this test the second.
  mapping_.release();
  void* moved = ::mremap(memory_, kPages / 2 * kPage, kPages / 2 * kPage,
                         MREMAP_MAYMOVE | MREMAP_FIXED, target->data());
  ASSERT_EQ(moved, target->data()) << std::strerror(errno);
  auto* low = static_cast<std::byte*>(moved);
  for (uint64_t i = 0; i < kPages / 2; i += 7) EXPECT_TRUE(PageIs(low + i * kPage, i)) << i;
  for (uint64_t i = kPages / 2; i < kPages; i += 7) {
    EXPECT_TRUE(PageIs(memory_ + i * kPage, i)) << i;
  }
  EXPECT_EQ(StopAndStats().remaps, 1u);
  server_.reset();
  *target = {};
  ::munmap(memory_ + kPages / 2 * kPage, kPages / 2 * kPage);
  memory_ = nullptr;
}

TEST_F(FaultServerEventsTest, UnmappedRangesAreForgottenAndTheRestStillServed) {
  StartAdopted(UFFD_FEATURE_EVENT_UNMAP);
  ASSERT_TRUE(PageIs(memory_, 0));
  ASSERT_EQ(::munmap(memory_ + 1024 * kPage, 512 * kPage), 0);
  EXPECT_TRUE(PageIs(memory_ + 1600 * kPage, 1600));
  EXPECT_TRUE(PageIs(memory_ + 5 * kPage, 5));
  EXPECT_EQ(StopAndStats().unmapped_ranges, 1u);
}

TEST_F(FaultServerEventsTest, ForkedChildIsServedTheSameBytes) {
  StartAdopted(UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMOVE);
  ASSERT_TRUE(PageIs(memory_ + 3 * kPage, 3));
  ASSERT_EQ(::madvise(memory_ + 9 * kPage, kPage, MADV_DONTNEED), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Untouched pages fault in the child and are served on its userfaultfd.
    bool ok = PageIs(memory_ + 3 * kPage, 3) && PageIs(memory_ + 100 * kPage, 100) &&
              PageIs(memory_ + 2000 * kPage, 2000) && IsZero(memory_ + 9 * kPage);
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child saw wrong bytes";
  EXPECT_TRUE(PageIs(memory_ + 100 * kPage, 100));
  EXPECT_EQ(StopAndStats().forks, 1u);
}

}  // namespace
}  // namespace faultline
