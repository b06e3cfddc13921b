// Working sets through the real `faultline handle`, driven by a client that
// acts as Firecracker: recorded on one session, replayed on the next; files
// that do not fit refused with the reason logged while the VM is still
// served right; and `--prefetch demand` installing nothing untouched. Also
// `faultline working-set merge | inspect` and the flags' errors.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <filesystem>
#include <random>
#include <thread>

#include "faultline/working_set.h"
#include "os_linux/uffd.h"
#include "support/cli_process.h"
#include "support/firecracker_client.h"
#include "support/handler_process.h"
#include "support/serve_pages_process.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::FirecrackerClient;
using testing::FirecrackerOptions;
using testing::kPage;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kFileSize = 64 * kMiB;

// A page of one of the client's regions.
struct Page {
  size_t region;
  uint64_t offset;
};

class WorkingSetCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = testing::make_test_image(kFileSize, kPage, 8, 1);
    testing::write_file(mem_file_, image_);
  }

  std::unique_ptr<testing::HandlerProcess> StartHandler(std::vector<std::string> args) {
    auto handler = std::make_unique<testing::HandlerProcess>(
        FAULTLINE_CLI, socket_, dir_.file("handler-" + std::to_string(++handlers_) + ".log"), args);
    EXPECT_TRUE(handler->started());
    return handler;
  }

  // 16 MiB at file offset 0 and 8 MiB at 40 MiB, as in uffd_handler_test.
  static FirecrackerOptions TwoRegions() {
    FirecrackerOptions o;
    o.regions = {{16 * kMiB, 0}, {8 * kMiB, 40 * kMiB}};
    o.uffd_features = UFFD_FEATURE_EVENT_REMOVE;
    return o;
  }

  // A scattered few pages of both regions, in an order of their own.
  static std::vector<Page> Scattered(const FirecrackerClient& vm) {
    std::vector<Page> pages;
    for (size_t r = 0; r < 2; ++r) {
      for (uint64_t off = 0; off < vm.region_size(r); off += 37 * kPage) pages.push_back({r, off});
    }
    std::shuffle(pages.begin(), pages.end(), std::mt19937_64(4));
    return pages;
  }

  bool PageRight(const FirecrackerClient& vm, Page p, const std::vector<std::byte>& image) const {
    return std::memcmp(vm.region(p.region) + p.offset,
                       image.data() + vm.region_offset(p.region) + p.offset, kPage) == 0;
  }
  // Every page of both regions against `image`; the number of wrong pages.
  uint64_t WrongPages(const FirecrackerClient& vm, const std::vector<std::byte>& image) const {
    uint64_t wrong = 0;
    for (size_t r = 0; r < 2; ++r) {
      for (uint64_t off = 0; off < vm.region_size(r); off += kPage) {
        wrong += PageRight(vm, {r, off}, image) ? 0 : 1;
      }
    }
    return wrong;
  }
  static bool Resident(const FirecrackerClient& vm, Page p) {
    unsigned char v = 0;
    EXPECT_EQ(::mincore(vm.region(p.region) + p.offset, kPage, &v), 0);
    return (v & 1) != 0;
  }
  static uint64_t ResidentPages(const FirecrackerClient& vm) {
    uint64_t n = 0;
    for (size_t r = 0; r < 2; ++r) {
      std::vector<unsigned char> v(vm.region_size(r) / kPage);
      EXPECT_EQ(::mincore(vm.region(r), vm.region_size(r), v.data()), 0);
      for (unsigned char c : v) n += c & 1;
    }
    return n;
  }
  static nlohmann::json Session(const testing::HandlerProcess& h) {
    auto stats = h.stats();
    return stats["sessions"].size() == 1 ? stats["sessions"][0] : nlohmann::json();
  }

  // A session of a handler taking pages from `source` (--mem-file FILE or
  // --page-server ADDRESS) records `pages` of the two regions into ws_.
  void Record(const std::vector<Page>& pages, std::vector<std::string> source = {}) {
    if (source.empty()) source = {"--mem-file", mem_file_};
    source.insert(source.end(), {"--record-working-set", ws_});
    auto handler = StartHandler(source);
    FirecrackerClient vm(TwoRegions());
    ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
    for (Page p : pages) ASSERT_TRUE(PageRight(vm, p, image_));
    vm.exit_vm();
    ASSERT_TRUE(
        handler->wait_for_log(fmt::format("recorded a working set of {} pages", pages.size())))
        << handler->log_text();
  }

  testing::TempDir dir_;
  std::string mem_file_ = dir_.file("snapshot.mem");
  std::string socket_ = dir_.file("uffd.sock");
  std::string ws_ = dir_.file("vm.ws");
  std::vector<std::byte> image_;
  int handlers_ = 0;
};

