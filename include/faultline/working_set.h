// Working sets (after REAP and FaaSnap): the pages a guest touched first after
// a restore, in the order it touched them, recorded during one restore and
// replayed at the next, so a VM restored again does not fault its way through
// the same pages twice.
//
// A working set is bound to the image it was recorded on (its size and a
// fingerprint of its contents): one recorded on another image, or a damaged
// file, is refused with a message naming what is wrong, and the restore goes
// on without it. Replay only changes the order in which the image's own bytes
// arrive, never which bytes: a stale working set costs time, not correctness.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "faultline/page_source.h"
#include "faultline/pager.h"
#include "faultline/status.h"

namespace faultline {

// Which image a working set belongs to.
struct ImageIdentity {
  uint64_t size = 0;         // bytes of guest memory the image holds
  uint64_t fingerprint = 0;  // a hash of the size and of pages sampled across the image
  bool operator==(const ImageIdentity&) const = default;
};

// Reads 16 pages spread evenly over [start, start + size) of `source` (the
// first and last included; every page of a smaller image) and hashes them
// with the size (XXH3). Equal images give equal identities; another image of
// the same size differs unless every sampled page is the same, and one that
// differs only elsewhere is taken for the same: harmless, since replay only
// changes when the image's own bytes arrive.
Result<ImageIdentity> identify_image(PageSource& source, Gpa start, uint64_t size);

// The first touch of one page after the restore resumed the guest.
struct WorkingSetTouch {
  Gpa gpa = 0;                        // the page's first byte, aligned to page_size
  uint64_t page_size = kMinPageSize;  // 4 KiB, or 2 MiB for huge-page sessions
  bool write = false;                 // the first touch wrote
  uint64_t since_resume_us = 0;       // microseconds from resume to the touch
  uint32_t recordings_seen = 1;       // merged sets: in how many recordings it was touched
};

class WorkingSet {
 public:
  WorkingSet() = default;
  WorkingSet(ImageIdentity image, std::vector<WorkingSetTouch> touches, uint32_t recordings = 1);

  // Reads a working-set file (docs/working-set-format.md) without judging
  // whether it fits an image. A damaged file (bad magic, another version,
  // bad checksum, truncated, trailing bytes, counts its bytes cannot hold,
  // overlapping or unaligned pages) is kInvalidArgument with a message
  // naming the file and what is wrong; one that cannot be read is kIo.
  static Result<WorkingSet> load(const std::string& path);
  // load(), then refuses (kInvalidArgument) a file recorded on another image,
  // saying which of size and fingerprint differ, or one naming a page outside
  // `regions`, naming the first such page.
  static Result<WorkingSet> load_for(const std::string& path, const ImageIdentity& image,
                                     std::span<const GuestRange> regions);
  // Writes atomically: a temporary file beside `path`, fsync, rename, fsync
  // of the directory. A reader sees the old file or the whole new one; of
  // two writers at once, the last rename wins. Errors name the file.
  Status save(const std::string& path) const;

  // Several recordings of one image into one: pages seen in most recordings
  // first, ties by their earliest mean first-touch time. Refuses sets of
  // different images.
  static Result<WorkingSet> merge(std::span<const WorkingSet> sets);

  const ImageIdentity& image() const { return image_; }
  // In replay order (the order of first touch, for a single recording).
  std::span<const WorkingSetTouch> touches() const { return touches_; }
  uint32_t recordings() const { return recordings_; }
  // Bytes of guest memory the touches cover.
  uint64_t bytes() const;

 private:
  ImageIdentity image_;
  std::vector<WorkingSetTouch> touches_;
  uint32_t recordings_ = 1;
};

// The working-set files of a front end (`faultline handle`, `vm restore`).
struct WorkingSetFiles {
  // Replayed at every restore it fits; one that does not (another image, a
  // damaged file, a missing one) is logged at warn and the restore goes on
  // without it.
  std::string replay;
  // Every restore records into it: written when the restore ends or
  // `record_for` after it began, whichever comes first (0: at the end).
  // Several restores at once each replace the whole file; the last wins.
  std::string record;
  std::chrono::milliseconds record_for{0};
};

// Collects first touches while a restore runs. The fault backend calls
// note_first_touch from its threads; thread-safe.
class WorkingSetRecorder {
 public:
  explicit WorkingSetRecorder(ImageIdentity image) : image_(image) {}

  // The guest resumed: times are counted from here. Called by the fault
  // server's start(); a touch before it counts as time 0.
  void start_clock();
  void note_first_touch(Gpa gpa, uint64_t page_size, bool write);
  // What has been recorded so far, in order of first touch (a page noted
  // twice, e.g. after a balloon removal, keeps its first touch).
  WorkingSet snapshot() const;
  size_t touches() const;

 private:
  ImageIdentity image_;
  mutable std::mutex mu_;
  std::vector<WorkingSetTouch> touches_;
  bool clock_started_ = false;
  std::chrono::steady_clock::time_point resumed_at_;
};

}  // namespace faultline
