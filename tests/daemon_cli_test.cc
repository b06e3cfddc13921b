// What an operator meets when running the daemons: the version, the log level,
// `faultline stats`, and signals or a broken log pipe that must not kill them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "faultline/version.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

CommandResult run_cli(const std::string& args) {
  CommandResult result;
  const std::string command = std::string(FAULTLINE_CLI) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// `faultline handle` as a child whose stderr is `stderr_fd`.
class Handler {
 public:
  Handler(const std::string& socket, const std::string& mem_file, int stderr_fd) : socket_(socket) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(stderr_fd, 2);
      ::execl(FAULTLINE_CLI, FAULTLINE_CLI, "handle", "--socket", socket.c_str(), "--mem-file",
              mem_file.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Handler() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Whether the stats socket accepts a connection within 10 s.
  bool wait_until_listening() const {
    for (int i = 0; i < 1000; ++i) {
      if (connects()) return true;
      if (!alive()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  bool alive() const { return ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  void signal(int signo) const { ::kill(pid_, signo); }
  // SIGTERM, then the exit status as waitpid reports it.
  int terminate() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  const std::string& socket() const { return socket_; }

  // Connects to the VM socket and sends a handshake that is not JSON, which
  // the handler rejects with a log line.
  void send_bad_handshake() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const char garbage[] = "this is not a handshake";
      (void)!::send(fd, garbage, sizeof garbage, MSG_NOSIGNAL);
      char byte;
      (void)!::read(fd, &byte, 1);  // until the handler hangs up
    }
    ::close(fd);
  }

 private:
  bool connects() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, (socket_ + ".stats").c_str(), sizeof addr.sun_path - 1);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }

  std::string socket_;
  pid_t pid_ = -1;
};

class DaemonCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_file(mem_file_, testing::make_test_image(1 << 20));
    log_fd_ =
        ::open(dir_.file("handler.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(log_fd_, 0);
  }
  void TearDown() override { ::close(log_fd_); }

  testing::TempDir dir_;
  std::string mem_file_ = dir_.file("snapshot.mem");
  std::string socket_ = dir_.file("uffd.sock");
  int log_fd_ = -1;
};

TEST(CliTest, VersionIsTheLibrarysVersion) {
  const CommandResult r = run_cli("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "faultline " FAULTLINE_VERSION_STRING "\n");
}

TEST(CliTest, AnUnknownLogLevelIsRefusedRatherThanSilencingErrors) {
  const CommandResult r = run_cli("--log-level verbose stats --socket /nonexistent");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("verbose"), std::string::npos) << r.output;
  // Refused before the command ran: the stats command's own error never came.
  EXPECT_EQ(r.output.find("no handler answers"), std::string::npos) << r.output;
}

TEST(CliTest, TheLogLevelIsAcceptedAfterTheSubcommandToo) {
  // At "off", the stats command's error line is not printed; its exit code stays.
  const CommandResult quiet = run_cli("stats --socket /nonexistent --log-level off");
  EXPECT_EQ(quiet.exit_code, 1);
  EXPECT_EQ(quiet.output, "");
  const CommandResult loud = run_cli("stats --socket /nonexistent --log-level error");
  EXPECT_EQ(loud.exit_code, 1);
  EXPECT_NE(loud.output.find("no handler answers"), std::string::npos) << loud.output;
}

TEST_F(DaemonCliTest, StatsAnswersEveryCall) {
  Handler handler(socket_, mem_file_, log_fd_);
  ASSERT_TRUE(handler.wait_until_listening());
  int answered = 0;
  constexpr int kCalls = 40;
  for (int i = 0; i < kCalls; ++i) {
    const CommandResult r = run_cli("stats --socket " + socket_);
    if (r.exit_code == 0 && r.output.find("\"sessions\"") != std::string::npos) ++answered;
  }
  EXPECT_EQ(answered, kCalls);
}

TEST_F(DaemonCliTest, SighupAndSigusr1LeaveTheHandlerServing) {
  Handler handler(socket_, mem_file_, log_fd_);
  ASSERT_TRUE(handler.wait_until_listening());
  handler.signal(SIGHUP);
  handler.signal(SIGUSR1);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(handler.alive());
  EXPECT_EQ(run_cli("stats --socket " + socket_).exit_code, 0);
  const int status = handler.terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(DaemonCliTest, AStderrWhoseReaderHasGoneDoesNotKillTheHandler) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  Handler handler(socket_, mem_file_, pipe_fds[1]);
  ::close(pipe_fds[0]);  // nobody reads the handler's log from now on
  ::close(pipe_fds[1]);
  ASSERT_TRUE(handler.wait_until_listening());
  // Every rejected handshake writes log lines into the broken pipe.
  for (int i = 0; i < 5; ++i) handler.send_bad_handshake();
  ASSERT_TRUE(handler.alive());
  EXPECT_EQ(run_cli("stats --socket " + socket_).exit_code, 0);
  const int status = handler.terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace faultline
