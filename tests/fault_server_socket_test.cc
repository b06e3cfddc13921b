// The fault server with pages coming from a page server across a socket: the
// whole path, including a server that dies, restarts or speaks garbage.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "faultline/fault_server.h"
#include "faultline/page_source.h"
#include "net/socket_io.h"
#include "support/guest_memory.h"
#include "support/raw_server.h"
#include "support/served_image.h"
#include "support/sigbus.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;
using testing::ServedImage;
using testing::Transport;
constexpr uint64_t kPage = ServedImage::kPageSize;

class FaultServerSocketTest : public testing::ServedImageTest {
 protected:
  void ServeIntoGuestMemory(uint64_t pages) {
    Serve(pages);
    memory_ = std::make_unique<testing::GuestMemory>(pages * kPage);
  }

  // A pager on a socket source for `address`, and a started fault server.
  void StartServer(const std::string& address, PagerConfig config = {},
                   FaultServerOptions options = {}) {
    SocketSourceOptions socket_options;
    socket_options.io_timeout = 500ms;
    auto source = connect_socket_page_source(address, socket_options);
    ASSERT_TRUE(source.is_ok()) << source.status().to_string();
    pager_ = Pager::create(std::move(source).value(), std::move(config));
    ASSERT_TRUE(pager_->register_region(ServedImage::kRamStart, memory_->size()).is_ok());
    auto server = FaultServer::create(pager_, std::move(options));
    ASSERT_TRUE(server.is_ok()) << server.status().to_string();
    server_ = std::move(server).value();
    ASSERT_TRUE(
        server_->map({ServedImage::kRamStart, memory_->data(), memory_->size(), kPage}).is_ok());
    ASSERT_TRUE(server_->start().is_ok());
  }

  // Reads page `page` of guest memory: true and the right bytes, or false on
  // SIGBUS. Wrong bytes fail the test.
  bool ReadPage(uint64_t page) {
    std::vector<std::byte> bytes(kPage);
    if (!testing::copy_catching_sigbus(bytes.data(), memory_->data() + page * kPage, kPage)) {
      return false;
    }
    auto expected = served_.expected(served_.page_gpa(page));
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), expected.begin())) << "page " << page;
    return true;
  }

  std::unique_ptr<testing::GuestMemory> memory_;
  PagerHandle pager_;
  std::unique_ptr<FaultServer> server_;
};

TEST_P(FaultServerSocketTest, EightThreadsFaultingRandomPagesOf256MiBSeeEveryByteRight) {
  constexpr uint64_t kPages = (256ull << 20) / kPage;
  ServeIntoGuestMemory(kPages);
  FaultServerOptions options;
  options.threads = 2;
  options.prefetch.policy =
      PrefetchPolicy::kDemand;  // one fetch per page: the count below is exact
  StartServer(served_.server->address(), {}, options);
  std::vector<uint64_t> order(kPages);
  for (uint64_t i = 0; i < kPages; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  std::atomic<uint64_t> right{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte> bytes(kPage);
      for (uint64_t i = static_cast<uint64_t>(t); i < kPages; i += 8) {
        if (!testing::copy_catching_sigbus(bytes.data(), memory_->data() + order[i] * kPage,
                                           kPage)) {
          continue;
        }
        auto expected = served_.expected(served_.page_gpa(order[i]));
        if (std::equal(bytes.begin(), bytes.end(), expected.begin())) right.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  server_->request_shutdown();
  ASSERT_TRUE(server_->wait().is_ok());
  EXPECT_EQ(right.load(), kPages);  // every byte of every page
  EXPECT_EQ(pager_->stats().source_errors, 0u);
  EXPECT_EQ(pager_->stats().faults, kPages + server_->stats().already_present);
}

TEST_P(FaultServerSocketTest, PageServerDyingMidRunGivesSigbusNotWrongBytesOrAHang) {
  ServeIntoGuestMemory(256);
  PagerConfig config;
  config.source_retry.deadline = 100ms;
  FaultServerOptions options;
  options.prefetch.policy = PrefetchPolicy::kDemand;  // pages 100, 101 come only when touched
  StartServer(served_.server->address(), config, options);
  for (uint64_t page = 0; page < 32; ++page) ASSERT_TRUE(ReadPage(page)) << page;
  served_.server->stop();
  EXPECT_FALSE(ReadPage(100));  // retried until the deadline, then poisoned
  EXPECT_FALSE(ReadPage(101));
  for (uint64_t page = 0; page < 32; ++page) EXPECT_TRUE(ReadPage(page)) << page;  // still there
  server_->request_shutdown();
  ASSERT_TRUE(server_->wait().is_ok());
  EXPECT_EQ(server_->stats().poisoned, 2u);
  EXPECT_EQ(pager_->stats().source_errors, 2u);
  EXPECT_GT(pager_->stats().source_retries, 0u);
}

TEST_P(FaultServerSocketTest, PageServerRestartingWithinTheRetryDeadlineLosesNothing) {
  ServeIntoGuestMemory(256);
  const std::string address = served_.server->address();
  PagerConfig config;
  config.source_retry.deadline = 10s;
  FaultServerOptions options;
  options.prefetch.policy = PrefetchPolicy::kDemand;  // pages 1..63 wait for their faults
  StartServer(address, config, options);
  ASSERT_TRUE(ReadPage(0));
  served_.server->stop();
  std::atomic<bool> read_done{false};
  std::thread vcpu([&] {
    for (uint64_t page = 1; page < 64; ++page) EXPECT_TRUE(ReadPage(page)) << page;
    read_done = true;
  });
  // The faulting thread waits (it is not failed) while the server is down.
  while (pager_->stats().source_retries == 0) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(read_done.load());
  PageServerOptions again{address, served_.mem_file, ServedImage::kRamStart};
  again.allow_plain_tcp = true;  // loopback, in a test
  auto restarted = PageServer::start(again);
  ASSERT_TRUE(restarted.is_ok()) << restarted.status().to_string();
  vcpu.join();
  EXPECT_TRUE(read_done.load());
  EXPECT_EQ(pager_->stats().source_errors, 0u);
}

TEST_P(FaultServerSocketTest, PageServerSpeakingGarbageIsASourceErrorNeverInstalled) {
  memory_ = std::make_unique<testing::GuestMemory>(64 * kPage);
  served_.image.resize(64 * kPage);
  testing::RawServer garbage(testing::listen_address(GetParam(), dir_), [](int fd) {
    std::vector<std::byte> noise(16 + kPage);
    std::mt19937_64 rng(1);
    for (auto& b : noise) b = static_cast<std::byte>(rng());
    std::byte request[16];
    while (net::read_full(fd, request, net::deadline_after(5s)).is_ok()) {
      if (!net::write_full(fd, noise, net::deadline_after(5s)).is_ok()) return;
    }
  });
  PagerConfig config;
  config.source_retry.deadline = 50ms;
  std::atomic<int> failures{0};
  FaultServerOptions options;
  options.on_failure = [&](const Status& why) {
    if (why.message().find("protocol") != std::string::npos) failures.fetch_add(1);
  };
  StartServer(garbage.address(), config, options);
  EXPECT_FALSE(ReadPage(3));
  server_->request_shutdown();
  ASSERT_TRUE(server_->wait().is_ok());
  EXPECT_EQ(failures.load(), 1);
  EXPECT_EQ(server_->stats().copies, 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, FaultServerSocketTest,
                         ::testing::Values(Transport::kUnix, Transport::kTcp),
                         [](const auto& info) { return testing::transport_name(info.param); });

}  // namespace
}  // namespace faultline
