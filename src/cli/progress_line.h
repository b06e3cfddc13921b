// A line on the terminal that says how far a long step has come, redrawn from
// a thread of its own a few times a second and erased when the step ends.
// Nothing is drawn unless stderr is a terminal, so logs and pipes stay clean.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace faultline::cli {

class ProgressLine {
 public:
  // `done` is polled for how much of `total` is done (in bytes); a total of 0
  // shows the time the step has taken instead.
  ProgressLine(std::string what, uint64_t total, std::function<uint64_t()> done);
  // Only the elapsed time: for steps that cannot say how far they are.
  explicit ProgressLine(std::string what) : ProgressLine(std::move(what), 0, nullptr) {}
  ~ProgressLine();  // stops drawing and erases the line
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

 private:
  void draw() const;

  std::string what_;
  uint64_t total_;
  std::function<uint64_t()> done_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<bool> stop_{false};
  std::thread drawer_;
};

}  // namespace faultline::cli
