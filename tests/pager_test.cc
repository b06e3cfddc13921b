// The Pager: regions, serving faults, retries, prewarm, shutdown and its counters.
#include "faultline/pager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "support/temp_dir.h"

// Counts heap allocations made by this test binary, so the steady-state fault
// path can be shown to make none.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // GCC 12 misreads replaced new/delete
namespace {
std::atomic<uint64_t> g_allocations{0};
}
void* operator new(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}

namespace faultline {
namespace {

using testing::kPage;
constexpr uint64_t kRamStart = 0x4000'0000;

class PagerTest : public ::testing::Test {
 protected:
  // 64 pages; every 8th page all zero.
  std::vector<std::byte> image_ = testing::make_test_image(64 * kPage, kPage, 8);

  PagerHandle make_pager(PagerConfig config = {}) {
    return Pager::create(make_memory_page_source(image_, kRamStart), std::move(config));
  }
  std::span<const std::byte> page_of_image(uint64_t index) const {
    return std::span(image_).subspan(index * kPage, kPage);
  }
};

// One fault served into a buffer of its own: the page's bytes, zero pages
// included. (Page sizes the Pager refuses get a buffer of at most 64 pages:
// the size is checked before the buffer.)
Result<std::vector<std::byte>> ServePage(Pager& pager, Gpa gpa, uint64_t page_size) {
  std::vector<std::byte> page(std::min<uint64_t>(page_size, 64 * kPage));
  Result<ServedPage> served = pager.serve_fault(gpa, page_size, page);
  if (!served.is_ok()) return served.status();
  if (served->kind == PageKind::kZero) std::fill(page.begin(), page.end(), std::byte{0});
  return page;
}

// A source that fails with a chosen error a number of times before it works.
class FlakySource final : public PageSource {
 public:
  FlakySource(std::unique_ptr<PageSource> inner, int failures, ErrorCode code)
      : inner_(std::move(inner)), failures_left_(failures), code_(code) {}
  Result<PageKind> fetch(Gpa gpa, std::span<std::byte> dest) override {
    ++calls;
    if (failures_left_ > 0) {
      --failures_left_;
      return Status(code_, "injected failure: peer went away");
    }
    return inner_->fetch(gpa, dest);
  }
  std::string describe() const override { return "flaky " + inner_->describe(); }
  std::atomic<int> calls{0};

 private:
  std::unique_ptr<PageSource> inner_;
  int failures_left_;
  ErrorCode code_;
};

TEST_F(PagerTest, ContainsIpaOnlyInsideRegisteredRegions) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 16 * kPage).is_ok());
  EXPECT_TRUE(pager->contains_gpa(kRamStart));
  EXPECT_TRUE(pager->contains_gpa(kRamStart + 16 * kPage - 1));
  EXPECT_FALSE(pager->contains_gpa(kRamStart + 16 * kPage));
  EXPECT_FALSE(pager->contains_gpa(kRamStart - 1));
  EXPECT_FALSE(pager->contains_gpa(0));
}

TEST_F(PagerTest, RegisterRegionRejectsEmptyRegion) {
  Status s = make_pager()->register_region(kRamStart, 0);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("empty"), std::string::npos) << s.to_string();
}

TEST_F(PagerTest, RegisterRegionRejectsWrappingRegion) {
  Status s = make_pager()->register_region(0xFFFF'FFFF'FFFF'0000, 0x20000);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("wraps"), std::string::npos) << s.to_string();
}

TEST_F(PagerTest, RegisterRegionRejectsUnalignedBaseOrSize) {
  auto pager = make_pager();
  EXPECT_EQ(pager->register_region(kRamStart + 1, kPage).code(), ErrorCode::kInvalidArgument);
  Status s = pager->register_region(kRamStart, kPage + 100);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("aligned"), std::string::npos) << s.to_string();
}

