// The fast paths: fault-around, background fill, spinning. Each is checked for
// what it must never do (wrong bytes, overwriting, ignoring removals) and for
// doing its job (fewer faults, everything resident).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "faultline/fault_server.h"
#include "support/guest_memory.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::kPage;
constexpr uint64_t kGuestBase = 0x2'0000'0000;

class FastPathsTest : public ::testing::Test {
 protected:
  void Start(uint64_t pages, FaultServerOptions options = {}) {
    pages_ = pages;
    image_ = testing::make_test_image(pages * kPage, kPage, 7);
    testing::write_file(path_, image_);
    memory_ = std::make_unique<testing::GuestMemory>(pages * kPage);
    auto source = open_file_page_source(path_, kGuestBase);
    ASSERT_TRUE(source.is_ok());
    pager_ = Pager::create(std::move(source).value());
    ASSERT_TRUE(pager_->register_region(kGuestBase, pages * kPage).is_ok());
    auto server = FaultServer::create(pager_, options);
    ASSERT_TRUE(server.is_ok()) << server.status().to_string();
    server_ = std::move(server).value();
    ASSERT_TRUE(server_->map({kGuestBase, memory_->data(), pages * kPage, kPage}).is_ok());
    ASSERT_TRUE(server_->start().is_ok());
  }
  std::byte* Page(uint64_t i) const { return memory_->data() + i * kPage; }
  bool PageRight(uint64_t i) const {
    return std::memcmp(Page(i), image_.data() + i * kPage, kPage) == 0;
  }
  static bool PageZero(const std::byte* p) {
    for (uint64_t i = 0; i < kPage; ++i) {
      if (p[i] != std::byte{0}) return false;
    }
    return true;
  }
  void Stop() {
    server_->request_shutdown();
    ASSERT_TRUE(server_->wait().is_ok());
  }

  testing::TempDir dir_;
  std::string path_ = dir_.file("mem");
  uint64_t pages_ = 0;
  std::vector<std::byte> image_;
  std::unique_ptr<testing::GuestMemory> memory_;
  PagerHandle pager_;
  std::unique_ptr<FaultServer> server_;
};

// Fault-around alone (no fill), which windows a fault gets.
FaultServerOptions FaultAroundOnly() {
  FaultServerOptions options;
  options.prefetch.fill = false;
  return options;
}

TEST_F(FastPathsTest, SequentialTouchesAreServedInGrowingWindows) {
  Start(4096, FaultAroundOnly());
  for (uint64_t i = 0; i < pages_; ++i) ASSERT_TRUE(PageRight(i)) << i;
  Stop();
  const PagerStats s = pager_->stats();
  EXPECT_LT(s.faults, pages_ / 50) << "fault-around did not take";
  EXPECT_EQ(s.faults + s.fault_around_pages, pages_);  // every page fetched exactly once
}

TEST_F(FastPathsTest, RandomTouchesOfAPageCachedFileBringTheirNeighboursWithThem) {
  Start(4096, FaultAroundOnly());
  std::vector<uint64_t> order;
  for (uint64_t i = 0; i < pages_; i += 4) order.push_back(i);  // never adjacent
  std::shuffle(order.begin(), order.end(), std::mt19937_64(5));
  for (uint64_t i : order) ASSERT_TRUE(PageRight(i)) << i;
  for (uint64_t i = 0; i < pages_; ++i) ASSERT_TRUE(PageRight(i)) << i;
  Stop();
  const PagerStats s = pager_->stats();
  // A local file's round trip costs more than a page's bytes: windows bring
  // touched neighbours along, so there are fewer faults than touches. (How
  // many fewer follows the measured costs: FetchCostModelTest.)
  EXPECT_LT(s.faults, order.size());
  EXPECT_GT(s.fault_around_pages, 0u);
  EXPECT_GE(server_->stats().window_bytes, 2 * kPage);
  EXPECT_EQ(server_->stats().demand_pages, s.faults);
  EXPECT_EQ(s.faults + s.fault_around_pages, pages_);  // every page fetched exactly once
}

