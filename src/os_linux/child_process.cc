#include "os_linux/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

extern char** environ;

namespace faultline {

bool ExitStatus::exited() const {
  return WIFEXITED(raw);
}
bool ExitStatus::signalled() const {
  return WIFSIGNALED(raw);
}
int ExitStatus::exit_code() const {
  return WEXITSTATUS(raw);
}
int ExitStatus::signal() const {
  return WTERMSIG(raw);
}
int ExitStatus::code() const {
  return exited() ? exit_code() : 128 + signal();
}

Result<ChildProcess> ChildProcess::spawn(const std::vector<std::string>& argv,
                                         const ChildProcessOptions& options) {
  if (argv.empty()) return invalid_argument("no program to start");
  std::vector<std::string> args = argv;
  std::vector<char*> pointers;
  for (auto& a : args) pointers.push_back(a.data());
  pointers.push_back(nullptr);

  ChildProcess child;
  UniqueFd write_end;
  if (options.stderr_pipe) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return io_error("pipe for a child's stderr", errno);
    child.stderr_.reset(fds[0]);
    write_end.reset(fds[1]);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  constexpr int kCreate = O_WRONLY | O_CREAT | O_TRUNC;
  if (!options.stdout_file.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, options.stdout_file.c_str(), kCreate,
                                     0600);
  }
  if (write_end) {
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
  } else if (!options.stderr_file.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, options.stderr_file.c_str(), kCreate,
                                     0600);
  }
  const char* program = options.program.empty() ? pointers[0] : options.program.c_str();
  const int rc =
      options.search_path
          ? ::posix_spawnp(&child.pid_, program, &actions, nullptr, pointers.data(), environ)
          : ::posix_spawn(&child.pid_, program, &actions, nullptr, pointers.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    child.pid_ = -1;
    return io_error("start " + argv[0], rc);
  }
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), stderr_(std::move(other.stderr_)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (running()) kill();
    pid_ = std::exchange(other.pid_, -1);
    stderr_ = std::move(other.stderr_);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (running()) kill();
}

ExitStatus ChildProcess::wait() {
  ExitStatus status;
  if (!running()) return status;
  while (::waitpid(pid_, &status.raw, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return status;
}

std::optional<ExitStatus> ChildProcess::try_wait() {
  ExitStatus status;
  if (!running() || ::waitpid(pid_, &status.raw, WNOHANG) != pid_) return std::nullopt;
  pid_ = -1;
  return status;
}

void ChildProcess::signal(int signo) const {
  if (running()) ::kill(pid_, signo);
}

ExitStatus ChildProcess::kill() {
  signal(SIGKILL);
  return wait();
}

}  // namespace faultline
