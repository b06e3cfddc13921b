// `faultline handle --page-server`: a real `serve-pages` process, TLS as every
// other client speaks it, the server checked at startup, and VMs (clients
// acting as Firecracker) whose every byte is checked against the file served.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "os_linux/uffd.h"
#include "support/cli_process.h"
#include "support/firecracker_client.h"
#include "support/handler_process.h"
#include "support/serve_pages_process.h"
#include "support/temp_dir.h"
#include "support/test_certs.h"

namespace faultline {
namespace {

using testing::FirecrackerClient;
using testing::FirecrackerOptions;
using testing::kPage;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kFileSize = 16 * kMiB;

class HandlerPageServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = testing::make_test_image(kFileSize, kPage, 8);
    testing::write_file(mem_file_, image_);
    certs_ = testing::make_test_certs(dir_.path());
  }

  std::vector<std::string> ServeArgs(std::vector<std::string> extra) const {
    std::vector<std::string> args = {"--listen", "tcp:127.0.0.1:0", "--mem-file",
                                     mem_file_,  "--ram-start",     "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  std::vector<std::string> TlsServer() const {
    return ServeArgs({"--tls-cert", certs_.server_cert, "--tls-key", certs_.server_key});
  }

  std::unique_ptr<testing::HandlerProcess> StartHandler(const std::vector<std::string>& args) {
    auto handler = std::make_unique<testing::HandlerProcess>(FAULTLINE_CLI, socket_,
                                                             dir_.file("handler.log"), args);
    EXPECT_TRUE(handler->started());
    return handler;
  }

  // Two regions apart in host memory and in the file: 6 MiB at offset 0 and
  // 4 MiB at offset 10 MiB.
  static FirecrackerOptions TwoRegions() {
    FirecrackerOptions o;
    o.regions = {{6 * kMiB, 0}, {4 * kMiB, 10 * kMiB}};
    o.uffd_features = UFFD_FEATURE_EVENT_REMOVE;
    return o;
  }

  // Pages of the VM's memory that differ from the file.
  uint64_t WrongPages(const FirecrackerClient& vm, size_t regions) const {
    uint64_t wrong = 0;
    for (size_t r = 0; r < regions; ++r) {
      for (uint64_t off = 0; off < vm.region_size(r); off += kPage) {
        if (std::memcmp(vm.region(r) + off, image_.data() + vm.region_offset(r) + off, kPage) !=
            0) {
          ++wrong;
        }
      }
    }
    return wrong;
  }

  // `faultline handle` that must fail to start: its output.
  testing::Cli HandleFails(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"handle", "--socket", socket_};
    all.insert(all.end(), args.begin(), args.end());
    testing::Cli run = testing::faultline(dir_, all);
    EXPECT_TRUE(run.exit_code == 1) << run.output();
    struct stat st {};
    EXPECT_NE(::stat(socket_.c_str(), &st), 0) << "a handler that did not start left its socket";
    return run;
  }

  testing::TempDir dir_;
  std::string mem_file_ = dir_.file("snapshot.mem");
  std::string socket_ = dir_.file("uffd.sock");
  std::vector<std::byte> image_;
  testing::TestCerts certs_;
};

TEST_F(HandlerPageServerTest, AVmIsServedFromServePagesOverTlsWithEveryByteRight) {
  testing::ServePagesProcess server(FAULTLINE_CLI, TlsServer(), dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  auto handler = StartHandler({"--page-server", server.address(), "--tls-ca", certs_.ca_cert});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.setup().is_ok()) << vm.setup().to_string();
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_EQ(WrongPages(vm, 2), 0u);
  const auto stats = handler->stats();
  ASSERT_EQ(stats["sessions"].size(), 1u) << stats.dump();
  EXPECT_GT(stats["sessions"][0]["faults"].get<uint64_t>(), 0u);
  EXPECT_EQ(stats["sessions"][0]["source_errors"].get<uint64_t>(), 0u);
}

