// The userfaultfd fault server against real faults from real threads.
#include "faultline/fault_server.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include "support/guest_memory.h"
#include "support/sigbus.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using std::chrono::milliseconds;
using testing::kPage;
constexpr uint64_t kGuestBase = 0x1'0000'0000;

// A memory file on disk, guest memory for it, a pager and a fault server.
class FaultServerTest : public ::testing::Test {
 protected:
  void SetUpImage(uint64_t size, uint64_t zero_every = 16) {
    image_ = testing::make_test_image(size, kPage, zero_every);
    testing::write_file(path_, image_);
    memory_ = std::make_unique<testing::GuestMemory>(size);
  }

  PagerHandle MakePager(PagerConfig config = {}) {
    auto source = open_file_page_source(path_, kGuestBase);
    EXPECT_TRUE(source.is_ok()) << source.status().to_string();
    auto pager = Pager::create(std::move(source).value(), std::move(config));
    EXPECT_TRUE(pager->register_region(kGuestBase, image_.size()).is_ok());
    return pager;
  }

  std::unique_ptr<FaultServer> MakeServer(PagerHandle pager, FaultServerOptions options = {}) {
    auto server = FaultServer::create(std::move(pager), std::move(options));
    EXPECT_TRUE(server.is_ok()) << server.status().to_string();
    if (!server.is_ok()) return nullptr;
    Status mapped = (*server)->map({kGuestBase, memory_->data(), image_.size(), kPage});
    EXPECT_TRUE(mapped.is_ok()) << mapped.to_string();
    return std::move(server).value();
  }

  // Reads page `index` of guest memory; false if the access got SIGBUS.
  bool ReadPage(uint64_t index, std::vector<std::byte>& out) {
    return testing::copy_catching_sigbus(out.data(), memory_->data() + index * kPage, kPage);
  }
  bool PageMatchesImage(uint64_t index, const std::vector<std::byte>& bytes) const {
    return std::equal(bytes.begin(), bytes.end(), image_.begin() + index * kPage);
  }

  testing::TempDir dir_;
  std::string path_ = dir_.file("mem");
  std::vector<std::byte> image_;
  std::unique_ptr<testing::GuestMemory> memory_;
};

// One page per fault (fault-around off), so every first touch is a fault.
FaultServerOptions OnePagePerFault(int threads = 1) {
  FaultServerOptions options;
  options.prefetch.policy = PrefetchPolicy::kDemand;
  options.threads = threads;
  return options;
}

TEST_F(FaultServerTest, ServesFirstTouchesWithTheFilesBytes) {
  SetUpImage(64 * kPage);
  auto pager = MakePager();
  auto server = MakeServer(pager, OnePagePerFault());
  ASSERT_TRUE(server->start().is_ok());
  std::vector<std::byte> page(kPage);
  for (uint64_t index = 0; index < 64; ++index) {
    ASSERT_TRUE(ReadPage(index, page));
    ASSERT_TRUE(PageMatchesImage(index, page)) << "page " << index;
  }
  // The faulting thread wakes before the server counts the install: stop it first.
  server->request_shutdown();
  ASSERT_TRUE(server->wait().is_ok());
  EXPECT_EQ(pager->stats().faults, 64u);
  EXPECT_EQ(pager->stats().zero_pages, 4u);
  EXPECT_EQ(server->stats().zero_installs, 4u)  // installed without copying
      << "copies " << server->stats().copies << " eexist " << server->stats().already_present
      << " events " << server->stats().events << " again " << server->stats().retried_installs;
  EXPECT_EQ(server->stats().copies, 60u);
}

TEST_F(FaultServerTest, WritesToServedPagesStick) {
  SetUpImage(16 * kPage);
  auto server = MakeServer(MakePager());
  ASSERT_TRUE(server->start().is_ok());
  memory_->data()[5 * kPage + 7] = std::byte{0xAB};  // a write fault
  memory_->data()[15 * kPage] = std::byte{0xCD};     // into a zero page
  std::vector<std::byte> page(kPage);
  ASSERT_TRUE(ReadPage(5, page));
  EXPECT_EQ(page[7], std::byte{0xAB});
  EXPECT_EQ(page[8], image_[5 * kPage + 8]);
  EXPECT_EQ(memory_->data()[15 * kPage], std::byte{0xCD});
}

