// `faultline handle` as Firecracker meets it: a real daemon process, clients
// that act as Firecracker (their own userfaultfd over their own guest memory,
// the JSON and the descriptor sent over the socket), real faults.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <random>
#include <thread>

#include "faultline/page_server.h"
#include "os_linux/uffd.h"
#include "support/firecracker_client.h"
#include "support/handler_process.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::FirecrackerClient;
using testing::FirecrackerOptions;
using testing::PageSizeField;

using testing::kPage;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kFileSize = 64 * kMiB;

class UffdHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = testing::make_test_image(kFileSize, kPage, 8);
    testing::write_file(mem_file_, image_);
  }

  std::unique_ptr<testing::HandlerProcess> StartHandler(std::vector<std::string> extra = {}) {
    if (extra.empty()) extra = {"--mem-file", mem_file_};
    auto handler = std::make_unique<testing::HandlerProcess>(FAULTLINE_CLI, socket_,
                                                             dir_.file("handler.log"), extra);
    EXPECT_TRUE(handler->started());
    return handler;
  }

  // Two regions, apart in host memory and in the file: 16 MiB at offset 0 and
  // 8 MiB at offset 40 MiB.
  static FirecrackerOptions TwoRegions(PageSizeField field = PageSizeField::kBoth) {
    FirecrackerOptions o;
    o.regions = {{16 * kMiB, 0}, {8 * kMiB, 40 * kMiB}};
    o.uffd_features = UFFD_FEATURE_EVENT_REMOVE;
    o.page_size_field = field;
    return o;
  }

  // Every byte of [from, from + len) of region `r` against the memory file.
  bool RegionMatchesFile(const FirecrackerClient& vm, size_t r, uint64_t from, uint64_t len) {
    return std::memcmp(vm.region(r) + from, image_.data() + vm.region_offset(r) + from, len) == 0;
  }

  // Touches every page of every region from `threads` threads in random order
  // and checks each page's bytes; returns the number of wrong pages.
  uint64_t TouchEverything(const FirecrackerClient& vm, int threads) {
    std::vector<std::pair<size_t, uint64_t>> pages;
    for (size_t r = 0; r < 2; ++r) {
      for (uint64_t off = 0; off < vm.region_size(r); off += kPage) pages.emplace_back(r, off);
    }
    std::shuffle(pages.begin(), pages.end(), std::mt19937_64(3));
    std::atomic<uint64_t> wrong{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (size_t i = static_cast<size_t>(t); i < pages.size();
             i += static_cast<size_t>(threads)) {
          if (!RegionMatchesFile(vm, pages[i].first, pages[i].second, kPage)) wrong.fetch_add(1);
        }
      });
    }
    for (auto& w : workers) w.join();
    return wrong.load();
  }

  testing::TempDir dir_;
  std::string mem_file_ = dir_.file("snapshot.mem");
  std::string socket_ = dir_.file("uffd.sock");
  std::vector<std::byte> image_;
};

TEST_F(UffdHandlerTest, ServesTwoNonContiguousRegionsToSeveralThreadsWithEveryByteRight) {
  auto handler = StartHandler();
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.setup().is_ok()) << vm.setup().to_string();
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_EQ(TouchEverything(vm, 4), 0u);
  // Sequential re-reads of what is now resident.
  EXPECT_TRUE(RegionMatchesFile(vm, 0, 0, vm.region_size(0)));
  EXPECT_TRUE(RegionMatchesFile(vm, 1, 0, vm.region_size(1)));
}

TEST_F(UffdHandlerTest, OlderHandshakeFormsAreServedToo) {
  auto handler = StartHandler();
  for (PageSizeField field : {PageSizeField::kPageSizeKibOnly, PageSizeField::kNone}) {
    FirecrackerClient vm(TwoRegions(field));
    ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
    EXPECT_EQ(TouchEverything(vm, 2), 0u);
  }
}

