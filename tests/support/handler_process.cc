#include "support/handler_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace faultline::testing {
namespace {

std::string read_stats(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  std::string text;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

}  // namespace

HandlerProcess::HandlerProcess(const std::string& cli, const std::string& socket,
                               const std::string& log, const std::vector<std::string>& extra_args)
    : cli_(cli), socket_(socket), log_(log) {
  std::vector<std::string> args = {cli, "handle", "--socket", socket};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  auto child = ChildProcess::spawn(args, {.stderr_file = log});
  if (!child.is_ok()) {
    ADD_FAILURE() << "cannot start " << cli << ": " << child.status().to_string();
    return;
  }
  child_ = std::move(child).value();
  for (int i = 0; i < 1000; ++i) {
    if (!read_stats(socket + ".stats").empty()) {
      started_ = true;
      return;
    }
    if (child_.try_wait()) {
      ADD_FAILURE() << "the handler exited at start; its log:\n" << log_text();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "the handler did not answer on " << socket << ".stats";
}

HandlerProcess::~HandlerProcess() {
  if (child_.running()) {
    int status = terminate();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the handler did not exit cleanly on SIGTERM; its log:\n"
        << log_text();
  }
  // In sanitizer builds the handler's own reports land in its log.
  const std::string log = log_text();
  EXPECT_EQ(log.find("Sanitizer"), std::string::npos) << log;
  EXPECT_EQ(log.find("runtime error:"), std::string::npos) << log;
}

int HandlerProcess::terminate() {
  if (!child_.running()) return -1;
  child_.signal(SIGTERM);
  return child_.wait().raw;
}

std::optional<int> HandlerProcess::terminate_within(std::chrono::milliseconds hang_guard) {
  if (!child_.running()) return std::nullopt;
  child_.signal(SIGTERM);
  const auto give_up = std::chrono::steady_clock::now() + hang_guard;
  while (std::chrono::steady_clock::now() < give_up) {
    if (auto status = child_.try_wait()) return status->raw;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  child_.kill();
  return std::nullopt;
}

nlohmann::json HandlerProcess::stats() const {
  std::string text = read_stats(socket_ + ".stats");
  return nlohmann::json::parse(text, nullptr, false);
}

std::string HandlerProcess::log_text() const {
  std::ifstream in(log_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool HandlerProcess::wait_for_log(const std::string& text) const {
  for (int i = 0; i < 1000; ++i) {
    if (log_text().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace faultline::testing
