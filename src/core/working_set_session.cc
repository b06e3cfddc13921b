#include "core/working_set_session.h"

#include <fmt/format.h>

#include "core/log.h"

namespace faultline {

WorkingSetRecording::WorkingSetRecording(std::string path, std::chrono::milliseconds record_for,
                                         std::shared_ptr<WorkingSetRecorder> recorder,
                                         std::string who)
    : path_(std::move(path)),
      recorder_(std::move(recorder)),
      who_(std::move(who)),
      began_(std::chrono::steady_clock::now()) {
  if (record_for.count() <= 0) return;
  timer_ = std::thread([this, deadline = began_ + record_for] {
    std::unique_lock lock(mu_);
    if (!finished_cv_.wait_until(lock, deadline, [this] { return finishing_; })) {
      lock.unlock();
      write_once();
    }
  });
}

WorkingSetRecording::~WorkingSetRecording() {
  stop_timer();
}

void WorkingSetRecording::finish() {
  stop_timer();
  write_once();
}

void WorkingSetRecording::stop_timer() {
  {
    std::lock_guard lock(mu_);
    finishing_ = true;
  }
  finished_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

void WorkingSetRecording::write_once() {
  {
    std::lock_guard lock(mu_);
    if (written_) return;
    written_ = true;
  }
  const WorkingSet set = recorder_->snapshot();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began_).count();
  if (Status s = set.save(path_); !s.is_ok()) {
    log().warn("{}: the working set recorded in {:.1f} s is lost: {}", who_, seconds,
               s.to_string());
    return;
  }
  log().info("{}: recorded a working set of {} pages ({:.1f} MiB) in {:.1f} s, written to {}", who_,
             set.touches().size(), static_cast<double>(set.bytes()) / (1 << 20), seconds, path_);
}

nlohmann::ordered_json working_set_json(const PreparedWorkingSets& sets,
                                        const FaultServerStats& stats) {
  const auto file_or_null = [](const std::string& path) {
    return path.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(path);
  };
  nlohmann::ordered_json j;
  j["replay"] = file_or_null(sets.replay_path);
  j["replay_pages"] = sets.replay ? sets.replay->touches().size() : 0;
  j["replayed_pages"] = stats.replayed_pages;
  if (!sets.replay_refused.empty()) j["refused"] = sets.replay_refused;
  j["record"] = file_or_null(sets.recording ? sets.recording->path() : "");
  j["recorded_pages"] = sets.recording ? sets.recording->pages() : 0;
  return j;
}

PreparedWorkingSets prepare_working_sets(const WorkingSetFiles& files, PageSource& source,
                                         Gpa start, uint64_t size,
                                         std::span<const GuestRange> regions,
                                         PrefetchOptions& prefetch, const std::string& who) {
  PreparedWorkingSets prepared;
  prepared.replay_path = files.replay;
  if (files.replay.empty() && files.record.empty()) return prepared;
  Result<ImageIdentity> image = identify_image(source, start, size);
  if (!image.is_ok()) {
    log().warn("{}: no working set replayed or recorded: {}", who, image.status().to_string());
    prepared.replay_refused = image.status().message();
    return prepared;
  }
  if (!files.replay.empty()) {
    Result<WorkingSet> set = WorkingSet::load_for(files.replay, *image, regions);
    if (!set.is_ok()) {
      log().warn("{}: restoring without a working set: {}", who, set.status().message());
      prepared.replay_refused = set.status().message();
    } else {
      prepared.replay = std::make_shared<const WorkingSet>(std::move(set).value());
      prefetch.working_set = prepared.replay;
      log().info("{}: replaying working set {}: {} pages ({:.1f} MiB) from {} recording(s){}", who,
                 files.replay, prepared.replay->touches().size(),
                 static_cast<double>(prepared.replay->bytes()) / (1 << 20),
                 prepared.replay->recordings(),
                 files.record.empty() ? "" : "; not while recording (demand only)");
    }
  }
  if (!files.record.empty()) {
    auto recorder = std::make_shared<WorkingSetRecorder>(*image);
    prefetch.record = recorder;
    prepared.recording = std::make_unique<WorkingSetRecording>(files.record, files.record_for,
                                                               std::move(recorder), who);
  }
  return prepared;
}

}  // namespace faultline