TEST_F(PagerTest, RegisterRegionRejectsOverlapButAcceptsAdjacentRegions) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 8 * kPage).is_ok());
  Status overlap = pager->register_region(kRamStart + 4 * kPage, 8 * kPage);
  EXPECT_EQ(overlap.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(overlap.message().find("overlaps"), std::string::npos) << overlap.to_string();
  EXPECT_EQ(pager->register_region(kRamStart - kPage, 2 * kPage).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_TRUE(pager->register_region(kRamStart + 8 * kPage, 8 * kPage).is_ok());
  // Two regions, side by side, neither grown by the refused ones.
  EXPECT_TRUE(pager->contains_range(kRamStart, 8 * kPage));
  EXPECT_TRUE(pager->contains_range(kRamStart + 8 * kPage, 8 * kPage));
  EXPECT_FALSE(pager->contains_range(kRamStart, 16 * kPage));
  EXPECT_FALSE(pager->contains_gpa(kRamStart - 1));
  EXPECT_FALSE(pager->contains_gpa(kRamStart + 16 * kPage));
}

TEST_F(PagerTest, RegisterRegionRefusesMoreThanTheMaximum) {
  auto pager = make_pager();
  for (size_t i = 0; i < Pager::kMaxRegions; ++i) {
    ASSERT_TRUE(pager->register_region(i * 2 * kPage, kPage).is_ok()) << i;
  }
  EXPECT_EQ(pager->register_region(Pager::kMaxRegions * 2 * kPage, kPage).code(),
            ErrorCode::kInvalidArgument);
}

TEST_F(PagerTest, ServeFaultAlignsDownAndReturnsThePagesBytes) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  auto bytes = ServePage(*pager, kRamStart + 5 * kPage + 123, kPage);
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  auto expected = page_of_image(5);
  EXPECT_TRUE(std::equal(bytes->begin(), bytes->end(), expected.begin(), expected.end()));

  std::vector<std::byte> dest(kPage);
  auto served = pager->serve_fault(kRamStart + 6 * kPage + 4095, kPage, dest);
  ASSERT_TRUE(served.is_ok());
  EXPECT_EQ(served->page_gpa, kRamStart + 6 * kPage);
  EXPECT_EQ(served->kind, PageKind::kData);
}

TEST_F(PagerTest, ServeFaultServesLargerPagesWhole) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  auto bytes = ServePage(*pager, kRamStart + 40 * kPage, 16 * kPage);
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  auto expected = std::span(image_).subspan(32 * kPage, 16 * kPage);
  EXPECT_TRUE(std::equal(bytes->begin(), bytes->end(), expected.begin(), expected.end()));
}

TEST_F(PagerTest, ServeFaultOutsideEveryRegionIsOutOfRegionAndCounted) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 8 * kPage).is_ok());
  auto r = ServePage(*pager, kRamStart + 8 * kPage, kPage);
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfRegion);
  EXPECT_NE(r.status().message().find("outside every registered region"), std::string::npos);
  // A large page that only partly lies in the region is outside too.
  EXPECT_EQ(ServePage(*pager, kRamStart, 16 * kPage).status().code(), ErrorCode::kOutOfRegion);
  EXPECT_EQ(pager->stats().out_of_region, 2u);
  EXPECT_EQ(pager->stats().faults, 0u);
}

TEST_F(PagerTest, ServeFaultRejectsPageSizesThatAreNotPowersOfTwoOfAtLeast4KiB) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  for (uint64_t bad : {uint64_t{0}, uint64_t{3000}, uint64_t{2048}, uint64_t{4097}, uint64_t{12288},
                       uint64_t{1} << 63 | 1}) {
    auto r = ServePage(*pager, kRamStart, bad);
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("power of two"), std::string::npos) << bad;
  }
}

TEST_F(PagerTest, ServeFaultCountsFaultsBytesAndZeroPages) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  for (uint64_t page = 0; page < 16; ++page) {
    auto bytes = ServePage(*pager, kRamStart + page * kPage, kPage);
    ASSERT_TRUE(bytes.is_ok());
    auto expected = page_of_image(page);
    ASSERT_TRUE(std::equal(bytes->begin(), bytes->end(), expected.begin())) << page;
  }
  PagerStats s = pager->stats();
  EXPECT_EQ(s.faults, 16u);
  EXPECT_EQ(s.bytes_served, 16 * kPage);
  EXPECT_EQ(s.zero_pages, 2u);  // pages 7 and 15
  EXPECT_EQ(s.fault_latency.count, 16u);
  EXPECT_LE(s.fault_latency.p50_ns, s.fault_latency.p99_ns);
  EXPECT_LE(s.fault_latency.p99_ns, s.fault_latency.max_ns);
}

