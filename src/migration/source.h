// The source of a postcopy migration, in the order of its life: boot the
// workload guest, run it until it pauses, capture it and serve its memory
// (push + demand), wait until the destination holds every page.
#pragma once

#include <signal.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "faultline/page_server.h"
#include "faultline/status.h"
#include "migration/source_options.h"
#include "vm/guest_ram.h"
#include "vm/machine.h"

namespace faultline::migration {

// Once a second while a destination has been connected.
struct MigrationProgress {
  PageServerStats stats;
  uint64_t total_pages = 0;
  double mib_per_s = 0;  // pushed + asked for, since the last report
};

struct MigrationOutcome {
  enum class Ending { kCompleted, kSignalled, kNeverConnected, kDestinationGone };
  Ending ending = Ending::kCompleted;
  bool completed() const { return ending == Ending::kCompleted; }
  PageServerStats stats;
  double ms_after_pause = 0;  // pause -> complete (or -> giving up)
};

class MigrationSource {
 public:
  // Checks the options, maps guest RAM and boots the workload. SIGUSR1 pauses
  // the guest for migration at once from here on.
  static Result<std::unique_ptr<MigrationSource>> boot(MigrationSourceOptions options);
  ~MigrationSource();

  vm::Machine& machine() { return *machine_; }
  const MigrationSourceOptions& options() const { return options_; }

  // Runs the guest until it pauses (hooks decide where); refused if it finishes.
  Status run_until_paused(const vm::RunHooks& hooks);
  // Captures the paused guest's state (registers, devices, pages to prewarm).
  Status capture();
  // Serves its memory and state to destinations.
  Status serve();
  std::string address() const { return server_->address(); }
  vm::Clock::time_point paused_at() const { return paused_; }
  double serving_after_pause_ms() const { return serving_ms_; }

  // Until the destination holds every page, a signal in `stop` arrives, or
  // nobody is connected for options().wait. Stops the server.
  MigrationOutcome wait(const sigset_t& stop,
                        const std::function<void(const MigrationProgress&)>& on_progress);

 private:
  explicit MigrationSource(MigrationSourceOptions options) : options_(std::move(options)) {}

  MigrationSourceOptions options_;
  std::unique_ptr<vm::GuestRam> ram_;
  std::unique_ptr<vm::Machine> machine_;
  std::unique_ptr<PageServer> server_;
  std::vector<std::byte> state_;  // encoded by capture()
  vm::Clock::time_point paused_;
  double serving_ms_ = 0;
  std::mutex mu_;  // guards completed_at_, set by the server's threads
  std::optional<vm::Clock::time_point> completed_at_;
};

}  // namespace faultline::migration
