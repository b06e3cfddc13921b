#include "cli/progress_line.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace faultline::cli {

ProgressLine::ProgressLine(std::string what, uint64_t total, std::function<uint64_t()> done)
    : what_(std::move(what)), total_(total), done_(std::move(done)) {
  if (::isatty(STDERR_FILENO) != 1) return;
  drawer_ = std::thread([this] {
    constexpr auto kRedraw = std::chrono::milliseconds(250);
    while (!stop_.load()) {
      draw();
      // Short sleeps, so that the destructor never waits for a whole redraw period.
      for (auto slept = std::chrono::milliseconds(0); slept < kRedraw && !stop_.load();
           slept += std::chrono::milliseconds(10)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  });
}

ProgressLine::~ProgressLine() {
  if (!drawer_.joinable()) return;
  stop_.store(true);
  drawer_.join();
  fmt::print(stderr, "\r\033[K");
  (void)std::fflush(stderr);
}

void ProgressLine::draw() const {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (total_ == 0 || !done_) {
    fmt::print(stderr, "\r\033[K  {} ... {:.0f} s", what_, seconds);
  } else {
    const uint64_t done = std::min(done_(), total_);
    fmt::print(stderr, "\r\033[K  {} ... {:3.0f}%  ({} of {} MiB, {:.0f} s)", what_,
               100.0 * static_cast<double>(done) / static_cast<double>(total_), done >> 20,
               total_ >> 20, seconds);
  }
  (void)std::fflush(stderr);
}

}  // namespace faultline::cli
