// What an operator meets when running the daemons: the version, the log level,
// `faultline stats`, and signals or a broken log pipe that must not kill them.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "faultline/version.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "support/cli_process.h"
#include "support/handler_process.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::Cli;
using testing::HandlerProcess;

// Connects to the handler's VM socket and sends a handshake that is not JSON,
// which the handler rejects with a log line; returns once it hangs up.
void send_bad_handshake(const std::string& socket) {
  auto connection = net::connect_socket({.kind = net::SocketAddress::Kind::kUnix, .path = socket},
                                        std::chrono::seconds(2));
  ASSERT_TRUE(connection.is_ok()) << connection.status().to_string();
  const std::string garbage = "this is not a handshake";
  ASSERT_TRUE(net::write_full(connection->get(), std::as_bytes(std::span(garbage)),
                              net::deadline_after(std::chrono::seconds(2))));
  (void)net::read_to_end(connection->get(), 4096, net::deadline_after(std::chrono::seconds(10)));
}

bool exited_cleanly(int raw_status) {
  return WIFEXITED(raw_status) && WEXITSTATUS(raw_status) == 0;
}

class DaemonCliTest : public ::testing::Test {
 protected:
  void SetUp() override { testing::write_file(mem_file_, testing::make_test_image(1 << 20)); }

  Cli cli(std::vector<std::string> args) const { return testing::faultline(dir_, std::move(args)); }
  Cli stats() const { return cli({"stats", "--socket", socket_}); }

  testing::TempDir dir_;
  std::string mem_file_ = dir_.file("snapshot.mem");
  std::string socket_ = dir_.file("uffd.sock");
  std::string log_ = dir_.file("handler.log");
};

TEST_F(DaemonCliTest, VersionIsTheLibrarysVersion) {
  const Cli r = cli({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "faultline " FAULTLINE_VERSION_STRING "\n");
}

TEST_F(DaemonCliTest, AnUnknownLogLevelIsRefusedRatherThanSilencingErrors) {
  const Cli r = cli({"--log-level", "verbose", "stats", "--socket", "/nonexistent"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("verbose"), std::string::npos) << r.out << r.err;
  // Refused before the command ran: the stats command's own error never came.
  EXPECT_EQ(r.err.find("no handler answers"), std::string::npos) << r.err;
}

TEST_F(DaemonCliTest, TheLogLevelIsAcceptedAfterTheSubcommandToo) {
  // At "off", the stats command's error line is not printed; its exit code stays.
  const Cli quiet = cli({"stats", "--socket", "/nonexistent", "--log-level", "off"});
  EXPECT_EQ(quiet.exit_code, 1);
  EXPECT_EQ(quiet.out + quiet.err, "");
  const Cli loud = cli({"stats", "--socket", "/nonexistent", "--log-level", "error"});
  EXPECT_EQ(loud.exit_code, 1);
  EXPECT_NE(loud.err.find("no handler answers"), std::string::npos) << loud.err;
}

TEST_F(DaemonCliTest, StatsAnswersEveryCall) {
  HandlerProcess handler(FAULTLINE_CLI, socket_, log_, {"--mem-file", mem_file_});
  ASSERT_TRUE(handler.started());
  int answered = 0;
  constexpr int kCalls = 40;
  for (int i = 0; i < kCalls; ++i) {
    const Cli r = stats();
    if (r.exit_code == 0 && r.json().contains("sessions")) ++answered;
  }
  EXPECT_EQ(answered, kCalls);
}

TEST_F(DaemonCliTest, SighupAndSigusr1LeaveTheHandlerServing) {
  HandlerProcess handler(FAULTLINE_CLI, socket_, log_, {"--mem-file", mem_file_});
  ASSERT_TRUE(handler.started());
  handler.signal(SIGHUP);
  handler.signal(SIGUSR1);
  // A stats answer after both signals shows they were handled (or ignored) rather than fatal.
  ASSERT_TRUE(handler.wait_for_log("SIGHUP"));
  EXPECT_EQ(stats().exit_code, 0);
  EXPECT_TRUE(exited_cleanly(handler.terminate()));
}

TEST_F(DaemonCliTest, AStderrWhoseReaderHasGoneDoesNotKillTheHandler) {
  auto child =
      ChildProcess::spawn({FAULTLINE_CLI, "handle", "--socket", socket_, "--mem-file", mem_file_},
                          {.stderr_pipe = true});
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  child->take_stderr().reset();  // nobody reads the handler's log from now on
  ASSERT_TRUE(HandlerProcess::wait_until_answering(socket_));
  // Every rejected handshake writes log lines into the broken pipe.
  for (int i = 0; i < 5; ++i) send_bad_handshake(socket_);
  ASSERT_FALSE(child->try_wait().has_value());
  EXPECT_EQ(stats().exit_code, 0);
  child->signal(SIGTERM);
  EXPECT_TRUE(exited_cleanly(child->wait().raw));
}

}  // namespace
}  // namespace faultline
