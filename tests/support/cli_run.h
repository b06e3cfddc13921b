// Running the `faultline` binary the way a user does, for the tests of what it
// says: a command run to its end with its output kept, and `serve-pages` as a
// daemon whose address the test reads from its startup line.
#pragma once

#include <string>
#include <vector>

#include "os_linux/child_process.h"

namespace faultline::testing {

struct CliRun {
  ExitStatus status;
  std::string output;  // stdout and stderr, in that order
};

// Runs `cli args...` to its end, its output in files under `dir`.
CliRun run_cli(const std::string& cli, const std::vector<std::string>& args,
               const std::string& dir);

std::string read_text_file(const std::string& path);

class ServePagesProcess {
 public:
  // Starts `cli serve-pages args...` (stderr to `log`) and waits until it
  // logs the address it serves on; fails the test if it does not.
  ServePagesProcess(const std::string& cli, const std::vector<std::string>& args,
                    const std::string& log);
  ~ServePagesProcess();  // SIGTERM, and waits

  const std::string& address() const { return address_; }
  std::string log_text() const { return read_text_file(log_); }

 private:
  std::string log_;
  ChildProcess child_;
  std::string address_;
};

}  // namespace faultline::testing