TEST_F(WorkingSetCliTest, ASessionRecordsItsFirstTouchesAndTheNextSessionReplaysThem) {
  std::vector<Page> pages;
  {
    FirecrackerClient layout(TwoRegions());
    pages = Scattered(layout);
  }
  ASSERT_NO_FATAL_FAILURE(Record(pages));
  testing::Cli inspect = testing::faultline(dir_, {"working-set", "inspect", "--json", ws_});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_EQ(inspect.json()["pages"], pages.size());
  EXPECT_EQ(inspect.json()["image_size"], kFileSize);

  auto handler =
      StartHandler({"--mem-file", mem_file_, "--working-set", ws_, "--prefetch", "working-set"});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  // The replay installs the recorded pages without the guest asking.
  auto all_resident = [&] {
    for (Page p : pages) {
      if (!Resident(vm, p)) return false;
    }
    return true;
  };
  for (int i = 0; i < 10000 && !all_resident(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(all_resident()) << "the recorded pages were not replayed";
  for (Page p : pages) ASSERT_TRUE(PageRight(vm, p, image_));
  nlohmann::json session = Session(*handler);
  ASSERT_FALSE(session.is_null()) << handler->stats().dump();
  EXPECT_EQ(session["faults"], 0) << "touching replayed pages faulted";
  EXPECT_EQ(session["working_set"]["replay_pages"], pages.size());
  EXPECT_EQ(session["working_set"]["replayed_pages"], pages.size());
  EXPECT_TRUE(handler->wait_for_log("replaying working set " + ws_));
  // Only the working set arrived untouched; the rest comes on demand, right.
  EXPECT_EQ(ResidentPages(vm), pages.size());
  EXPECT_EQ(WrongPages(vm, image_), 0u);
}

TEST_F(WorkingSetCliTest, ARecordingThroughAPageServerSeesEveryTouchAndReplaysFromTheFileItServes) {
  testing::ServePagesProcess server(
      FAULTLINE_CLI,
      {"--listen", "unix:" + dir_.file("pages.sock"), "--mem-file", mem_file_, "--ram-start", "0"},
      dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  std::vector<Page> pages;
  {
    FirecrackerClient layout(TwoRegions());
    pages = Scattered(layout);
  }
  // Exactly the touched pages: no push while recording.
  ASSERT_NO_FATAL_FAILURE(Record(pages, {"--page-server", server.address()}));
  auto handler =
      StartHandler({"--mem-file", mem_file_, "--working-set", ws_, "--prefetch", "working-set"});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  ASSERT_TRUE(handler->wait_for_log("replaying working set " + ws_ +
                                    fmt::format(": {} pages", pages.size())))
      << handler->log_text();
  EXPECT_EQ(WrongPages(vm, image_), 0u);
}

TEST_F(WorkingSetCliTest, ATruncatedWorkingSetIsRefusedWithItsReasonAndTheVmIsServedRight) {
  ASSERT_TRUE(WorkingSet({.size = kFileSize, .fingerprint = 1}, {{.gpa = 0}, {.gpa = 0x5000}})
                  .save(ws_)
                  .is_ok());
  std::filesystem::resize_file(ws_, std::filesystem::file_size(ws_) - 4);
  auto handler = StartHandler({"--mem-file", mem_file_, "--working-set", ws_});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_EQ(WrongPages(vm, image_), 0u);
  EXPECT_TRUE(
      handler->wait_for_log("restoring without a working set: working set " + ws_ + ": truncated"))
      << handler->log_text();
  nlohmann::json session = Session(*handler);
  EXPECT_NE(session["working_set"]["refused"].get<std::string>().find("truncated"),
            std::string::npos);
  EXPECT_EQ(session["working_set"]["replayed_pages"], 0);
}

TEST_F(WorkingSetCliTest, AWorkingSetOfAnotherImageIsRefusedWithItsReasonAndTheVmIsServedRight) {
  std::vector<Page> pages;
  {
    FirecrackerClient layout(TwoRegions());
    pages = Scattered(layout);
  }
  ASSERT_NO_FATAL_FAILURE(Record(pages));
  // Another snapshot of the same size.
  const auto other = testing::make_test_image(kFileSize, kPage, 8, 2);
  const std::string other_file = dir_.file("other.mem");
  testing::write_file(other_file, other);
  auto handler = StartHandler({"--mem-file", other_file, "--working-set", ws_});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_EQ(WrongPages(vm, other), 0u);
  EXPECT_TRUE(handler->wait_for_log("working set " + ws_ +
                                    " was recorded on another image: its fingerprint"))
      << handler->log_text();
  EXPECT_EQ(Session(*handler)["working_set"]["replayed_pages"], 0);
}

TEST_F(WorkingSetCliTest, AWorkingSetNamingPagesOutsideTheSessionsRegionsIsRefused) {
  std::vector<Page> pages;
  {
    FirecrackerClient layout(TwoRegions());
    pages = Scattered(layout);
  }
  ASSERT_NO_FATAL_FAILURE(Record(pages));
  auto handler = StartHandler({"--mem-file", mem_file_, "--working-set", ws_});
  FirecrackerOptions small;
  small.regions = {{4 * kMiB, 0}, {4 * kMiB, 8 * kMiB}};
  FirecrackerClient vm(small);
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_EQ(WrongPages(vm, image_), 0u);
  EXPECT_TRUE(handler->wait_for_log("lies outside the guest memory being restored"))
      << handler->log_text();
}

TEST_F(WorkingSetCliTest, RecordForWritesTheFileWhileTheSessionStillRuns) {
  auto handler =
      StartHandler({"--mem-file", mem_file_, "--record-working-set", ws_, "--record-for", "0.5"});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  ASSERT_TRUE(PageRight(vm, {0, 0}, image_));
  ASSERT_TRUE(handler->wait_for_log("recorded a working set of")) << handler->log_text();
  EXPECT_EQ(handler->stats()["live_sessions"], 1);
  auto set = WorkingSet::load(ws_);
  ASSERT_TRUE(set.is_ok()) << set.status().to_string();
  ASSERT_GE(set->touches().size(), 1u);
  EXPECT_EQ(set->touches()[0].gpa, 0u);
  // Written once: the session's end does not write it again.
  vm.exit_vm();
  ASSERT_TRUE(handler->wait_for_log("ended after"));
  const std::string log = handler->log_text();
  EXPECT_EQ(log.find("recorded a working set of"), log.rfind("recorded a working set of"));
}

TEST_F(WorkingSetCliTest, PrefetchDemandInstallsNothingUntouched) {
  auto handler = StartHandler({"--mem-file", mem_file_, "--prefetch", "demand"});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  const Page touched[] = {{0, 0}, {0, 100 * kPage}, {1, 2000 * kPage}};
  for (Page p : touched) ASSERT_TRUE(PageRight(vm, p, image_));
  EXPECT_EQ(ResidentPages(vm), 3u);
  // Nothing follows later either (a fill would have brought 24 MiB by now).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(ResidentPages(vm), 3u);
  nlohmann::json session = Session(*handler);
  EXPECT_EQ(session["faults"], 3);
  EXPECT_EQ(session["background_pages"], 0);
  EXPECT_EQ(session["fault_around_pages"], 0);
}

TEST_F(WorkingSetCliTest, WorkingSetWithPrefetchDemandIsAnErrorNamingBothFlags) {
  for (const std::string command : {"handle", "vm restore"}) {
    std::vector<std::string> args =
        command == "handle"
            ? std::vector<std::string>{"handle", "--socket", socket_, "--mem-file", mem_file_}
            : std::vector<std::string>{"vm", "restore", "--state", dir_.file("absent.state")};
    args.insert(args.end(), {"--working-set", ws_, "--prefetch", "demand"});
    testing::Cli run = testing::faultline(dir_, args);
    EXPECT_EQ(run.exit_code, 1) << command;
    EXPECT_NE(run.err.find("--working-set with --prefetch demand"), std::string::npos)
        << command << ": " << run.err;
  }
}

TEST_F(WorkingSetCliTest, RecordForWithoutAFileAndAFileInAMissingDirectoryAreErrors) {
  testing::Cli run = testing::faultline(
      dir_, {"handle", "--socket", socket_, "--mem-file", mem_file_, "--record-for", "5"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--record-for needs --record-working-set FILE"), std::string::npos)
      << run.err;
  const std::string missing = dir_.file("no/such/dir/vm.ws");
  run = testing::faultline(dir_, {"handle", "--socket", socket_, "--mem-file", mem_file_,
                                  "--record-working-set", missing});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("--record-working-set " + missing + ": no directory"), std::string::npos)
      << run.err;
}

TEST_F(WorkingSetCliTest, MergeWritesPagesOfMostRecordingsFirstAndInspectShowsIt) {
  const ImageIdentity image{.size = kFileSize, .fingerprint = 7};
  const std::string a = dir_.file("a.ws"), b = dir_.file("b.ws"), out = dir_.file("merged.ws");
  ASSERT_TRUE(WorkingSet(image, {{.gpa = 0x1000, .since_resume_us = 5},
                                 {.gpa = 0x2000, .write = true, .since_resume_us = 9}})
                  .save(a)
                  .is_ok());
  ASSERT_TRUE(WorkingSet(image, {{.gpa = 0x2000, .since_resume_us = 1}}).save(b).is_ok());
  testing::Cli merged = testing::faultline(dir_, {"working-set", "merge", "--out", out, a, b});
  ASSERT_EQ(merged.exit_code, 0) << merged.err;
  EXPECT_NE(merged.out.find("merged 2 recording(s) from 2 file(s)"), std::string::npos)
      << merged.out;
  auto set = WorkingSet::load(out);
  ASSERT_TRUE(set.is_ok());
  ASSERT_EQ(set->touches().size(), 2u);
  EXPECT_EQ(set->touches()[0].gpa, 0x2000u);  // in both recordings
  testing::Cli inspect = testing::faultline(dir_, {"working-set", "inspect", out});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("recordings   2"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("pages        2 (0.0 MiB), 50.0% first touched by a write"),
            std::string::npos)
      << inspect.out;
  const auto j = testing::faultline(dir_, {"working-set", "inspect", "--json", out}).json();
  EXPECT_EQ(j["recordings"], 2);
  EXPECT_EQ(j["bytes"], 2 * 4096);
  EXPECT_EQ(j["first_touch_us"], 5);
  EXPECT_EQ(j["last_touch_us"], 5);  // page 0x2000: (9 + 1) / 2
}

TEST_F(WorkingSetCliTest, MergeRefusesSetsOfDifferentImagesNamingTheFile) {
  const std::string a = dir_.file("a.ws"), b = dir_.file("b.ws");
  ASSERT_TRUE(WorkingSet({.size = kFileSize, .fingerprint = 7}, {}).save(a).is_ok());
  ASSERT_TRUE(WorkingSet({.size = kFileSize, .fingerprint = 8}, {}).save(b).is_ok());
  testing::Cli run =
      testing::faultline(dir_, {"working-set", "merge", "--out", dir_.file("m.ws"), a, b});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find(b + " was recorded on another image"), std::string::npos) << run.err;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("m.ws")));
}

TEST_F(WorkingSetCliTest, InspectRefusesADamagedFileSayingWhatIsWrong) {
  testing::write_file(ws_, testing::make_test_image(4096));
  testing::Cli run = testing::faultline(dir_, {"working-set", "inspect", ws_});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("working set " + ws_ + ": not a working-set file"), std::string::npos)
      << run.err;
}

}  // namespace
}  // namespace faultline
