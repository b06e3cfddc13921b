// Daemons remove only the socket files they created and still own: a failed
// start leaves whatever was at the path, and a shutdown leaves a socket that
// another process has put there since. `faultline handle` (VM and stats
// sockets) and `faultline serve-pages` alike, through net::Listener.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "faultline/page_server.h"
#include "net/socket_address.h"
#include "os_linux/child_process.h"
#include "support/handler_process.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::read_text;

using testing::kPage;

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

class SocketOwnershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_file(mem_file_, testing::make_test_image(16 * kPage, kPage, 0));
  }

  // Runs `faultline handle --socket SOCKET ARGS...` expecting it to fail at
  // start; returns its log.
  std::string HandleFailsToStart(const std::string& socket, std::vector<std::string> args) {
    std::vector<std::string> argv = {FAULTLINE_CLI, "handle", "--socket", socket};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir_.file("failed.log");
    auto child = ChildProcess::spawn(argv, {.stderr_file = log});
    EXPECT_TRUE(child.is_ok()) << child.status().to_string();
    if (!child.is_ok()) return "";
    EXPECT_NE(child->wait().code(), 0) << "the handler started";
    return read_text(log);
  }

  static void WriteText(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }

  testing::TempDir dir_;
  const std::string mem_file_ = dir_.file("guest.mem");
};

TEST_F(SocketOwnershipTest, RegularFilesAtTheSocketPathsSurviveAHandlerThatRefusesThem) {
  const std::string socket = dir_.file("precious");
  WriteText(socket, "precious\n");
  WriteText(socket + ".stats", "also precious\n");
  const std::string log = HandleFailsToStart(socket, {"--mem-file", mem_file_});
  EXPECT_NE(log.find("refusing to replace it"), std::string::npos) << log;
  EXPECT_EQ(read_text(socket), "precious\n");
  EXPECT_EQ(read_text(socket + ".stats"), "also precious\n");
}

TEST_F(SocketOwnershipTest, AStatsPathThatIsARegularFileLeavesNoVmSocketBehindAndTheFileIntact) {
  const std::string socket = dir_.file("fc.sock");
  WriteText(socket + ".stats", "precious\n");
  HandleFailsToStart(socket, {"--mem-file", mem_file_});
  EXPECT_FALSE(exists(socket)) << "the VM socket it bound outlived the failed start";
  EXPECT_EQ(read_text(socket + ".stats"), "precious\n");
}

TEST_F(SocketOwnershipTest, ASecondHandlerOnALiveHandlersSocketLeavesTheFirstOneReachable) {
  const std::string socket = dir_.file("fc.sock");
  testing::HandlerProcess first(FAULTLINE_CLI, socket, dir_.file("first.log"),
                                {"--mem-file", mem_file_});
  ASSERT_TRUE(first.started());
  const std::string log = HandleFailsToStart(socket, {"--mem-file", mem_file_});
  EXPECT_NE(log.find("another server is listening there"), std::string::npos) << log;
  EXPECT_TRUE(exists(socket));
  EXPECT_TRUE(exists(socket + ".stats"));
  EXPECT_EQ(first.stats()["socket"], socket) << "the first handler no longer answers";
}

TEST_F(SocketOwnershipTest, AnArgumentErrorCreatesNothingAndRemovesNothing) {
  const std::string fresh = dir_.file("fresh.sock");
  HandleFailsToStart(fresh, {"--mem-file", mem_file_, "--threads", "0"});
  EXPECT_FALSE(exists(fresh));
  EXPECT_FALSE(exists(fresh + ".stats"));

  const std::string taken = dir_.file("taken");
  WriteText(taken, "precious\n");
  WriteText(taken + ".stats", "precious\n");
  HandleFailsToStart(taken, {"--mem-file", mem_file_, "--threads", "0"});
  EXPECT_EQ(read_text(taken), "precious\n");
  EXPECT_EQ(read_text(taken + ".stats"), "precious\n");
}

// Another process's listener at `path`, made after ours was removed.
net::Listener ListenInstead(const std::string& path) {
  EXPECT_EQ(::unlink(path.c_str()), 0);
  auto address = net::parse_socket_address("unix:" + path);
  EXPECT_TRUE(address.is_ok());
  auto listener = net::listen_socket(*address);
  EXPECT_TRUE(listener.is_ok()) << listener.status().to_string();
  return std::move(listener).value();
}

bool someone_answers(const std::string& path) {
  auto address = net::parse_socket_address("unix:" + path);
  return address.is_ok() && net::connect_socket(*address, std::chrono::seconds(2)).is_ok();
}

TEST_F(SocketOwnershipTest, SocketsReplacedAfterStartSurviveTheHandlersShutdown) {
  const std::string socket = dir_.file("fc.sock");
  testing::HandlerProcess handler(FAULTLINE_CLI, socket, dir_.file("handler.log"),
                                  {"--mem-file", mem_file_});
  ASSERT_TRUE(handler.started());
  net::Listener vm_socket = ListenInstead(socket);
  net::Listener stats_socket = ListenInstead(socket + ".stats");
  const int status = handler.terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << handler.log_text();
  EXPECT_TRUE(someone_answers(socket)) << "the handler removed a socket it no longer owned";
  EXPECT_TRUE(someone_answers(socket + ".stats"));
}

TEST_F(SocketOwnershipTest, AHandlerRemovesItsOwnSocketsWhenItStops) {
  const std::string socket = dir_.file("fc.sock");
  {
    testing::HandlerProcess handler(FAULTLINE_CLI, socket, dir_.file("handler.log"),
                                    {"--mem-file", mem_file_});
    ASSERT_TRUE(handler.started());
  }
  EXPECT_FALSE(exists(socket));
  EXPECT_FALSE(exists(socket + ".stats"));
}

TEST_F(SocketOwnershipTest, APageServerLeavesASocketThatReplacedItsOwn) {
  const std::string socket = dir_.file("pages.sock");
  auto server = PageServer::start({"unix:" + socket, mem_file_, 0});
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  net::Listener other = ListenInstead(socket);
  (*server)->stop();
  EXPECT_TRUE(someone_answers(socket));
}

}  // namespace
}  // namespace faultline
