// src/os_linux: the Linux fault backend (named so that <linux/...> system headers stay reachable).
// Thin, errno-preserving wrappers around the userfaultfd(2) interface.
#pragma once

#include <linux/userfaultfd.h>

#include <cstdint>

#include "faultline/status.h"
#include "faultline/unique_fd.h"

// Linux 6.6 added page poisoning; Debian 12's headers predate it.
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)  // NOLINT(bugprone-reserved-identifier): the kernel's name
struct uffdio_poison {
  struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
  __u64 mode;
  __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

namespace faultline::linux_uffd {

// The features this kernel's userfaultfd offers (probed on a throwaway fd).
Result<uint64_t> supported_features();

// A new userfaultfd (non-blocking, close-on-exec), from /dev/userfaultfd or the
// syscall, with UFFDIO_API done for `features` (which must be supported).
Result<UniqueFd> open(uint64_t features);

// Registers [addr, addr + len) in missing mode; returns the ioctls allowed there.
Result<uint64_t> register_missing(int uffd, void* addr, uint64_t len);

// Outcome of one install ioctl. `done` bytes from the start were installed even
// when `error` is set (partial progress); error 0 means all of it.
struct InstallOutcome {
  uint64_t done = 0;
  int error = 0;
};

InstallOutcome copy(int uffd, uint64_t dst, const void* src, uint64_t len);
InstallOutcome zeropage(int uffd, uint64_t dst, uint64_t len);
InstallOutcome poison(int uffd, uint64_t dst, uint64_t len);
int wake(int uffd, uint64_t start, uint64_t len);  // 0 or errno

// Whether UFFDIO_POISON works on `uffd`, whoever did its UFFDIO_API and with
// whatever features (the kernel does not tie the ioctl to a feature bit).
// Asked of the fd itself, without side effects: a kernel that knows the ioctl
// fails a null argument with EFAULT, one that does not with EINVAL or ENOTTY.
bool can_poison(int uffd);

// Whether anyone has done UFFDIO_API on `uffd`. Before that every other ioctl
// fails with EINVAL (so no memory can be registered with it) and poll reports
// POLLERR. Asked the same way: a null UFFDIO_WAKE fails with EFAULT only after.
bool api_done(int uffd);

}  // namespace faultline::linux_uffd
