// One virtual CPU: its file descriptor, its shared kvm_run area, and entering
// the guest until the next exit the VMM must handle.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "faultline/status.h"
#include "faultline/unique_fd.h"
#include "vm/kvm.h"

namespace faultline::vm {

struct VcpuExit {
  enum class Kind {
    kIo,           // `in` or `out`: port, direction, size and (for `out`) value
    kHalt,         // `hlt` with no interrupt controller to wake it
    kInterrupted,  // a signal, or immediate_exit: the VMM asked to look
    kShutdown,     // triple fault: the guest is dead
    kOther,        // anything else; `reason` holds KVM's exit reason
  };
  Kind kind = Kind::kOther;
  uint16_t port = 0;
  bool out = false;
  uint8_t size = 0;
  uint32_t value = 0;
  uint32_t reason = 0;

  std::string describe() const;
};

class Vcpu {
 public:
  static Result<std::unique_ptr<Vcpu>> create(const Kvm& kvm, uint32_t index);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  int fd() const { return fd_.get(); }
  uint32_t index() const { return index_; }
  const Kvm& kvm() const { return kvm_; }
  // The CPUID last set with KVM_SET_CPUID2 (empty: KVM's default).
  const std::vector<kvm_cpuid_entry2>& cpuid() const { return cpuid_; }
  void remember_cpuid(std::vector<kvm_cpuid_entry2> entries) { cpuid_ = std::move(entries); }

  // Enters the guest; returns at the next exit.
  Result<VcpuExit> run();

  // Completes the operation of the last exit (the `out` or `in` it stopped on)
  // without running any further guest instruction, so that the registers read
  // afterwards are exactly where the guest will continue. Call before saving.
  Status complete_pending_exit();

  // For signal handlers: makes the current or next run() return kInterrupted.
  // Async-signal-safe.
  void request_exit_from_signal() { run_->immediate_exit = 1; }

 private:
  Vcpu(const Kvm& kvm, uint32_t index) : kvm_(kvm), index_(index) {}

  const Kvm& kvm_;
  uint32_t index_;
  UniqueFd fd_;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
  std::vector<kvm_cpuid_entry2> cpuid_;
};

}  // namespace faultline::vm
