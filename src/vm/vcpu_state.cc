#include "vm/vcpu_state.h"

#include <fmt/format.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>

namespace faultline::vm {

const uint32_t kSavedMsrs[] = {
    0x00000010,  // IA32_TSC
    0x0000003b,  // IA32_TSC_ADJUST
    0x00000174,  // IA32_SYSENTER_CS
    0x00000175,  // IA32_SYSENTER_ESP
    0x00000176,  // IA32_SYSENTER_EIP
    0x000001a0,  // IA32_MISC_ENABLE
    0x00000277,  // IA32_PAT
    0xc0000081,  // STAR
    0xc0000082,  // LSTAR
    0xc0000083,  // CSTAR
    0xc0000084,  // SYSCALL_MASK
    0xc0000102,  // KERNEL_GS_BASE
    0xc0000103,  // TSC_AUX
    0x4b564d00,  // KVM wall clock
    0x4b564d01,  // KVM system time
    0x4b564d02,  // KVM async page fault
    0x4b564d03,  // KVM steal time
    0x4b564d04,  // KVM PV EOI
};
const size_t kSavedMsrCount = std::size(kSavedMsrs);

namespace {

Status ioctl_status(const Vcpu& vcpu, unsigned long request, void* arg, const char* what) {
  auto rc = kvm_ioctl(vcpu.fd(), request, arg, what);
  return rc.is_ok() ? Status::ok() : rc.status();
}

// A kvm_msrs with room for `count` entries.
struct MsrBuffer {
  explicit MsrBuffer(size_t count) : bytes(sizeof(kvm_msrs) + count * sizeof(kvm_msr_entry)) {
    msrs()->nmsrs = static_cast<uint32_t>(count);
  }
  kvm_msrs* msrs() { return reinterpret_cast<kvm_msrs*>(bytes.data()); }
  std::vector<std::byte> bytes;
};

// The saved MSRs this KVM lets us read, one at a time so that one it cannot
// read does not hide the rest. When KVM lists its MSRs, only listed ones.
Result<std::vector<kvm_msr_entry>> read_msrs(Vcpu& vcpu) {
  auto listed = vcpu.kvm().msr_index_list();
  std::vector<kvm_msr_entry> out;
  for (size_t i = 0; i < kSavedMsrCount; ++i) {
    if (listed.is_ok() &&
        std::find(listed->begin(), listed->end(), kSavedMsrs[i]) == listed->end()) {
      continue;
    }
    MsrBuffer one(1);
    one.msrs()->entries[0].index = kSavedMsrs[i];
    if (::ioctl(vcpu.fd(), KVM_GET_MSRS, one.msrs()) == 1) out.push_back(one.msrs()->entries[0]);
  }
  return out;
}

Status write_msrs(Vcpu& vcpu, const std::vector<kvm_msr_entry>& entries) {
  if (entries.empty()) return Status::ok();
  MsrBuffer buf(entries.size());
  std::copy(entries.begin(), entries.end(), buf.msrs()->entries);
  const int set = ::ioctl(vcpu.fd(), KVM_SET_MSRS, buf.msrs());
  if (set < 0) return io_error("KVM_SET_MSRS", errno);
  if (static_cast<size_t>(set) < entries.size()) {
    return Status(ErrorCode::kUnsupported,
                  fmt::format("KVM_SET_MSRS: KVM refused MSR {:#x} (value {:#x})",
                              entries[static_cast<size_t>(set)].index,
                              entries[static_cast<size_t>(set)].data));
  }
  return Status::ok();
}

Status set_cpuid(Vcpu& vcpu, const std::vector<kvm_cpuid_entry2>& entries) {
  if (entries.empty()) return Status::ok();  // KVM's default
  std::vector<std::byte> buf(sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2));
  auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
  cpuid->nent = static_cast<uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), cpuid->entries);
  Status st = ioctl_status(vcpu, KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2");
  if (st.is_ok()) vcpu.remember_cpuid(entries);
  return st;
}

size_t xsave_size(const Vcpu& vcpu) {
  return std::max<size_t>(sizeof(kvm_xsave), static_cast<size_t>(vcpu.kvm().caps().xsave2_size));
}

}  // namespace

Status set_host_cpuid(Vcpu& vcpu) {
  auto supported = vcpu.kvm().supported_cpuid();
  if (!supported.is_ok()) {
    // Some KVMs (the software-nested one of shared/notes/kvm-here.md) answer
    // EINVAL; our guest then runs on KVM's default CPUID.
    return Status::ok();
  }
  return set_cpuid(vcpu, *supported);
}

