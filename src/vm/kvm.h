// /dev/kvm and one VM: the system and VM file descriptors, what the kernel
// supports, and guest memory slots.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "faultline/page_source.h"
#include "faultline/status.h"
#include "faultline/unique_fd.h"

namespace faultline::vm {

// What this KVM can save and restore besides the general registers.
struct KvmCaps {
  bool xsave = false;
  int xsave2_size = 0;  // KVM_CAP_XSAVE2: bytes of the XSAVE buffer (0: 4 KiB)
  bool xcrs = false;
  bool vcpu_events = false;
  bool debugregs = false;
  bool immediate_exit = false;
};

class Kvm {
 public:
  // Opens /dev/kvm, checks the API version and creates an empty VM.
  static Result<std::unique_ptr<Kvm>> open();

  int system_fd() const { return system_.get(); }
  int vm_fd() const { return vm_.get(); }
  const KvmCaps& caps() const { return caps_; }
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }

  // The CPUID the host offers a guest (KVM_GET_SUPPORTED_CPUID).
  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  // The MSRs KVM can save and restore (KVM_GET_MSR_INDEX_LIST).
  Result<std::vector<uint32_t>> msr_index_list() const;

  // Guest-physical [gpa, gpa + size) is host memory at `host`.
  Status set_memory_slot(uint32_t slot, Gpa gpa, void* host, uint64_t size);

 private:
  Kvm() = default;
  UniqueFd system_;
  UniqueFd vm_;
  KvmCaps caps_;
  int vcpu_mmap_size_ = 0;
};

// ioctl with EINTR retried; the errno as a Status naming `what` on failure.
Result<int> kvm_ioctl(int fd, unsigned long request, void* arg, const char* what);

}  // namespace faultline::vm