TEST_F(PagerTest, SourceErrorCarriesTheSourcesMessage) {
  auto pager = make_pager();
  // The region reaches past the 64-page image.
  ASSERT_TRUE(pager->register_region(kRamStart, 128 * kPage).is_ok());
  auto r = ServePage(*pager, kRamStart + 100 * kPage, kPage);
  EXPECT_EQ(r.status().code(), ErrorCode::kSource);
  EXPECT_NE(r.status().message().find("outside the image"), std::string::npos)
      << r.status().to_string();
  EXPECT_EQ(pager->stats().source_errors, 1u);
  EXPECT_EQ(pager->stats().source_retries, 0u);  // out of range is not worth retrying
}

TEST_F(PagerTest, TransientSourceErrorsAreRetriedUntilTheSourceRecovers) {
  auto flaky = std::make_unique<FlakySource>(make_memory_page_source(image_, kRamStart), 3,
                                             ErrorCode::kUnavailable);
  FlakySource* probe = flaky.get();
  auto pager = Pager::create(std::move(flaky));
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  auto bytes = ServePage(*pager, kRamStart + 3 * kPage, kPage);
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  auto expected = page_of_image(3);
  EXPECT_TRUE(std::equal(bytes->begin(), bytes->end(), expected.begin()));
  EXPECT_EQ(probe->calls.load(), 4);
  EXPECT_EQ(pager->stats().source_retries, 3u);
  EXPECT_EQ(pager->stats().source_errors, 0u);
}

TEST_F(PagerTest, RetriesStopAtTheDeadlineWithTheLastError) {
  PagerConfig config;
  config.source_retry.deadline = std::chrono::milliseconds(30);
  config.source_retry.initial_backoff = std::chrono::milliseconds(1);
  config.source_retry.max_backoff = std::chrono::milliseconds(4);
  auto pager =
      Pager::create(std::make_unique<FlakySource>(make_memory_page_source(image_, kRamStart),
                                                  1 << 30, ErrorCode::kTimeout),
                    config);
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  auto r = ServePage(*pager, kRamStart, kPage);
  EXPECT_EQ(r.status().code(), ErrorCode::kSource);
  EXPECT_NE(r.status().message().find("injected failure"), std::string::npos);
  EXPECT_NE(r.status().message().find("gave up after"), std::string::npos);
  EXPECT_GT(pager->stats().source_retries, 0u);
  EXPECT_EQ(pager->stats().source_errors, 1u);
}

TEST_F(PagerTest, ShutdownDuringRetriesAbandonsTheFault) {
  auto pager = Pager::create(std::make_unique<FlakySource>(
      make_memory_page_source(image_, kRamStart), 1 << 30, ErrorCode::kUnavailable));
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  pager->request_shutdown();
  EXPECT_EQ(ServePage(*pager, kRamStart, kPage).status().code(), ErrorCode::kShutdown);
}

class RecordingSink final : public PageSink {
 public:
  Status install(Gpa gpa, uint64_t length, std::span<const std::byte> bytes) override {
    pages.push_back({gpa, length, std::vector<std::byte>(bytes.begin(), bytes.end())});
    return Status::ok();
  }
  bool holds_page(Gpa /*gpa*/) const override { return false; }
  struct Installed {
    Gpa gpa;
    uint64_t size;
    std::vector<std::byte> bytes;
  };
  std::vector<Installed> pages;
};

TEST_F(PagerTest, PrewarmServesEveryPageOfTheListThroughTheSink) {
  PagerConfig config;
  config.prewarm = PrewarmList::from_boot_critical({kRamStart + 2 * kPage, 2 * kPage + 1},
                                                   {kRamStart + 10 * kPage, kPage},
                                                   {kRamStart + 15 * kPage, kPage});
  auto pager = make_pager(config);
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  RecordingSink sink;
  ASSERT_TRUE(pager->prewarm(sink).is_ok());
  ASSERT_EQ(sink.pages.size(), 5u);  // 3 kernel-text pages, the stack, the fdt
  const uint64_t expected_pages[] = {2, 3, 4, 10, 15};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(sink.pages[i].gpa, kRamStart + expected_pages[i] * kPage);
    if (expected_pages[i] == 15) {
      EXPECT_TRUE(sink.pages[i].bytes.empty());  // a zero page, installed without bytes
    } else {
      auto expected = page_of_image(expected_pages[i]);
      EXPECT_TRUE(std::equal(sink.pages[i].bytes.begin(), sink.pages[i].bytes.end(),
                             expected.begin(), expected.end()));
    }
  }
  EXPECT_EQ(pager->stats().prewarmed, 5u);
  EXPECT_EQ(pager->stats().faults, 0u);
}

