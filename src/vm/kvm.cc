#include "vm/kvm.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ioctl.h>

#include <cerrno>

namespace faultline::vm {

Result<int> kvm_ioctl(int fd, unsigned long request, void* arg, const char* what) {
  int rc = 0;
  do {
    rc = ::ioctl(fd, request, arg);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return io_error(what, errno);
  return rc;
}

Result<std::unique_ptr<Kvm>> Kvm::open() {
  std::unique_ptr<Kvm> kvm(new Kvm());
  kvm->system_.reset(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm->system_) return io_error("open /dev/kvm", errno);
  const int sys = kvm->system_.get();
  const int version = ::ioctl(sys, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return Status(ErrorCode::kUnsupported,
                  fmt::format("/dev/kvm speaks API version {}, not {}", version, KVM_API_VERSION));
  }
  auto check = [sys](int cap) { return ::ioctl(sys, KVM_CHECK_EXTENSION, cap); };
  if (check(KVM_CAP_USER_MEMORY) <= 0) {
    return Status(ErrorCode::kUnsupported, "KVM lacks KVM_CAP_USER_MEMORY");
  }
  kvm->caps_.xsave = check(KVM_CAP_XSAVE) > 0;
  kvm->caps_.xsave2_size = std::max(0, check(KVM_CAP_XSAVE2));
  kvm->caps_.xcrs = check(KVM_CAP_XCRS) > 0;
  kvm->caps_.vcpu_events = check(KVM_CAP_VCPU_EVENTS) > 0;
  kvm->caps_.debugregs = check(KVM_CAP_DEBUGREGS) > 0;
  kvm->caps_.immediate_exit = check(KVM_CAP_IMMEDIATE_EXIT) > 0;
  kvm->vcpu_mmap_size_ = ::ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (kvm->vcpu_mmap_size_ <= 0) return io_error("KVM_GET_VCPU_MMAP_SIZE", errno);

  int vm = -1;
  do {
    vm = ::ioctl(sys, KVM_CREATE_VM, 0);
  } while (vm < 0 && errno == EINTR);
  if (vm < 0) return io_error("KVM_CREATE_VM", errno);
  kvm->vm_.reset(vm);
  return kvm;
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    std::vector<std::byte> buf(sizeof(kvm_cpuid2) + n * sizeof(kvm_cpuid_entry2));
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
    cpuid->nent = n;
    if (::ioctl(system_.get(), KVM_GET_SUPPORTED_CPUID, cpuid) == 0) {
      return std::vector<kvm_cpuid_entry2>(cpuid->entries, cpuid->entries + cpuid->nent);
    }
    if (errno != E2BIG) return io_error("KVM_GET_SUPPORTED_CPUID", errno);
  }
  return Status(ErrorCode::kUnsupported, "KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

Result<std::vector<uint32_t>> Kvm::msr_index_list() const {
  kvm_msr_list probe{};
  if (::ioctl(system_.get(), KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
    return io_error("KVM_GET_MSR_INDEX_LIST", errno);
  }
  std::vector<std::byte> buf(sizeof(kvm_msr_list) + probe.nmsrs * sizeof(uint32_t));
  auto* list = reinterpret_cast<kvm_msr_list*>(buf.data());
  list->nmsrs = probe.nmsrs;
  if (::ioctl(system_.get(), KVM_GET_MSR_INDEX_LIST, list) < 0) {
    return io_error("KVM_GET_MSR_INDEX_LIST", errno);
  }
  return std::vector<uint32_t>(list->indices, list->indices + list->nmsrs);
}

Status Kvm::set_memory_slot(uint32_t slot, Gpa gpa, void* host, uint64_t size) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host);
  auto rc = kvm_ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");
  return rc.is_ok() ? Status::ok() : rc.status();
}

}  // namespace faultline::vm
