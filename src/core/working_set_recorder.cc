// Collecting first touches while a restore runs.
#include <algorithm>

#include "faultline/working_set.h"

namespace faultline {

void WorkingSetRecorder::start_clock() {
  std::lock_guard lock(mu_);
  if (clock_started_) return;
  clock_started_ = true;
  resumed_at_ = std::chrono::steady_clock::now();
}

void WorkingSetRecorder::note_first_touch(Gpa gpa, uint64_t page_size, bool write) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  const uint64_t us =
      clock_started_ && now > resumed_at_
          ? static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(now - resumed_at_).count())
          : 0;
  touches_.push_back({.gpa = gpa, .page_size = page_size, .write = write, .since_resume_us = us});
}

WorkingSet WorkingSetRecorder::snapshot() const {
  std::vector<WorkingSetTouch> touches;
  {
    std::lock_guard lock(mu_);
    touches = touches_;
  }
  // Keep each page's first touch only (a page removed by the balloon and
  // touched again faults twice).
  std::vector<size_t> order(touches.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return touches[a].gpa < touches[b].gpa; });
  std::vector<bool> keep(touches.size(), true);
  for (size_t k = 1; k < order.size(); ++k) {
    if (touches[order[k]].gpa == touches[order[k - 1]].gpa) keep[order[k]] = false;
  }
  std::vector<WorkingSetTouch> first;
  first.reserve(touches.size());
  for (size_t i = 0; i < touches.size(); ++i) {
    if (keep[i]) first.push_back(touches[i]);
  }
  return WorkingSet(image_, std::move(first));
}

size_t WorkingSetRecorder::touches() const {
  std::lock_guard lock(mu_);
  return touches_.size();
}

WorkingSet::WorkingSet(ImageIdentity image, std::vector<WorkingSetTouch> touches,
                       uint32_t recordings)
    : image_(image), touches_(std::move(touches)), recordings_(recordings) {}

uint64_t WorkingSet::bytes() const {
  uint64_t total = 0;
  for (const WorkingSetTouch& t : touches_) total += t.page_size;
  return total;
}

}  // namespace faultline