Result<VcpuState> capture_vcpu_state(Vcpu& vcpu) {
  const KvmCaps& caps = vcpu.kvm().caps();
  VcpuState s;
  s.index = vcpu.index();

  s.cpuid = vcpu.cpuid();

  Status st = ioctl_status(vcpu, KVM_GET_REGS, &s.regs, "KVM_GET_REGS");
  if (st.is_ok()) st = ioctl_status(vcpu, KVM_GET_SREGS, &s.sregs, "KVM_GET_SREGS");
  if (!st.is_ok()) return st;

  // XSAVE where KVM has it (KVM_GET_XSAVE2 first: it covers AMX-sized areas),
  // else the legacy FPU state.
  if (caps.xsave) {
    s.xsave.resize(xsave_size(vcpu));
    if (::ioctl(vcpu.fd(), KVM_GET_XSAVE2, s.xsave.data()) != 0) {
      s.xsave.resize(sizeof(kvm_xsave));
      if (::ioctl(vcpu.fd(), KVM_GET_XSAVE, s.xsave.data()) != 0) s.xsave.clear();
    }
  }
  if (s.xsave.empty()) {
    s.fpu.emplace();
    st = ioctl_status(vcpu, KVM_GET_FPU, &*s.fpu, "KVM_GET_FPU");
  }
  if (st.is_ok() && caps.xcrs) {
    s.xcrs.emplace();
    st = ioctl_status(vcpu, KVM_GET_XCRS, &*s.xcrs, "KVM_GET_XCRS");
  }
  if (st.is_ok() && caps.vcpu_events) {
    s.events.emplace();
    st = ioctl_status(vcpu, KVM_GET_VCPU_EVENTS, &*s.events, "KVM_GET_VCPU_EVENTS");
  }
  if (st.is_ok() && caps.debugregs) {
    s.debugregs.emplace();
    st = ioctl_status(vcpu, KVM_GET_DEBUGREGS, &*s.debugregs, "KVM_GET_DEBUGREGS");
  }
  if (!st.is_ok()) return st;

  auto msrs = read_msrs(vcpu);
  if (!msrs.is_ok()) return msrs.status();
  s.msrs = std::move(msrs).value();
  return s;
}

Status restore_vcpu_state(Vcpu& vcpu, const VcpuState& s) {
  Status st = set_cpuid(vcpu, s.cpuid);
  if (st.is_ok())
    st = ioctl_status(vcpu, KVM_SET_SREGS, const_cast<kvm_sregs*>(&s.sregs), "KVM_SET_SREGS");
  if (st.is_ok())
    st = ioctl_status(vcpu, KVM_SET_REGS, const_cast<kvm_regs*>(&s.regs), "KVM_SET_REGS");
  if (st.is_ok() && !s.xsave.empty()) {
    if (!vcpu.kvm().caps().xsave) {
      return Status(ErrorCode::kUnsupported, "the state holds XSAVE state; this KVM has no XSAVE");
    }
    std::vector<std::byte> buf(std::max(s.xsave.size(), xsave_size(vcpu)));
    std::copy(s.xsave.begin(), s.xsave.end(), buf.begin());
    st = ioctl_status(vcpu, KVM_SET_XSAVE, buf.data(), "KVM_SET_XSAVE");
  }
  if (st.is_ok() && s.fpu) {
    st = ioctl_status(vcpu, KVM_SET_FPU, const_cast<kvm_fpu*>(&*s.fpu), "KVM_SET_FPU");
  }
  if (st.is_ok() && s.xcrs) {
    st = ioctl_status(vcpu, KVM_SET_XCRS, const_cast<kvm_xcrs*>(&*s.xcrs), "KVM_SET_XCRS");
  }
  if (st.is_ok() && s.debugregs) {
    st = ioctl_status(vcpu, KVM_SET_DEBUGREGS, const_cast<kvm_debugregs*>(&*s.debugregs),
                      "KVM_SET_DEBUGREGS");
  }
  if (st.is_ok()) st = write_msrs(vcpu, s.msrs);
  if (st.is_ok() && s.events) {
    st = ioctl_status(vcpu, KVM_SET_VCPU_EVENTS, const_cast<kvm_vcpu_events*>(&*s.events),
                      "KVM_SET_VCPU_EVENTS");
  }
  return st.is_ok() ? st : st.with_context(fmt::format("restoring vCPU {}", s.index));
}

}  // namespace faultline::vm
