// `faultline handle` stops at once on SIGTERM, even while a connection is in
// the middle of its handshake: stopping wakes handshakes in progress rather
// than waiting for their timeout.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "net/socket_address.h"
#include "support/handler_process.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::kPage;

TEST(HandlerShutdownTest, SigtermDuringAHandshakeThatSendsNothingExitsCleanlyAtOnce) {
  testing::TempDir dir;
  const std::string mem_file = dir.file("guest.mem");
  testing::write_file(mem_file, testing::make_test_image(16 * kPage, kPage, 0));
  const std::string socket = dir.file("fc.sock");
  // A handshake may take a minute: exiting within the hang guard below (10 s)
  // means the handshake in progress was woken, not timed out.
  testing::HandlerProcess handler(
      FAULTLINE_CLI, socket, dir.file("handler.log"),
      {"--mem-file", mem_file, "--handshake-timeout", "60", "--log-level", "debug"});
  ASSERT_TRUE(handler.started());
  auto address = net::parse_socket_address("unix:" + socket);
  ASSERT_TRUE(address.is_ok());
  auto silent = net::connect_socket(*address, std::chrono::seconds(2));
  ASSERT_TRUE(silent.is_ok()) << silent.status().to_string();
  ASSERT_TRUE(handler.wait_for_log("handler: connection from")) << handler.log_text();

  const std::optional<int> status = handler.terminate_within(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value()) << "still running 10 s after SIGTERM:\n" << handler.log_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << handler.log_text();
  const std::string log = handler.log_text();
  EXPECT_NE(log.find("stopped before the handshake was complete"), std::string::npos) << log;
  EXPECT_EQ(log.find("handshake rejected"), std::string::npos) << log;
}

}  // namespace
}  // namespace faultline