TEST_F(FaultServerTest, EightThreadsFaultingRandomPagesOf256MiBSeeEveryByteRight) {
  constexpr uint64_t kSize = 256ull << 20;
  constexpr uint64_t kPages = kSize / kPage;
  SetUpImage(kSize);
  auto pager = MakePager();
  auto server = MakeServer(pager, OnePagePerFault(/*threads=*/2));
  ASSERT_TRUE(server->start().is_ok());

  // Every page is read by some thread, in random order, and many are read by
  // two threads at once.
  std::vector<uint64_t> order(kPages);
  for (uint64_t i = 0; i < kPages; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
  std::atomic<uint64_t> wrong{0};
  std::atomic<uint64_t> sigbus{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte> page(kPage);
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      for (uint64_t i = static_cast<uint64_t>(t); i < kPages; i += 8) {
        for (uint64_t index : {order[i], order[rng() % kPages]}) {
          if (!ReadPage(index, page)) {
            sigbus.fetch_add(1);
          } else if (!PageMatchesImage(index, page)) {
            wrong.fetch_add(1);
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  server->request_shutdown();
  ASSERT_TRUE(server->wait().is_ok());
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(sigbus.load(), 0u);
  // Each page was fetched once, plus once more for every second fault on a page
  // that was already being served (installing it again found it present).
  EXPECT_EQ(pager->stats().faults, kPages + server->stats().already_present);
  EXPECT_EQ(pager->stats().source_errors, 0u);
  EXPECT_EQ(server->stats().failed_faults, 0u);
}

TEST_F(FaultServerTest, PrewarmInstallsPagesBeforeAnyFault) {
  SetUpImage(32 * kPage);
  PagerConfig config;
  config.prewarm = PrewarmList::from_boot_critical(
      {kGuestBase, 3 * kPage}, {kGuestBase + 20 * kPage, kPage}, {kGuestBase + 15 * kPage, kPage});
  auto pager = MakePager(config);
  auto server = MakeServer(pager);
  ASSERT_TRUE(server->prewarm().is_ok());
  // Not started: a fault would hang, so these pages must already be resident.
  std::vector<std::byte> page(kPage);
  for (uint64_t index : {0, 1, 2, 20, 15}) {
    ASSERT_TRUE(ReadPage(index, page));
    EXPECT_TRUE(PageMatchesImage(index, page)) << index;
  }
  EXPECT_EQ(pager->stats().prewarmed, 5u);
  EXPECT_EQ(server->stats().events, 0u);
}

TEST_F(FaultServerTest, ShutdownIsPromptWithoutAnyFault) {
  SetUpImage(16 * kPage);
  FaultServerOptions options;
  constexpr auto kPollInterval = std::chrono::seconds(30);
  options.poll_interval = kPollInterval;  // only the shutdown signal can wake it
  auto server = MakeServer(MakePager(), options);
  ASSERT_TRUE(server->start().is_ok());
  // Long enough for the fault loop to be blocked in poll, with no fault to wake it.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto asked = std::chrono::steady_clock::now();
  server->request_shutdown();
  EXPECT_TRUE(server->wait().is_ok());
  // Not a timing target: a loop that only noticed the request at its next
  // poll timeout would take the whole interval.
  EXPECT_LT(std::chrono::steady_clock::now() - asked, kPollInterval / 6);
}

TEST_F(FaultServerTest, PagerShutdownStopsItsFaultServers) {
  SetUpImage(16 * kPage);
  FaultServerOptions options;
  options.poll_interval = std::chrono::hours(1);
  auto pager = MakePager();
  auto server = MakeServer(pager, options);
  ASSERT_TRUE(server->start().is_ok());
  pager->request_shutdown();
  EXPECT_TRUE(server->wait().is_ok());
}

TEST_F(FaultServerTest, FaultsInFlightAtShutdownGetTheirBytesOrSigbusNeverWrongBytes) {
  constexpr uint64_t kPages = 8192;  // 32 MiB
  SetUpImage(kPages * kPage);
  auto pager = MakePager();
  auto server = MakeServer(pager);
  ASSERT_TRUE(server->start().is_ok());
  ASSERT_TRUE(server->can_poison()) << "this kernel cannot poison pages (UFFDIO_POISON)";

  std::atomic<uint64_t> served{0}, refused{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte> page(kPage);
      for (uint64_t index = static_cast<uint64_t>(t); index < kPages; index += 4) {
        if (!ReadPage(index, page)) {
          refused.fetch_add(1);
        } else if (PageMatchesImage(index, page)) {
          served.fetch_add(1);
        } else {
          wrong.fetch_add(1);
        }
      }
    });
  }
  while (served.load() < 500) std::this_thread::yield();
  server->request_shutdown();
  EXPECT_TRUE(server->wait().is_ok());
  server.reset();  // late faults: the unserved pages are poisoned, so SIGBUS
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_GE(served.load(), 500u);
  EXPECT_EQ(served.load() + refused.load(), kPages);
}

// The memory file loses its tail while the guest runs: a source failure.
TEST_F(FaultServerTest, SourceFailingMidRunPoisonsThePageAndTheToucherGetsSigbus) {
  SetUpImage(64 * kPage);
  PagerConfig config;
  config.source_retry.deadline = milliseconds(20);
  auto pager = MakePager(config);
  std::atomic<int> failures_reported{0};
  FaultServerOptions options;
  options.prefetch.policy = PrefetchPolicy::kDemand;  // page 40 is fetched only when touched
  options.on_failure = [&](const Status& s) {
    EXPECT_EQ(s.code(), ErrorCode::kSource);
    failures_reported.fetch_add(1);
  };
  auto server = MakeServer(pager, options);
  ASSERT_TRUE(server->start().is_ok());
  ASSERT_TRUE(server->can_poison());
  std::vector<std::byte> page(kPage);
  for (uint64_t index = 0; index < 8; ++index) {
    ASSERT_TRUE(ReadPage(index, page));
    ASSERT_TRUE(PageMatchesImage(index, page));
  }
  ASSERT_EQ(::truncate(path_.c_str(), 32 * kPage), 0);
  EXPECT_FALSE(ReadPage(40, page));  // SIGBUS, not zeros
  EXPECT_FALSE(ReadPage(40, page));  // and it stays poisoned
  ASSERT_TRUE(ReadPage(20, page));   // the rest of the file is still served
  EXPECT_TRUE(PageMatchesImage(20, page));
  server->request_shutdown();
  ASSERT_TRUE(server->wait().is_ok());
  EXPECT_EQ(failures_reported.load(), 1);
  EXPECT_EQ(server->stats().poisoned, 1u);
  EXPECT_EQ(pager->stats().source_errors, 1u);
}

TEST_F(FaultServerTest, SourceFailingWithStopPolicyStopsTheServerWithTheSourcesError) {
  SetUpImage(64 * kPage);
  PagerConfig config;
  config.source_retry.deadline = milliseconds(20);
  auto pager = MakePager(config);
  FaultServerOptions options;
  options.on_source_failure = SourceFailurePolicy::kStopServer;
  auto server = MakeServer(pager, options);
  ASSERT_TRUE(server->start().is_ok());
  ASSERT_EQ(::truncate(path_.c_str(), 0), 0);
  std::atomic<bool> got_sigbus{false};
  std::thread vcpu([&] {
    std::vector<std::byte> page(kPage);
    got_sigbus = !ReadPage(3, page);
  });
  Status stopped = server->wait();
  EXPECT_EQ(stopped.code(), ErrorCode::kSource);
  EXPECT_NE(stopped.message().find("short read"), std::string::npos) << stopped.to_string();
  server.reset();  // the blocked thread is released with SIGBUS, never zeros
  vcpu.join();
  EXPECT_TRUE(got_sigbus.load());
}

TEST_F(FaultServerTest, MapRejectsRangesOutsideThePagerOrMisaligned) {
  SetUpImage(16 * kPage);
  auto server = FaultServer::create(MakePager());
  ASSERT_TRUE(server.is_ok());
  auto* host = memory_->data();
  EXPECT_EQ((*server)->map({kGuestBase, host, 32 * kPage, kPage}).code(),
            ErrorCode::kInvalidArgument);  // past the region
  EXPECT_EQ((*server)->map({kGuestBase + 1, host, kPage, kPage}).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ((*server)->map({kGuestBase, host + 1, kPage, kPage}).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ((*server)->map({kGuestBase, host, kPage, 3000}).code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE((*server)->map({kGuestBase, host, 8 * kPage, kPage}).is_ok());
  Status overlap = (*server)->map({kGuestBase + 4 * kPage, host + 8 * kPage, 4 * kPage, kPage});
  EXPECT_EQ(overlap.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(overlap.message().find("overlaps"), std::string::npos) << overlap.to_string();
}

TEST_F(FaultServerTest, TwoMappingsOfOnePagerAreServedFromTheirOwnGuestAddresses) {
  SetUpImage(32 * kPage);
  auto pager = MakePager();
  auto server = FaultServer::create(pager);
  ASSERT_TRUE(server.is_ok());
  // Guest pages 16..31 live at host memory before guest pages 0..15.
  testing::GuestMemory second(16 * kPage);
  ASSERT_TRUE(
      (*server)->map({kGuestBase + 16 * kPage, memory_->data(), 16 * kPage, kPage}).is_ok());
  ASSERT_TRUE((*server)->map({kGuestBase, second.data(), 16 * kPage, kPage}).is_ok());
  ASSERT_TRUE((*server)->start().is_ok());
  std::vector<std::byte> page(kPage);
  ASSERT_TRUE(testing::copy_catching_sigbus(page.data(), memory_->data() + 2 * kPage, kPage));
  EXPECT_TRUE(PageMatchesImage(18, page));
  ASSERT_TRUE(testing::copy_catching_sigbus(page.data(), second.data() + 2 * kPage, kPage));
  EXPECT_TRUE(PageMatchesImage(2, page));
}

}  // namespace
}  // namespace faultline
