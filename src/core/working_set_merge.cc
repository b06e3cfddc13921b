// Several recordings of one image into one working set.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "core/working_set_format.h"
#include "faultline/working_set.h"

namespace faultline {
namespace {

// One page across every set that touched it.
struct MergedPage {
  WorkingSetTouch touch;
  uint64_t seen = 0;    // recordings that touched it
  double time_sum = 0;  // of first-touch times, one per recording
};

}  // namespace

Result<WorkingSet> WorkingSet::merge(std::span<const WorkingSet> sets) {
  if (sets.empty()) return invalid_argument("no working sets to merge");
  const ImageIdentity image = sets.front().image();
  uint64_t recordings = 0;
  for (size_t i = 0; i < sets.size(); ++i) {
    const ImageIdentity& other = sets[i].image();
    if (other != image) {
      return invalid_argument(fmt::format(
          "working set {} of {} was recorded on another image (size {} bytes, fingerprint "
          "{:#018x}) than the first (size {} bytes, fingerprint {:#018x})",
          i + 1, sets.size(), other.size, other.fingerprint, image.size, image.fingerprint));
    }
    recordings += sets[i].recordings();
  }
  if (recordings > UINT32_MAX) {
    return invalid_argument(
        fmt::format("{} recordings are more than a file can count", recordings));
  }

  // In order of first appearance, so ties keep the order they were recorded in.
  std::vector<MergedPage> pages;
  std::unordered_map<Gpa, size_t> index;
  for (const WorkingSet& set : sets) {
    for (const WorkingSetTouch& t : set.touches()) {
      auto [it, inserted] = index.try_emplace(t.gpa, pages.size());
      if (inserted) pages.push_back({.touch = t});
      MergedPage& p = pages[it->second];
      if (p.touch.page_size != t.page_size) {
        return invalid_argument(fmt::format(
            "the sets disagree on the size of the page at {:#x} ({:#x} and {:#x} bytes)", t.gpa,
            p.touch.page_size, t.page_size));
      }
      p.touch.write = p.touch.write || t.write;
      p.seen += t.recordings_seen;
      p.time_sum += static_cast<double>(t.since_resume_us) * t.recordings_seen;
    }
  }
  for (MergedPage& p : pages) {
    p.touch.recordings_seen = static_cast<uint32_t>(std::min<uint64_t>(p.seen, recordings));
    p.touch.since_resume_us =
        static_cast<uint64_t>(std::llround(p.time_sum / static_cast<double>(p.seen)));
  }
  std::stable_sort(pages.begin(), pages.end(), [](const MergedPage& a, const MergedPage& b) {
    if (a.touch.recordings_seen != b.touch.recordings_seen) {
      return a.touch.recordings_seen > b.touch.recordings_seen;
    }
    return a.touch.since_resume_us < b.touch.since_resume_us;
  });
  std::vector<WorkingSetTouch> touches;
  touches.reserve(pages.size());
  for (const MergedPage& p : pages) touches.push_back(p.touch);
  const auto r = static_cast<uint32_t>(recordings);
  if (Status s = working_set_format::check_touches(touches, r, image.size); !s.is_ok()) {
    return s.with_context("merged working set");
  }
  return WorkingSet(image, std::move(touches), r);
}

}  // namespace faultline
