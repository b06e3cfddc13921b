// `faultline handle` run as a separate process, the way an operator runs it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "os_linux/child_process.h"

namespace faultline::testing {

class HandlerProcess {
 public:
  // Starts `cli handle --socket SOCKET <extra args>`, stderr to LOG, and waits
  // until its stats socket answers.
  HandlerProcess(const std::string& cli, const std::string& socket, const std::string& log,
                 const std::vector<std::string>& extra_args);
  ~HandlerProcess();  // SIGTERM, expects a clean exit

  // Waits (up to 10 s) until a handler answers on SOCKET's stats socket.
  static bool wait_until_answering(const std::string& socket);

  bool started() const { return started_; }
  const std::string& socket() const { return socket_; }
  nlohmann::json stats() const;
  std::string log_text() const;
  // Waits (up to 10 s) until the log contains `text`.
  bool wait_for_log(const std::string& text) const;
  void signal(int signo) const { child_.signal(signo); }
  // SIGTERM and wait; returns the exit status (as waitpid reports it).
  int terminate();
  // SIGTERM and wait at most `hang_guard`: the exit status, or nothing (and
  // the handler killed) if it was still running then.
  std::optional<int> terminate_within(std::chrono::milliseconds hang_guard);
  pid_t pid() const { return child_.pid(); }

 private:
  std::string cli_;
  std::string socket_;
  std::string log_;
  ChildProcess child_;
  bool started_ = false;
};

}  // namespace faultline::testing
