// Children started with their output redirected, waited for, signalled, and
// killed when their owner goes away first.
#include "os_linux/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "support/temp_dir.h"

namespace faultline {
namespace {

using testing::read_text;

TEST(ChildProcess, OutputGoesToFilesAndTheExitCodeComesBack) {
  testing::TempDir dir;
  auto child =
      ChildProcess::spawn({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"},
                          {.stdout_file = dir.file("out"), .stderr_file = dir.file("err")});
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  const ExitStatus status = child->wait();
  EXPECT_TRUE(status.exited());
  EXPECT_EQ(status.exit_code(), 3);
  EXPECT_EQ(status.code(), 3);
  EXPECT_FALSE(child->running());
  EXPECT_EQ(read_text(dir.file("out")), "out\n");
  EXPECT_EQ(read_text(dir.file("err")), "err\n");
}

TEST(ChildProcess, StderrCanBeReadFromAPipe) {
  auto child = ChildProcess::spawn({"sh", "-c", "echo piped >&2"},
                                   {.stderr_pipe = true, .search_path = true});
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  std::string text;
  char chunk[64];
  ssize_t n;
  while ((n = ::read(child->stderr_fd(), chunk, sizeof chunk)) > 0) {
    text.append(chunk, static_cast<size_t>(n));
  }
  EXPECT_EQ(text, "piped\n");
  EXPECT_EQ(child->wait().code(), 0);
}

TEST(ChildProcess, ASignalledChildSaysWhichSignal) {
  auto child = ChildProcess::spawn({"/bin/sleep", "30"});
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  EXPECT_FALSE(child->try_wait().has_value());
  child->signal(SIGTERM);
  const ExitStatus status = child->wait();
  EXPECT_TRUE(status.signalled());
  EXPECT_EQ(status.signal(), SIGTERM);
  EXPECT_EQ(status.code(), 128 + SIGTERM);
}

TEST(ChildProcess, TheOwnerGoingAwayKillsAndReapsIt) {
  pid_t pid = -1;
  {
    auto child = ChildProcess::spawn({"/bin/sleep", "30"});
    ASSERT_TRUE(child.is_ok()) << child.status().to_string();
    pid = child->pid();
    ChildProcess moved = std::move(*child);
    EXPECT_FALSE(child->running());
    EXPECT_TRUE(moved.running());
  }
  // Reaped: not even a zombie of ours is left.
  EXPECT_EQ(::kill(pid, 0), -1);
}

TEST(ChildProcess, AProgramThatIsNotThereIsAnError) {
  auto child = ChildProcess::spawn({"/nonexistent/program"});
  EXPECT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().code(), ErrorCode::kIo);
  EXPECT_EQ(ChildProcess::spawn({}).status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace faultline
