// Postcopy migration of the KVM guest between two processes: `faultline
// migrate` runs the guest, pauses it mid-way and serves its memory; `faultline
// vm receive` resumes it at once and pulls pages over protocol v2 while the
// rest is pushed. The migrated guest must finish with exactly the result of an
// uninterrupted run (which a model of the guest program computes), also when
// the connection is cut mid-migration, bytes are corrupted on the way, or the
// path is TLS with mutual authentication. Skips where /dev/kvm cannot run our guest.
#include <gtest/gtest.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "net/socket_address.h"
#include "support/fault_proxy.h"
#include "support/temp_dir.h"
#include "support/test_certs.h"
#include "support/vm_cli.h"
#include "vm/crc32.h"
#include "vm/probe.h"
#include "vm/workload.h"

namespace faultline::vm {
namespace {

using testing::TempDir;

// The source: the workload guest, paused at kMidWay and served on `listen`.
CliProcess start_source(const TempDir& dir, const std::string& listen,
                        std::vector<std::string> extra = {}) {
  auto args = with({"migrate", "--json", "--listen", listen, "--after-progress",
                    std::to_string(kMidWay), "--wait", "60"},
                   kWorkload);
  return CliProcess(dir, with(args, extra));
}

// Waits until the source serves (its socket file exists).
bool wait_for_socket(const std::string& path) {
  for (int i = 0; i < 1000; ++i) {
    if (std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void expect_source_completed(CliProcess& source) {
  Cli done = source.wait();
  ASSERT_EQ(done.exit_code, 0) << done.err;
  const auto j = done.json();
  ASSERT_FALSE(j.is_discarded()) << done.out;
  EXPECT_EQ(j["completed"], true);
  EXPECT_EQ(j["paused_at_progress"], kMidWay);
  // Every page crossed once, pushed or asked for (a cut may resend some).
  EXPECT_GE(j["pushed_bytes"].get<uint64_t>() + j["demand_bytes"].get<uint64_t>(), kRam);
}

TEST(VmMigrate, OverAUnixSocketTheGuestFinishesWithTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  const std::string sock = dir.file("migrate.sock");
  CliProcess source = start_source(dir, "unix:" + sock);
  ASSERT_TRUE(wait_for_socket(sock)) << source.wait().err;
  Cli received = faultline(dir, {"vm", "receive", "--json", "--from", "unix:" + sock});
  expect_uninterrupted_result(received);
  const auto j = received.json();
  EXPECT_GT(j["pushed_pages"].get<uint64_t>(), 0u);
  EXPECT_GE(j["resume_ms"].get<double>(), 0.0);
  EXPECT_GT(j["all_pages_ms"].get<double>(), 0.0);
  expect_source_completed(source);
}

TEST(VmMigrate, WithCompressionTheGuestFinishesWithTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  const std::string sock = dir.file("migrate.sock");
  CliProcess source = start_source(dir, "unix:" + sock, {"--compression", "zstd"});
  ASSERT_TRUE(wait_for_socket(sock)) << source.wait().err;
  Cli received = faultline(
      dir, {"vm", "receive", "--json", "--compression", "zstd", "--from", "unix:" + sock});
  expect_uninterrupted_result(received);
  EXPECT_LT(received.json()["wire_bytes"].get<uint64_t>(), kRam);
  expect_source_completed(source);
}

// A source serving on DIR/migrate.sock, and a proxy in front of it that the
// destination goes through.
class VmMigrateThroughAProxy : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_KVM();
    const std::string sock = dir_.file("migrate.sock");
    source_.emplace(start_source(dir_, "unix:" + sock));
    ASSERT_TRUE(wait_for_socket(sock)) << source_->wait().err;
    auto proxy = testing::FaultProxy::start("unix:" + dir_.file("proxy.sock"), "unix:" + sock);
    ASSERT_TRUE(proxy.is_ok()) << proxy.status().to_string();
    proxy_ = std::move(proxy).value();
  }
  Cli receive() {
    return faultline(dir_, {"vm", "receive", "--json", "--from", proxy_->address()});
  }

  TempDir dir_;
  std::optional<CliProcess> source_;
  std::unique_ptr<testing::FaultProxy> proxy_;
};

TEST_F(VmMigrateThroughAProxy, ConnectionCutTwiceMidMigrationRecoversWithTheUninterruptedResult) {
  // The first two connections die after 6 MB towards the destination.
  proxy_->cut_after(testing::Direction::kToClient, 6'000'000, 2);
  Cli received = receive();
  expect_uninterrupted_result(received);
  EXPECT_GE(received.json()["reconnects"].get<uint64_t>(), 2u);
  expect_source_completed(*source_);
}

TEST_F(VmMigrateThroughAProxy, CorruptedBytesOnTheWayAreCaughtAndFetchedAgain) {
  proxy_->corrupt_randomly(testing::Direction::kToClient, 0.001, 7, 3);
  Cli received = receive();
  expect_uninterrupted_result(received);
  const auto j = received.json();
  EXPECT_GT(j["corrupt"].get<uint64_t>() + j["reconnects"].get<uint64_t>(), 0u);
  EXPECT_GT(proxy_->counters().corrupted_bytes, 0u);
  expect_source_completed(*source_);
}

TEST(VmMigrate, OverTcpWithMutualTlsTheGuestFinishesWithTheUninterruptedResult) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  const testing::TestCerts certs = testing::make_test_certs(dir.path());
  // Port 0 is not known to the destination: pick a free one first.
  auto probe = net::listen_socket({net::SocketAddress::Kind::kTcp, "", "127.0.0.1", 0});
  ASSERT_TRUE(probe.is_ok());
  const std::string address = probe->address.to_string();
  probe->fd.reset();
  CliProcess source = start_source(
      dir, address,
      {"--tls-cert", certs.server_cert, "--tls-key", certs.server_key, "--tls-ca", certs.ca_cert});
  Cli received;
  for (int attempt = 0; attempt < 100; ++attempt) {
    received =
        faultline(dir, {"vm", "receive", "--json", "--from", address, "--tls-ca", certs.ca_cert,
                        "--tls-cert", certs.client_cert, "--tls-key", certs.client_key});
    if (received.exit_code == 0 || received.err.find("refused") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the source is still booting
  }
  expect_uninterrupted_result(received);
  expect_source_completed(source);
}

TEST(VmMigrate, ASourceNobodyComesForGivesUpSayingSo) {
  SKIP_WITHOUT_KVM();
  TempDir dir;
  Cli source = faultline(dir, with({"migrate", "--listen", "unix:" + dir.file("m.sock"),
                                    "--after-progress", "2", "--wait", "1"},
                                   kWorkload));
  EXPECT_NE(source.exit_code, 0);
  EXPECT_NE(source.err.find("no destination connected within 1 s"), std::string::npos)
      << source.err;
}

TEST(VmMigrate, ADestinationWhoseSourceStaysAwayFailsSayingSo) {
  TempDir dir;
  Cli received = faultline(
      dir, {"vm", "receive", "--from", "unix:" + dir.file("nobody.sock"), "--wait", "0.2"});
  EXPECT_NE(received.exit_code, 0);
  EXPECT_NE(received.err.find("nobody.sock"), std::string::npos) << received.err;
}

TEST(VmMigrate, PlainTcpIsRefusedUnlessAskedFor) {
  TempDir dir;
  Cli source = faultline(dir, with({"migrate", "--listen", "tcp:127.0.0.1:0"}, kWorkload));
  EXPECT_NE(source.exit_code, 0);
  EXPECT_NE(source.err.find("refusing plain TCP"), std::string::npos) << source.err;
  // What the user reads names the flags, not the library's option fields.
  EXPECT_NE(source.err.find("(--tls-cert and --tls-key)"), std::string::npos) << source.err;
  EXPECT_NE(source.err.find("(--plain-tcp)"), std::string::npos) << source.err;
}

TEST(VmMigrate, ADestinationRefusesPlainTcpNamingTheFlags) {
  TempDir dir;
  Cli received = faultline(dir, {"vm", "receive", "--from", "tcp:127.0.0.1:1", "--wait", "0.2"});
  EXPECT_NE(received.exit_code, 0);
  EXPECT_NE(received.err.find("refusing plain TCP"), std::string::npos) << received.err;
  EXPECT_NE(received.err.find("(--tls-ca)"), std::string::npos) << received.err;
  EXPECT_NE(received.err.find("(--plain-tcp)"), std::string::npos) << received.err;
}

}  // namespace
}  // namespace faultline::vm
