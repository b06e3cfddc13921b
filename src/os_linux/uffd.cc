#include "os_linux/uffd.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace faultline::linux_uffd {
namespace {

constexpr int kOpenFlags = O_CLOEXEC | O_NONBLOCK;

Result<UniqueFd> open_raw() {
  // /dev/userfaultfd lets a process with access to the device handle kernel-mode
  // faults (KVM's) without CAP_SYS_PTRACE; the syscall is the older path.
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (dev) {
    int fd = ::ioctl(dev.get(), USERFAULTFD_IOC_NEW, kOpenFlags);
    if (fd >= 0) return UniqueFd(fd);
  }
  const int dev_errno = errno;
  long fd = ::syscall(SYS_userfaultfd, kOpenFlags);
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
  const int sys_errno = errno;
  return Status(ErrorCode::kUnsupported,
                fmt::format("cannot create a userfaultfd: /dev/userfaultfd: {}; "
                            "userfaultfd(2): {} (root, CAP_SYS_PTRACE, access to "
                            "/dev/userfaultfd or vm.unprivileged_userfaultfd=1 is needed)",
                            std::strerror(dev_errno), std::strerror(sys_errno)));
}

Status api(int fd, uint64_t features, uint64_t* offered) {
  uffdio_api request{};
  request.api = UFFD_API;
  request.features = features;
  if (::ioctl(fd, UFFDIO_API, &request) != 0) {
    return io_error(fmt::format("UFFDIO_API with features {:#x}", features), errno);
  }
  if (offered != nullptr) *offered = request.features;
  return Status::ok();
}

InstallOutcome outcome(int rc, int64_t reported, uint64_t len) {
  if (rc == 0) return {len, 0};
  const int error = errno;
  return {reported > 0 ? static_cast<uint64_t>(reported) : 0, error};
}

// An ioctl on a range of the userfaultfd that reports how much it did in
// `Request::*done`.
template <typename Request>
InstallOutcome range_ioctl(int uffd, unsigned long op, uint64_t dst, uint64_t len,
                           __s64 Request::*done) {
  Request request{};
  request.range.start = dst;
  request.range.len = len;
  const int rc = ::ioctl(uffd, op, &request);
  return outcome(rc, request.*done, len);
}

}  // namespace

Result<uint64_t> supported_features() {
  Result<UniqueFd> probe = open_raw();
  if (!probe.is_ok()) return probe.status();
  uint64_t offered = 0;
  Status s = api(probe->get(), 0, &offered);
  if (!s.is_ok()) return s;
  return offered;
}

Result<UniqueFd> open(uint64_t features) {
  Result<UniqueFd> fd = open_raw();
  if (!fd.is_ok()) return fd.status();
  Status s = api(fd->get(), features, nullptr);
  if (!s.is_ok()) return s;
  return std::move(fd).value();
}

Result<uint64_t> register_missing(int uffd, void* addr, uint64_t len) {
  uffdio_register request{};
  request.range.start = reinterpret_cast<uint64_t>(addr);
  request.range.len = len;
  request.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (::ioctl(uffd, UFFDIO_REGISTER, &request) != 0) {
    return io_error(fmt::format("UFFDIO_REGISTER [{}, +{:#x})", addr, len), errno);
  }
  return static_cast<uint64_t>(request.ioctls);
}

InstallOutcome copy(int uffd, uint64_t dst, const void* src, uint64_t len) {
  uffdio_copy request{};
  request.dst = dst;
  request.src = reinterpret_cast<uint64_t>(src);
  request.len = len;
  int rc = ::ioctl(uffd, UFFDIO_COPY, &request);
  return outcome(rc, request.copy, len);
}

InstallOutcome zeropage(int uffd, uint64_t dst, uint64_t len) {
  return range_ioctl<uffdio_zeropage>(uffd, UFFDIO_ZEROPAGE, dst, len, &uffdio_zeropage::zeropage);
}

InstallOutcome poison(int uffd, uint64_t dst, uint64_t len) {
  return range_ioctl<uffdio_poison>(uffd, UFFDIO_POISON, dst, len, &uffdio_poison::updated);
}

bool can_poison(int uffd) {
  if (::ioctl(uffd, UFFDIO_POISON, nullptr) == 0) return true;  // cannot happen; harmless
  // EAGAIN: the address space is changing, checked before the argument is read.
  return errno == EFAULT || errno == EAGAIN;
}

bool api_done(int uffd) {
  return ::ioctl(uffd, UFFDIO_WAKE, nullptr) != 0 && errno == EFAULT;
}

int wake(int uffd, uint64_t start, uint64_t len) {
  uffdio_range range{start, len};
  return ::ioctl(uffd, UFFDIO_WAKE, &range) == 0 ? 0 : errno;
}

}  // namespace faultline::linux_uffd
