// `faultline serve-pages` as a daemon whose address the test reads from its
// startup line.
#pragma once

#include <string>
#include <vector>

#include "os_linux/child_process.h"
#include "support/temp_dir.h"

namespace faultline::testing {

class ServePagesProcess {
 public:
  // Starts `cli serve-pages args...` (stderr to `log`) and waits until it
  // logs the address it serves on; fails the test if it does not.
  ServePagesProcess(const std::string& cli, const std::vector<std::string>& args,
                    const std::string& log);
  ~ServePagesProcess();  // SIGTERM, and waits

  const std::string& address() const { return address_; }
  std::string log_text() const { return read_text(log_); }

 private:
  std::string log_;
  ChildProcess child_;
  std::string address_;
};

}  // namespace faultline::testing
