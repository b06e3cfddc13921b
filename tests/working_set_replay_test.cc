// A working set through the real fault server: recorded on one restore,
// saved, loaded and replayed on the next, with every byte checked.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <random>
#include <thread>

#include "faultline/fault_server.h"
#include "support/guest_memory.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::kPage;
constexpr uint64_t kGuestBase = 0x1'0000'0000;
constexpr uint64_t kPages = 8192;  // 32 MiB

// One restore of the image file into fresh anonymous memory.
struct Restore {
  Restore(const std::string& path, FaultServerOptions options) : memory(kPages * kPage) {
    auto source = open_file_page_source(path, kGuestBase);
    EXPECT_TRUE(source.is_ok()) << source.status().to_string();
    recorder = options.prefetch.record;
    pager = Pager::create(std::move(source).value());
    EXPECT_TRUE(pager->register_region(kGuestBase, kPages * kPage).is_ok());
    auto created = FaultServer::create(pager, options);
    EXPECT_TRUE(created.is_ok()) << created.status().to_string();
    server = std::move(created).value();
    EXPECT_TRUE(server->map({kGuestBase, memory.data(), kPages * kPage, kPage}).is_ok());
    EXPECT_TRUE(server->start().is_ok());
  }
  ~Restore() {
    server->request_shutdown();
    EXPECT_TRUE(server->wait().is_ok());
  }
  std::byte* page(uint64_t i) const { return memory.data() + i * kPage; }

  testing::GuestMemory memory;
  std::shared_ptr<WorkingSetRecorder> recorder;
  PagerHandle pager;
  std::unique_ptr<FaultServer> server;
};

class WorkingSetReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = testing::make_test_image(kPages * kPage, kPage, 9);
    testing::write_file(path_, image_);
    // A scattered tenth of the pages, in random order.
    for (uint64_t i = 0; i < kPages; i += 10) touched_.push_back(i + (i * 7) % 10);
    std::shuffle(touched_.begin(), touched_.end(), std::mt19937_64(11));
  }
  bool PageRight(const Restore& r, uint64_t i) const {
    return std::memcmp(r.page(i), image_.data() + i * kPage, kPage) == 0;
  }
  static bool PageZero(const Restore& r, uint64_t i) {
    for (uint64_t b = 0; b < kPage; ++b) {
      if (r.page(i)[b] != std::byte{0}) return false;
    }
    return true;
  }
  ImageIdentity Image() const {
    auto source = open_file_page_source(path_, kGuestBase);
    EXPECT_TRUE(source.is_ok()) << source.status().to_string();
    auto id = identify_image(**source, kGuestBase, kPages * kPage);
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
    return id.is_ok() ? *id : ImageIdentity{};
  }
  FaultServerOptions Recording() const {
    FaultServerOptions o;
    o.prefetch.record = std::make_shared<WorkingSetRecorder>(Image());
    return o;
  }
  static FaultServerOptions Replaying(std::shared_ptr<const WorkingSet> set,
                                      PrefetchPolicy policy = PrefetchPolicy::kWorkingSet) {
    FaultServerOptions o;
    o.prefetch.policy = policy;
    o.prefetch.working_set = std::move(set);
    return o;
  }
  // Records touched_ on one restore and saves it to ws_path_; the recorded set.
  WorkingSet RecordAndSave() {
    Restore first(path_, Recording());
    for (uint64_t i : touched_) EXPECT_TRUE(PageRight(first, i)) << i;
    WorkingSet set = first.recorder->snapshot();
    EXPECT_TRUE(set.save(ws_path_).is_ok());
    return set;
  }
  std::shared_ptr<const WorkingSet> Load() const {
    const GuestRange region{kGuestBase, kPages * kPage};
    auto set = WorkingSet::load_for(ws_path_, Image(), {&region, 1});
    EXPECT_TRUE(set.is_ok()) << set.status().to_string();
    return std::make_shared<const WorkingSet>(std::move(set).value());
  }
  // Waits (boundedly) until `pages` have been replayed.
  static void WaitForReplay(const Restore& r, uint64_t pages) {
    for (int i = 0; i < 20000 && r.server->stats().replayed_pages < pages; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  testing::TempDir dir_;
  std::string path_ = dir_.file("mem");
  std::string ws_path_ = dir_.file("ws");
  std::vector<std::byte> image_;
  std::vector<uint64_t> touched_;
};

TEST_F(WorkingSetReplayTest, RecordingNotesEveryFirstTouchInTheOrderOfTouching) {
  Restore r(path_, Recording());
  for (uint64_t i : touched_) ASSERT_TRUE(PageRight(r, i)) << i;
  for (uint64_t i : touched_) ASSERT_TRUE(PageRight(r, i)) << i;  // second touches: no faults
  const WorkingSet set = r.recorder->snapshot();
  ASSERT_EQ(set.touches().size(), touched_.size());
  for (size_t k = 0; k < touched_.size(); ++k) {
    ASSERT_EQ(set.touches()[k].gpa, kGuestBase + touched_[k] * kPage) << k;
  }
  // One page per fault while recording: nothing arrives untouched.
  EXPECT_EQ(r.pager->stats().faults, touched_.size());
  EXPECT_EQ(r.pager->stats().fault_around_pages, 0u);
  EXPECT_EQ(r.server->stats().filled_pages, 0u);
}

TEST_F(WorkingSetReplayTest, ASavedRecordingIsReplayedOnTheNextRestoreWithEveryByteRight) {
  const WorkingSet recorded = RecordAndSave();
  ASSERT_EQ(recorded.touches().size(), touched_.size());

  Restore second(path_, Replaying(Load()));
  WaitForReplay(second, touched_.size());
  EXPECT_EQ(second.server->stats().replayed_pages, touched_.size());
  const uint64_t faults_before = second.pager->stats().faults;
  for (uint64_t i : touched_) ASSERT_TRUE(PageRight(second, i)) << i;
  const uint64_t faults_on_recorded = second.pager->stats().faults - faults_before;
  EXPECT_LT(faults_on_recorded, touched_.size() / 20)
      << "the recorded pages were not there ahead of the guest";
  // Every other page still arrives right, on demand.
  for (uint64_t i = 0; i < kPages; ++i) ASSERT_TRUE(PageRight(second, i)) << i;
}

TEST_F(WorkingSetReplayTest, WithoutTheWorkingSetTheSameTouchesAllFault) {
  RecordAndSave();
  Restore plain(path_, Replaying(nullptr));
  for (uint64_t i : touched_) ASSERT_TRUE(PageRight(plain, i)) << i;
  EXPECT_EQ(plain.pager->stats().faults, touched_.size());
  EXPECT_EQ(plain.server->stats().replayed_pages, 0u);
}

TEST_F(WorkingSetReplayTest, UnderThePolicyFullTheReplayComesFirstAndTheFillCompletesIt) {
  RecordAndSave();
  Restore second(path_, Replaying(Load(), PrefetchPolicy::kFull));
  for (int i = 0; i < 20000 && second.server->stats().fully_resident_ns == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_NE(second.server->stats().fully_resident_ns, 0u) << "the fill did not finish";
  EXPECT_EQ(second.server->stats().replayed_pages, touched_.size());
  for (uint64_t i = 0; i < kPages; ++i) ASSERT_TRUE(PageRight(second, i)) << i;
  EXPECT_EQ(second.pager->stats().faults, 0u);
}

TEST_F(WorkingSetReplayTest, ReplayRacingABalloonRemovalGivesRemovedPagesZerosAndOthersTheirBytes) {
  // Every page, so that the replay is still running while the balloon acts.
  std::vector<WorkingSetTouch> touches;
  for (uint64_t i = 0; i < kPages; ++i) touches.push_back({.gpa = kGuestBase + i * kPage});
  auto set = std::make_shared<const WorkingSet>(Image(), std::move(touches));
  Restore r(path_, Replaying(set));
  // The balloon takes 16 of every 64 pages, while the replay installs them.
  auto removed = [](uint64_t i) { return i % 64 >= 24 && i % 64 < 40; };
  for (uint64_t i = 24; i < kPages; i += 64) {
    ASSERT_EQ(::madvise(r.page(i), 16 * kPage, MADV_DONTNEED), 0);
  }
  WaitForReplay(r, 1);
  EXPECT_GT(r.server->stats().replayed_pages, 0u);
  for (uint64_t i = 0; i < kPages; ++i) {
    if (removed(i)) {
      ASSERT_TRUE(PageZero(r, i)) << "removed page " << i << " holds bytes";
    } else {
      ASSERT_TRUE(PageRight(r, i)) << i;
    }
  }
  EXPECT_EQ(r.server->stats().removed_pages, kPages / 64 * 16);
}

}  // namespace
}  // namespace faultline