TEST_F(HandlerPageServerTest, WithMutualTlsTheHandlerPresentsItsClientCertificate) {
  std::vector<std::string> args = TlsServer();
  args.insert(args.end(), {"--tls-ca", certs_.ca_cert});
  testing::ServePagesProcess server(FAULTLINE_CLI, args, dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  auto handler = StartHandler({"--page-server", server.address(), "--tls-ca", certs_.ca_cert,
                               "--tls-cert", certs_.client_cert, "--tls-key", certs_.client_key});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_EQ(WrongPages(vm, 2), 0u);
}

TEST_F(HandlerPageServerTest, WithBackgroundFillTheServerPushesTheVmsMemory) {
  testing::ServePagesProcess server(FAULTLINE_CLI, TlsServer(), dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  auto handler = StartHandler(
      {"--page-server", server.address(), "--tls-ca", certs_.ca_cert, "--background-fill"});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  const uint64_t mapped_pages = (6 + 4) * kMiB / kPage;
  // Pushed pages arrive without the VM touching anything: wait for all of them.
  uint64_t pushed = 0;
  for (int i = 0; i < 1000 && pushed < mapped_pages; ++i) {
    const auto stats = handler->stats();
    if (stats["sessions"].size() == 1) {
      pushed = stats["sessions"][0]["pushed_pages"].get<uint64_t>();
    }
    if (pushed < mapped_pages) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(pushed, mapped_pages) << handler->stats().dump();
  EXPECT_EQ(WrongPages(vm, 2), 0u);
  EXPECT_EQ(handler->stats()["sessions"][0]["faults"].get<uint64_t>(), 0u);
}

TEST_F(HandlerPageServerTest, RegionsBeyondTheServersImageAreRefusedNamingTheServer) {
  testing::ServePagesProcess server(FAULTLINE_CLI, TlsServer(), dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  auto handler = StartHandler({"--page-server", server.address(), "--tls-ca", certs_.ca_cert});
  FirecrackerOptions o;
  o.regions = {{8 * kMiB, 12 * kMiB}};  // to 20 MiB of a 16 MiB image
  FirecrackerClient vm(o);
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_TRUE(
      handler->wait_for_log("reaches past the end of the image of page server " + server.address()))
      << handler->log_text();
  EXPECT_EQ(handler->stats()["handshakes_rejected"].get<uint64_t>(), 1u);
}

TEST_F(HandlerPageServerTest, PlainTcpIsRefusedWithoutThePlainTcpFlag) {
  testing::ServePagesProcess server(FAULTLINE_CLI, ServeArgs({"--plain-tcp"}),
                                    dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  const testing::Cli run = HandleFails({"--page-server", server.address()});
  EXPECT_NE(run.output().find("--plain-tcp"), std::string::npos) << run.output();
  EXPECT_EQ(run.output().find("allow_plain_tcp"), std::string::npos) << run.output();

  // With the flag it is served.
  auto handler = StartHandler({"--page-server", server.address(), "--plain-tcp"});
  FirecrackerClient vm(TwoRegions());
  ASSERT_TRUE(vm.connect_and_send(socket_).is_ok());
  EXPECT_EQ(WrongPages(vm, 2), 0u);
}

TEST_F(HandlerPageServerTest, AnUnreachableServerFailsAtStartupNamingIt) {
  const std::string nowhere = "unix:" + dir_.file("nobody-listens.sock");
  const testing::Cli run = HandleFails({"--page-server", nowhere});
  EXPECT_NE(run.output().find("page server " + nowhere), std::string::npos) << run.output();
}

TEST_F(HandlerPageServerTest, AServerOfAnImageNotAtZeroIsRefusedAtStartup) {
  testing::ServePagesProcess server(FAULTLINE_CLI,
                                    {"--listen", "unix:" + dir_.file("pages.sock"), "--mem-file",
                                     mem_file_, "--ram-start", "0x80000000"},
                                    dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  const testing::Cli run = HandleFails({"--page-server", server.address()});
  EXPECT_NE(run.output().find("--ram-start 0"), std::string::npos) << run.output();
}

}  // namespace
}  // namespace faultline