TEST_F(PagerTest, PrewarmWithoutSinkWarmsTheSourceAndCounts) {
  PagerConfig config;
  config.prewarm.add({kRamStart, 4 * kPage});
  auto pager = make_pager(config);
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  ASSERT_TRUE(pager->prewarm().is_ok());
  EXPECT_EQ(pager->stats().prewarmed, 4u);
}

TEST_F(PagerTest, PrewarmStopsAtTheFirstError) {
  PagerConfig config;
  config.prewarm.add({kRamStart, 2 * kPage});
  config.prewarm.add({kRamStart + 200 * kPage, kPage});  // outside the region
  config.prewarm.add({kRamStart + 4 * kPage, kPage});
  auto pager = make_pager(config);
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  Status s = pager->prewarm();
  EXPECT_EQ(s.code(), ErrorCode::kOutOfRegion);
  EXPECT_EQ(pager->stats().prewarmed, 2u);
}

TEST_F(PagerTest, PrewarmReportsASourceErrorAsSource) {
  PagerConfig config;
  config.prewarm.add({kRamStart + 100 * kPage, kPage});  // in the region, past the image
  auto pager = make_pager(config);
  ASSERT_TRUE(pager->register_region(kRamStart, 128 * kPage).is_ok());
  EXPECT_EQ(pager->prewarm().code(), ErrorCode::kSource);
}

TEST(PrewarmListTest, FromBootCriticalSkipsEmptyRanges) {
  auto list = PrewarmList::from_boot_critical({0x1000, 0x2000}, {0, 0}, {0x9000, 0x1000});
  ASSERT_EQ(list.ranges().size(), 2u);
  EXPECT_EQ(list.ranges()[0].base, 0x1000u);
  EXPECT_EQ(list.ranges()[1].base, 0x9000u);
}

TEST_F(PagerTest, RequestShutdownNotifiesListenersOnceAndLateListenersAtOnce) {
  auto pager = make_pager();
  int calls = 0;
  uint64_t id = pager->add_shutdown_listener([&] { ++calls; });
  int removed_calls = 0;
  uint64_t removed = pager->add_shutdown_listener([&] { ++removed_calls; });
  pager->remove_shutdown_listener(removed);
  EXPECT_FALSE(pager->shutdown_requested());
  pager->request_shutdown();
  pager->request_shutdown();
  EXPECT_TRUE(pager->shutdown_requested());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(removed_calls, 0);
  int late = 0;
  pager->add_shutdown_listener([&] { ++late; });
  EXPECT_EQ(late, 1);
  pager->remove_shutdown_listener(id);
}

TEST_F(PagerTest, HandleSharesOwnershipOfThePager) {
  auto pager = make_pager();
  EXPECT_EQ(pager.use_count(), 1);
  PagerHandle held_by_server_thread = pager->handle();
  EXPECT_EQ(held_by_server_thread.get(), pager.get());
  EXPECT_EQ(pager.use_count(), 2);
  pager.reset();
  ASSERT_TRUE(held_by_server_thread->register_region(kRamStart, kPage).is_ok());
}

TEST_F(PagerTest, ServeFaultMakesNoHeapAllocationInTheSteadyState) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  std::vector<std::byte> dest(kPage);
  ASSERT_TRUE(pager->serve_fault(kRamStart, kPage, dest).is_ok());  // warm up
  const uint64_t before = g_allocations.load();
  for (uint64_t page = 0; page < 64; ++page) {
    auto served = pager->serve_fault(kRamStart + page * kPage, kPage, dest);
    ASSERT_TRUE(served.is_ok());
  }
  EXPECT_EQ(g_allocations.load() - before, 0u);
}

TEST_F(PagerTest, StatsSerialiseToJson) {
  auto pager = make_pager();
  ASSERT_TRUE(pager->register_region(kRamStart, 64 * kPage).is_ok());
  ASSERT_TRUE(ServePage(*pager, kRamStart, kPage).is_ok());
  std::string json = pager->stats().to_json();
  EXPECT_NE(json.find("\"faults\":1"), std::string::npos) << json;
  EXPECT_NE(json.find("\"fault_latency\":{\"count\":1"), std::string::npos) << json;
}

}  // namespace
}  // namespace faultline
