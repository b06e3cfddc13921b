// The VM: KVM, guest RAM in one memory slot, one vCPU, and the loop that runs
// it and answers its exits. Guest RAM is borrowed: whoever made it (plain
// memory for a fresh boot, a pager-served mapping for a restore) keeps it
// alive for longer than the Machine.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "faultline/status.h"
#include "vm/kvm.h"
#include "vm/state_file.h"
#include "vm/vcpu.h"
#include "vm/workload.h"

namespace faultline::vm {

using Clock = std::chrono::steady_clock;

struct RunHooks {
  // At each progress report; return true to pause there (for a snapshot).
  std::function<bool(const Progress&)> on_progress;
};

enum class RunEnd {
  kFinished,  // the guest reported its results and halted
  kPaused,    // on_progress asked, or the pause signal came; the vCPU is stopped cleanly
};

class Machine {
 public:
  // Opens KVM, puts `ram` at guest-physical 0 and creates vCPU 0.
  static Result<std::unique_ptr<Machine>> create(std::span<std::byte> ram);

  // A fresh boot: the workload and its tables in RAM, the vCPU in long mode.
  Status boot_workload(const WorkloadParams& params);
  // A resume: the vCPU state from a snapshot (RAM is the caller's business).
  Status restore(const VmState& state);

  // Runs until the guest finishes or is paused.
  Result<RunEnd> run(const RunHooks& hooks);

  // The VM's state at a pause, with the pages a resumed vCPU touches first.
  Result<VmState> capture();

  std::span<std::byte> ram() const { return ram_; }
  // The parameter page, read from guest memory when first needed (after a
  // restore, that read is a host-side access through the pager).
  const WorkloadInfo& workload();
  // The last progress report seen, and the results once finished.
  const std::optional<Progress>& last_progress() const { return last_progress_; }
  const std::optional<WorkloadResults>& results() const { return results_; }
  // When the vCPU first entered the guest, and first came back with an exit.
  std::optional<Clock::time_point> first_entry() const { return first_entry_; }
  std::optional<Clock::time_point> first_exit() const { return first_exit_; }

  // From now on, `signo` (e.g. SIGUSR1) pauses the running Machine at once.
  static Status pause_on_signal(int signo);

 private:
  Machine(std::unique_ptr<Kvm> kvm, std::span<std::byte> ram) : kvm_(std::move(kvm)), ram_(ram) {}

  std::unique_ptr<Kvm> kvm_;
  std::unique_ptr<Vcpu> vcpu_;
  std::span<std::byte> ram_;
  std::optional<WorkloadInfo> workload_;
  std::optional<Progress> last_progress_;
  std::optional<WorkloadResults> results_;
  std::optional<Clock::time_point> first_entry_;
  std::optional<Clock::time_point> first_exit_;
};

}  // namespace faultline::vm
