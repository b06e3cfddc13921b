#include "vm/vcpu.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace faultline::vm {

std::string VcpuExit::describe() const {
  switch (kind) {
    case Kind::kIo:
      return fmt::format("{} port {:#x} ({} bytes, value {:#x})", out ? "out" : "in", port, size,
                         value);
    case Kind::kHalt:
      return "hlt";
    case Kind::kInterrupted:
      return "interrupted";
    case Kind::kShutdown:
      return "shutdown (triple fault)";
    case Kind::kOther:
      break;
  }
  return fmt::format("KVM exit reason {}", reason);
}

Result<std::unique_ptr<Vcpu>> Vcpu::create(const Kvm& kvm, uint32_t index) {
  std::unique_ptr<Vcpu> vcpu(new Vcpu(kvm, index));
  auto fd = kvm_ioctl(kvm.vm_fd(), KVM_CREATE_VCPU, reinterpret_cast<void*>(uintptr_t{index}),
                      "KVM_CREATE_VCPU");
  if (!fd.is_ok()) return fd.status();
  vcpu->fd_.reset(*fd);
  vcpu->run_size_ = static_cast<size_t>(kvm.vcpu_mmap_size());
  void* run = ::mmap(nullptr, vcpu->run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
  if (run == MAP_FAILED) return io_error("mmap of the vCPU's kvm_run area", errno);
  vcpu->run_ = static_cast<kvm_run*>(run);
  return vcpu;
}

Vcpu::~Vcpu() {
  if (run_ != nullptr) ::munmap(run_, run_size_);
}

Result<VcpuExit> Vcpu::run() {
  VcpuExit exit;
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    if (errno == EINTR || errno == EAGAIN) {
      run_->immediate_exit = 0;
      exit.kind = VcpuExit::Kind::kInterrupted;
      return exit;
    }
    return io_error("KVM_RUN", errno);
  }
  exit.reason = run_->exit_reason;
  switch (run_->exit_reason) {
    case KVM_EXIT_IO: {
      exit.kind = VcpuExit::Kind::kIo;
      exit.port = run_->io.port;
      exit.out = run_->io.direction == KVM_EXIT_IO_OUT;
      exit.size = run_->io.size;
      if (exit.out && run_->io.count == 1 && exit.size <= 4) {
        std::memcpy(&exit.value, reinterpret_cast<const char*>(run_) + run_->io.data_offset,
                    exit.size);
      }
      break;
    }
    case KVM_EXIT_HLT:
      exit.kind = VcpuExit::Kind::kHalt;
      break;
    case KVM_EXIT_SHUTDOWN:
      exit.kind = VcpuExit::Kind::kShutdown;
      break;
    case KVM_EXIT_INTR:
      exit.kind = VcpuExit::Kind::kInterrupted;
      break;
    default:
      exit.kind = VcpuExit::Kind::kOther;
      break;
  }
  return exit;
}

Status Vcpu::complete_pending_exit() {
  run_->immediate_exit = 1;
  const int rc = ::ioctl(fd_.get(), KVM_RUN, 0);
  const int err = errno;
  run_->immediate_exit = 0;
  if (rc == 0 || err == EINTR) return Status::ok();
  return io_error("KVM_RUN (completing the pending exit)", err);
}

}  // namespace faultline::vm