TEST_F(UffdHandlerTest, BackgroundFillMakesAVmsMemoryResidentWithoutItAsking) {
  auto handler = StartHandler({"--mem-file", mem_file_, "--background-fill"});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  nlohmann::json session;
  for (int i = 0; i < 2000; ++i) {
    auto stats = handler->stats();
    if (stats["sessions"].size() == 1 && stats["sessions"][0]["fully_resident_ms"] > 0) {
      session = stats["sessions"][0];
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_FALSE(session.is_null()) << "the fill did not finish: " << handler->stats().dump();
  EXPECT_EQ(session["faults"], 0);  // nothing touched yet, everything there
  EXPECT_EQ(session["background_pages"], (vm.region_size(0) + vm.region_size(1)) / kPage);
  EXPECT_EQ(TouchEverything(vm, 2), 0u);
  EXPECT_EQ(handler->stats()["sessions"][0]["faults"], 0);
}

TEST_F(UffdHandlerTest, WritesToServedPagesStick) {
  auto handler = StartHandler();
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  for (uint64_t off = 0; off < vm.region_size(1); off += 64 * kPage) {
    vm.region(1)[off + 5] = std::byte{0x5A};  // write faults
  }
  for (uint64_t off = 0; off < vm.region_size(1); off += 64 * kPage) {
    EXPECT_EQ(vm.region(1)[off + 5], std::byte{0x5A});
    EXPECT_TRUE(RegionMatchesFile(vm, 1, off + 6, kPage - 6));
  }
}

TEST_F(UffdHandlerTest, BalloonRemovedRangesReadAsZerosAndAreCounted) {
  auto handler = StartHandler();
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  ASSERT_TRUE(RegionMatchesFile(vm, 0, 0, 2 * kMiB));
  // The balloon takes 1 MiB that was touched and 1 MiB that never was.
  ASSERT_EQ(::madvise(vm.region(0) + kMiB, 2 * kMiB, MADV_DONTNEED), 0);
  for (uint64_t off = kMiB; off < 3 * kMiB; ++off) {
    ASSERT_EQ(vm.region(0)[off], std::byte{0}) << "offset " << off;
  }
  EXPECT_TRUE(RegionMatchesFile(vm, 0, 0, kMiB));
  EXPECT_TRUE(RegionMatchesFile(vm, 0, 3 * kMiB, kMiB));
  auto stats = handler->stats();
  ASSERT_EQ(stats["sessions"].size(), 1u) << stats.dump();
  EXPECT_EQ(stats["sessions"][0]["removed_ranges"], 1);
  EXPECT_EQ(stats["sessions"][0]["removed_pages"], 512);
}

TEST_F(UffdHandlerTest, TwoVmsAtOnceAreIndependentSessions) {
  auto handler = StartHandler();
  FirecrackerClient first(TwoRegions());
  FirecrackerOptions other;
  other.regions = {{4 * kMiB, 60 * kMiB}, {4 * kMiB, 20 * kMiB}};
  FirecrackerClient second(other);
  ASSERT_TRUE(first.connect_and_send(socket_).is_ok());
  ASSERT_TRUE(second.connect_and_send(socket_).is_ok());
  uint64_t wrong_first = 0;
  std::thread a([&] { wrong_first = TouchEverything(first, 2); });
  EXPECT_EQ(TouchEverything(second, 2), 0u);
  a.join();
  EXPECT_EQ(wrong_first, 0u);

  auto stats = handler->stats();
  EXPECT_EQ(stats["live_sessions"], 2) << stats.dump();
  for (const auto& session : stats["sessions"]) {
    EXPECT_EQ(session["pid"], ::getpid());
    EXPECT_GT(session["faults"].get<uint64_t>(), 0u);
    EXPECT_GE(session["latency_us"]["p99"].get<double>(),
              session["latency_us"]["p50"].get<double>());
  }
  // One VM exits: its session ends and logs its figures; the other goes on.
  first.exit_vm();
  ASSERT_TRUE(handler->wait_for_log("session 1 (pid"));
  ASSERT_TRUE(handler->wait_for_log("ended after"));
  EXPECT_TRUE(RegionMatchesFile(second, 0, 0, second.region_size(0)));
  stats = handler->stats();
  EXPECT_EQ(stats["live_sessions"], 1) << stats.dump();
  EXPECT_EQ(stats["sessions_ended"], 1);
}

// Only the privileged can reserve huge pages; this test reserves a few and
// gives them back.
class HugePages {
 public:
  explicit HugePages(uint64_t wanted) {
    std::ifstream in("/proc/sys/vm/nr_hugepages");
    if (!(in >> before_)) return;
    std::ofstream("/proc/sys/vm/nr_hugepages") << before_ + wanted;
    uint64_t now = 0;
    std::ifstream("/proc/sys/vm/nr_hugepages") >> now;
    ok_ = now >= before_ + wanted;
  }
  ~HugePages() { std::ofstream("/proc/sys/vm/nr_hugepages") << before_; }
  bool ok() const { return ok_; }

 private:
  uint64_t before_ = 0;
  bool ok_ = false;
};

TEST_F(UffdHandlerTest, HugePageBackedGuestMemoryIsServedIn2MiBPages) {
  HugePages reserved(16);
  if (!reserved.ok()) GTEST_SKIP() << "cannot reserve 2 MiB huge pages (/proc/sys/vm/nr_hugepages)";
  // On demand, so that every page arrives through a fault and is counted.
  auto handler = StartHandler({"--mem-file", mem_file_, "--prefetch", "demand"});
  FirecrackerOptions o;
  o.regions = {{8 * kMiB, 0}, {4 * kMiB, 32 * kMiB}};
  o.huge_pages = true;
  FirecrackerClient vm(o);
  if (!vm.setup().is_ok()) GTEST_SKIP() << vm.setup().to_string();
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_EQ(TouchEverything(vm, 3), 0u);
  vm.region(1)[12345] = std::byte{1};
  EXPECT_EQ(vm.region(1)[12345], std::byte{1});
  auto stats = handler->stats();
  ASSERT_EQ(stats["sessions"].size(), 1u);
  EXPECT_EQ(stats["sessions"][0]["page_size"], 2 * kMiB);
  // 12 MiB in 2 MiB pages, plus repeats where two threads faulted on one page.
  const auto& session = stats["sessions"][0];
  EXPECT_EQ(session["faults"].get<uint64_t>() - session["already_present"].get<uint64_t>(), 6u);
  EXPECT_EQ(session["bytes_served"].get<uint64_t>() % (2 * kMiB), 0u);
}

TEST_F(UffdHandlerTest, EachBadHandshakeIsRejectedClearlyAndTheNextVmIsServed) {
  auto handler = StartHandler();
  FirecrackerClient good(TwoRegions());
  ASSERT_TRUE(good.setup().is_ok());
  const std::string base = std::to_string(reinterpret_cast<uint64_t>(good.region(0)));
  auto region = [&](const std::string& size, const std::string& offset, const std::string& extra) {
    return "[{\"base_host_virt_addr\":" + base + ",\"size\":" + size + ",\"offset\":" + offset +
           extra + "}]";
  };
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  // A refused handshake's userfaultfd is kept and its faults poisoned until
  // the VM disconnects (refused_handshake_test.cc), so each case sends a
  // userfaultfd of its own, with nothing registered.
  auto spare = linux_uffd::open(0);
  ASSERT_TRUE(spare.is_ok()) << spare.status().to_string();
  const int uffd = spare->get();
  struct BadHandshake {
    std::string what;
    std::string bytes;
    int fd;
    bool close_after;
    std::string logged;
  };
  const std::vector<BadHandshake> cases = {
      {"malformed JSON", "[{]", uffd, false, "not valid JSON"},
      {"truncated JSON", "[{\"base_host_virt_addr\":4096,\"si", uffd, true, "unfinished handshake"},
      {"no descriptor", region("4096", "0", ""), -1, false, "carried no userfaultfd descriptor"},
      {"not a userfaultfd", region("4096", "0", ""), pipe_fds[0], false, "not a userfaultfd"},
      {"not an array", "{\"size\":4096}", uffd, false, "not an array"},
      {"page size zero", region("4096", "0", ",\"page_size\":0"), uffd, false, "page size 0"},
      {"page size 3000", region("4096", "0", ",\"page_size\":3000"), uffd, false, "page size 3000"},
      {"wrapping", "[{\"base_host_virt_addr\":18446744073709547520,\"size\":8192,\"offset\":0}]",
       uffd, false, "wraps"},
      {"past the file", region("8192", std::to_string(kFileSize - 4096), ""), uffd, false,
       "past the end of the memory file"},
      {"overlapping",
       "[{\"base_host_virt_addr\":" + base + ",\"size\":8192,\"offset\":0}," +
           "{\"base_host_virt_addr\":" + base + ",\"size\":4096,\"offset\":65536}]",
       uffd, false, "overlap in host memory"},
  };
  for (const BadHandshake& bad : cases) {
    SCOPED_TRACE(bad.what);
    if (bad.fd == uffd && !bad.close_after) {
      // Held open: the VM could still fault. Gone once the VM hangs up.
      auto connection = testing::send_handshake(socket_, bad.bytes, bad.fd);
      ASSERT_TRUE(connection.is_ok()) << connection.status().to_string();
      EXPECT_TRUE(handler->wait_for_log(bad.logged)) << handler->log_text();
      continue;
    }
    EXPECT_TRUE(testing::send_and_expect_hang_up(socket_, bad.bytes, bad.fd, bad.close_after))
        << "the handler kept the connection of a bad handshake open";
    EXPECT_TRUE(handler->wait_for_log(bad.logged)) << handler->log_text();
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  EXPECT_EQ(handler->stats()["handshakes_rejected"], cases.size());
  // The daemon is still there and serves the next VM.
  ASSERT_TRUE(good.connect_and_send(socket_).is_ok());
  EXPECT_EQ(TouchEverything(good, 2), 0u);
}

TEST_F(UffdHandlerTest, SocketsAreOwnerOnlyAndAMissingMemoryFileIsRefused) {
  auto handler = StartHandler();
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((socket_ + ".stats").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const std::string log = dir_.file("missing.log");
  const std::string command = std::string(FAULTLINE_CLI) + " handle --socket " +
                              dir_.file("other.sock") + " --mem-file " + dir_.file("nope.mem") +
                              " 2> " + log;
  EXPECT_NE(std::system(command.c_str()), 0);
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("nope.mem"), std::string::npos) << text;
}

TEST_F(UffdHandlerTest, SigtermWithASessionRunningEndsItAndExitsCleanly) {
  auto handler = StartHandler();
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  ASSERT_TRUE(RegionMatchesFile(vm, 0, 0, kMiB));
  const int status = handler->terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << handler->log_text();
  EXPECT_NE(handler->log_text().find("ended after"), std::string::npos) << handler->log_text();
}

TEST_F(UffdHandlerTest, PagesCanComeFromAPageServer) {
  // The page server runs in this process, so the test owns it (it stops when
  // `server` goes) and can ask it what it served.
  auto server = PageServer::start({"unix:" + dir_.file("pages.sock"), mem_file_, 0});
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  {
    auto handler = StartHandler({"--page-server", (*server)->address()});
    FirecrackerClient vm(TwoRegions());
    ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
    EXPECT_EQ(TouchEverything(vm, 2), 0u);
  }
  // The bytes checked above came from the server, not from the file directly.
  const PageServerStats stats = (*server)->stats();
  EXPECT_GE(stats.connections, 1u);
  EXPECT_GT(stats.bytes + stats.demand_bytes + stats.zero_bytes, 0u);
  EXPECT_EQ(stats.bad_requests, 0u);
}

}  // namespace
}  // namespace faultline
