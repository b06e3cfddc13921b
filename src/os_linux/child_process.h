// A child process started from argv with its output where the caller wants it
// (inherited, a file, or a pipe), waited for, signalled, and killed and reaped
// if its owner goes away first: the CLI demo, the tests and the benchmarks
// run `faultline` (and python3) this way.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "faultline/status.h"
#include "faultline/unique_fd.h"

namespace faultline {

struct ChildProcessOptions {
  std::string program;       // the file to run; empty: argv[0]
  std::string stdout_file;   // truncated and written; empty: inherited
  std::string stderr_file;   // the same for stderr, unless stderr_pipe
  bool stderr_pipe = false;  // stderr to a pipe: read it from stderr_fd()
  bool search_path = false;  // argv[0] looked up in PATH (posix_spawnp)
};

// How a child ended, as waitpid says.
struct ExitStatus {
  int raw = 0;
  bool exited() const;
  bool signalled() const;
  int exit_code() const;  // if exited()
  int signal() const;     // if signalled()
  int code() const;       // the exit code, or 128 + the signal (a shell's $?)
};

class ChildProcess {
 public:
  // argv[0] is the program (a path, or a name in PATH with search_path).
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv,
                                    const ChildProcessOptions& options = {});

  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();  // SIGKILL and reap if still running

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  int stderr_fd() const { return stderr_.get(); }
  // The read end of the stderr pipe, for a caller that reads or closes it itself.
  UniqueFd take_stderr() { return std::move(stderr_); }

  // Waits until it ends.
  ExitStatus wait();
  // Its status if it has ended, without waiting.
  std::optional<ExitStatus> try_wait();
  void signal(int signo) const;
  // SIGKILL, then wait.
  ExitStatus kill();

 private:
  pid_t pid_ = -1;
  UniqueFd stderr_;
};

}  // namespace faultline
