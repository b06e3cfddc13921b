// Working sets around one restore, the same for `handle` (per Firecracker
// session) and `vm restore`: the image identified from the restore's own
// source, the set to replay loaded (or refused, with the reason logged, and
// the restore going on without it), and the recording written when the
// restore ends or after its time limit.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <thread>

#include "faultline/fault_server.h"
#include "faultline/page_source.h"
#include "faultline/pager.h"
#include "faultline/prefetch.h"
#include "faultline/working_set.h"

namespace faultline {

// Writes a recorder's working set to a file once: at finish(), or when
// `record_for` (if not zero) has passed since construction, whichever is
// first. Logs how many pages it wrote, or why it could not. Destroyed
// without finish() (a restore that failed to start), it writes nothing
// unless its time had already come, so a good file is not replaced by an
// empty one.
class WorkingSetRecording {
 public:
  WorkingSetRecording(std::string path, std::chrono::milliseconds record_for,
                      std::shared_ptr<WorkingSetRecorder> recorder, std::string who);
  ~WorkingSetRecording();
  WorkingSetRecording(const WorkingSetRecording&) = delete;
  WorkingSetRecording& operator=(const WorkingSetRecording&) = delete;

  // The restore ended: writes the file unless it was written already.
  void finish();
  const std::string& path() const { return path_; }
  // Pages recorded so far.
  size_t pages() const { return recorder_->touches(); }

 private:
  void stop_timer();
  void write_once();

  std::string path_;
  std::shared_ptr<WorkingSetRecorder> recorder_;
  std::string who_;
  std::chrono::steady_clock::time_point began_;
  std::mutex mu_;
  std::condition_variable finished_cv_;
  bool finishing_ = false;
  bool written_ = false;
  std::thread timer_;
};

// What prepare_working_sets() set up.
struct PreparedWorkingSets {
  std::string replay_path;                         // the file asked for, if any
  std::shared_ptr<const WorkingSet> replay;        // null: nothing to replay
  std::string replay_refused;                      // why not, when it was asked for
  std::unique_ptr<WorkingSetRecording> recording;  // null: not recording
};

// For stats: {"replay": FILE or null, "replay_pages", "replayed_pages",
// "refused": why (when it was), "record": FILE or null, "recorded_pages"}.
nlohmann::ordered_json working_set_json(const PreparedWorkingSets& sets,
                                        const FaultServerStats& stats);

// For a restore of the image [start, start + size) of `source` into
// `regions`: identifies the image (only when a file is named), loads
// files.replay into prefetch.working_set and starts recording for
// files.record into prefetch.record. Never fails: whatever goes wrong is
// logged at warn, naming `who`, and the restore goes on without it.
PreparedWorkingSets prepare_working_sets(const WorkingSetFiles& files, PageSource& source,
                                         Gpa start, uint64_t size,
                                         std::span<const GuestRange> regions,
                                         PrefetchOptions& prefetch, const std::string& who);

}  // namespace faultline