TEST_F(FastPathsTest, OnDemandEveryTouchedPageIsItsOwnFaultAndNothingElseArrives) {
  FaultServerOptions options;
  options.prefetch.policy = PrefetchPolicy::kDemand;
  Start(4096, options);
  std::vector<uint64_t> order;
  for (uint64_t i = 0; i < pages_; i += 4) order.push_back(i);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(5));
  for (uint64_t i : order) ASSERT_TRUE(PageRight(i)) << i;
  Stop();
  EXPECT_EQ(pager_->stats().faults, order.size());
  EXPECT_EQ(pager_->stats().fault_around_pages, 0u);
  EXPECT_EQ(server_->stats().filled_pages, 0u);
  std::vector<unsigned char> resident(pages_);
  ASSERT_EQ(::mincore(Page(0), pages_ * kPage, resident.data()), 0);
  uint64_t untouched_but_there = 0;
  for (uint64_t i = 0; i < pages_; ++i) untouched_but_there += (i % 4 != 0) && (resident[i] & 1);
  EXPECT_EQ(untouched_but_there, 0u);
}

TEST_F(FastPathsTest, FaultAroundNeverOverwritesAPageAlreadyWritten) {
  Start(1024);
  *Page(40) = std::byte{0xEE};  // installed and written before the window comes by
  *Page(41) = std::byte{0xDD};
  for (uint64_t i = 0; i < 100; ++i) {
    if (i == 40 || i == 41) continue;
    ASSERT_TRUE(PageRight(i)) << i;
  }
  EXPECT_EQ(*Page(40), std::byte{0xEE});
  EXPECT_EQ(*Page(41), std::byte{0xDD});
}

TEST_F(FastPathsTest, FaultAroundGivesRemovedPagesZeros) {
  Start(1024);
  ASSERT_TRUE(PageRight(0));
  ASSERT_EQ(::madvise(Page(20), 3 * kPage, MADV_DONTNEED), 0);  // never touched, then removed
  for (uint64_t i = 0; i < 200; ++i) {
    if (i >= 20 && i < 23) {
      EXPECT_TRUE(PageZero(Page(i))) << i;
    } else {
      ASSERT_TRUE(PageRight(i)) << i;
    }
  }
}

TEST_F(FastPathsTest, BackgroundFillMakesEverythingResidentWithTheRightBytes) {
  Start(16384);                 // 64 MiB, the default policy: full (fill on)
  ASSERT_TRUE(PageRight(100));  // a demand fault while the fill runs
  for (int i = 0; i < 20000 && server_->stats().fully_resident_ns == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_NE(server_->stats().fully_resident_ns, 0u) << "the fill did not finish";
  const uint64_t events_before = server_->stats().events;
  for (uint64_t i = 0; i < pages_; ++i) ASSERT_TRUE(PageRight(i)) << i;
  Stop();
  EXPECT_EQ(server_->stats().events, events_before);  // nothing left to fault on
  EXPECT_GT(server_->stats().filled_pages, pages_ / 2);
  EXPECT_GT(pager_->stats().fetched_ahead_pages, 0u);
}

TEST_F(FastPathsTest, BackgroundFillRacingDemandFaultsAndRemovalsKeepsEveryByteRight) {
  FaultServerOptions options;
  options.threads = 2;
  Start(16384, options);
  std::atomic<uint64_t> wrong{0};
  std::thread reader([&] {
    std::mt19937_64 rng(9);
    for (int n = 0; n < 4000; ++n) {
      const uint64_t i = rng() % pages_;
      if (i % 512 < 8) continue;  // the removed ranges below
      if (!PageRight(i)) wrong.fetch_add(1);
    }
  });
  // The balloon takes 8 pages in every 512 while the fill runs.
  uint64_t not_zero = 0;
  for (uint64_t i = 0; i < pages_; i += 512) {
    ASSERT_EQ(::madvise(Page(i), 8 * kPage, MADV_DONTNEED), 0);
    for (uint64_t j = i; j < i + 8; ++j) not_zero += PageZero(Page(j)) ? 0 : 1;
  }
  reader.join();
  for (uint64_t i = 0; i < pages_; ++i) {
    if (i % 512 >= 8 && !PageRight(i)) wrong.fetch_add(1);
  }
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(not_zero, 0u);
}

TEST_F(FastPathsTest, ASpinningServerServesEveryFault) {
  FaultServerOptions options;
  options.spin = std::chrono::microseconds(200);
  options.prefetch.policy = PrefetchPolicy::kDemand;
  Start(2048, options);
  std::vector<std::thread> threads;
  std::atomic<uint64_t> wrong{0};
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = static_cast<uint64_t>(t); i < pages_; i += 3) {
        if (!PageRight(i)) wrong.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  Stop();
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(pager_->stats().faults, pages_ + server_->stats().already_present);
}

}  // namespace
}  // namespace faultline

