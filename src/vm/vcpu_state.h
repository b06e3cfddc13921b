// Everything needed to resume a vCPU exactly where it stopped, as plain data:
// each member is one KVM register group, saved and restored by its own ioctl
// and stored as its own section of the state file (state_file.h).
//
// For a Linux guest the next groups are the local APIC (KVM_GET_LAPIC), the
// multiprocessing state (KVM_GET_MP_STATE) and, VM-wide, the clock, the
// interrupt controllers and the PIT: each a new member here (or in VmState)
// and a new section tag, with no change to the groups already there.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "faultline/status.h"
#include "vm/vcpu.h"

namespace faultline::vm {

struct VcpuState {
  uint32_t index = 0;
  std::vector<kvm_cpuid_entry2> cpuid;    // what the guest was shown (empty: KVM's default)
  kvm_regs regs{};                        // general registers, RIP, RFLAGS
  kvm_sregs sregs{};                      // segments, descriptor tables, CR0-CR8, EFER, APIC base
  std::vector<std::byte> xsave;           // FPU/SSE/AVX state (KVM_GET_XSAVE[2]); or ...
  std::optional<kvm_fpu> fpu;             // ... the legacy FPU state where XSAVE is missing
  std::optional<kvm_xcrs> xcrs;           // XCR0
  std::vector<kvm_msr_entry> msrs;        // the MSRs of kSavedMsrs that this KVM has
  std::optional<kvm_vcpu_events> events;  // pending exceptions, NMI, interrupt shadow
  std::optional<kvm_debugregs> debugregs;
};

// MSRs saved when KVM lists them: system-call entry points, GS swap, TSC, PAT,
// and KVM's paravirtual clock and features a Linux guest programs.
extern const uint32_t kSavedMsrs[];
extern const size_t kSavedMsrCount;

// Reads the vCPU's state. Call after Vcpu::complete_pending_exit().
Result<VcpuState> capture_vcpu_state(Vcpu& vcpu);

// Sets CPUID for a fresh vCPU (boot): what the host supports, where KVM says.
Status set_host_cpuid(Vcpu& vcpu);

// Loads `state` into a fresh vCPU, in the order KVM expects (CPUID first,
// events last). Errors name the register group KVM refused.
Status restore_vcpu_state(Vcpu& vcpu, const VcpuState& state);

}  // namespace faultline::vm
