// The `faultline` CLI run as a child process, the way a user runs it, with its
// stdout and stderr kept apart. Header-only: FAULTLINE_CLI is defined per test
// executable (tests/CMakeLists.txt).
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "os_linux/child_process.h"
#include "support/temp_dir.h"

namespace faultline::testing {

// How a finished CLI run ended.
struct Cli {
  int exit_code = -1;  // as a shell's $?
  std::string out;
  std::string err;
  nlohmann::json json() const { return nlohmann::json::parse(out, nullptr, false); }
  std::string output() const { return out + err; }  // stdout, then stderr
};

// A CLI run in progress; its output goes to files in `dir`.
class CliProcess {
 public:
  CliProcess(const TempDir& dir, std::vector<std::string> args) {
    static int n = 0;
    out_ = dir.file("cli-" + std::to_string(++n) + ".out");
    err_ = out_ + ".err";
    args.insert(args.begin(), FAULTLINE_CLI);
    auto child = ChildProcess::spawn(args, {.stdout_file = out_, .stderr_file = err_});
    EXPECT_TRUE(child.is_ok()) << child.status().to_string();
    if (child.is_ok()) child_ = std::move(child).value();
  }
  pid_t pid() const { return child_.pid(); }
  std::string out_so_far() const { return read_text(out_); }
  Cli wait() {
    Cli r;
    r.exit_code = child_.wait().code();
    r.out = read_text(out_);
    r.err = read_text(err_);
    return r;
  }

 private:
  ChildProcess child_;
  std::string out_, err_;
};

// Runs `faultline ARGS...` to its end.
inline Cli faultline(const TempDir& dir, std::vector<std::string> args) {
  return CliProcess(dir, std::move(args)).wait();
}

}  // namespace faultline::testing
