#include "support/handler_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "net/socket_address.h"
#include "net/socket_io.h"
#include "support/temp_dir.h"

namespace faultline::testing {
namespace {

// The handler's stats, or "" when it does not answer (yet).
std::string read_stats(const std::string& path) {
  auto address = net::parse_socket_address("unix:" + path);
  if (!address.is_ok()) return "";
  auto connection = net::connect_socket(*address, std::chrono::seconds(1));
  if (!connection.is_ok()) return "";
  auto text =
      net::read_to_end(connection->get(), 16 << 20, net::deadline_after(std::chrono::seconds(5)));
  return text.is_ok() ? *text : "";
}

}  // namespace

bool HandlerProcess::wait_until_answering(const std::string& socket) {
  for (int i = 0; i < 1000; ++i) {
    if (!read_stats(socket + ".stats").empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

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
  return read_text(log_);
}

bool HandlerProcess::wait_for_log(const std::string& text) const {
  for (int i = 0; i < 1000; ++i) {
    if (log_text().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace faultline::testing