namespace faultline {
namespace {

TEST_F(FastPathsTest, FillAndDemandFaultsNeverFetchOrInstallOnePageTwice) {
  FaultServerOptions options;
  options.threads = 2;
  Start(16384, options);  // 64 MiB, the default: fault-around and fill
  std::vector<std::thread> vcpus;
  std::atomic<uint64_t> wrong{0};
  for (int t = 0; t < 3; ++t) {
    vcpus.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t) + 11);
      for (int n = 0; n < 3000; ++n) {
        if (!PageRight(rng() % pages_)) wrong.fetch_add(1);
      }
    });
  }
  for (auto& v : vcpus) v.join();
  for (int i = 0; i < 20000 && server_->stats().fully_resident_ns == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_NE(server_->stats().fully_resident_ns, 0u) << "the fill did not finish";
  for (uint64_t i = 0; i < pages_; ++i) ASSERT_TRUE(PageRight(i)) << i;
  Stop();
  EXPECT_EQ(wrong.load(), 0u);
  const FaultServerStats s = server_->stats();
  // Every page arrived once, by one of the three ways, and nobody found a
  // page installed under them.
  EXPECT_EQ(s.demand_pages + s.around_pages + s.filled_pages, pages_);
  EXPECT_EQ(s.already_present, 0u);
  const PagerStats p = pager_->stats();
  EXPECT_EQ(p.bytes_served, pages_ * kPage);
  // Fetched as often as installed: the fill fetched nothing twice, nor did faults.
  EXPECT_EQ(p.fetched_ahead_pages, s.filled_pages);
  EXPECT_EQ(p.faults + p.fault_around_pages, s.demand_pages + s.around_pages);
}

TEST_F(FastPathsTest, TheFillStartsWhereTheGuestTouchesNotAtTheStart) {
  FaultServerOptions options;
  Start(16384, options);
  // The guest's first touch is three quarters in: the fill goes on from the
  // end of that fault's window, and reaches the start of memory last.
  ASSERT_TRUE(PageRight(12000));
  const uint64_t window = std::max<uint64_t>(1, server_->stats().window_bytes / kPage);
  const uint64_t after_window = (12000 / window + 1) * window + 1;
  ASSERT_LT(after_window, pages_ - 1);
  auto resident = [&](uint64_t page) {
    unsigned char in = 0;
    EXPECT_EQ(::mincore(Page(page), kPage, &in), 0);
    return (in & 1) != 0;
  };
  for (int i = 0; i < 100000 && !resident(after_window); ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  ASSERT_TRUE(resident(after_window)) << "the fill never came past the fault";
  EXPECT_FALSE(resident(0)) << "the fill started at the start, not where the guest touched";
  for (uint64_t i = 0; i < pages_; ++i) ASSERT_TRUE(PageRight(i)) << i;
  Stop();
  EXPECT_GT(server_->stats().filled_pages, pages_ / 2);
}

}  // namespace
}  // namespace faultline
