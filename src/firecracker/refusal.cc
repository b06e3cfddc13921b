#include "firecracker/refusal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "firecracker/handshake_receiver.h"
#include "os_linux/uffd.h"

namespace faultline::firecracker {
namespace {

constexpr size_t kEventsPerRead = 16;

// The page sizes a fault can be in: the base page, then hugetlbfs's 2 MiB and
// 1 GiB (UFFDIO_POISON wants the range aligned to the mapping's page size).
constexpr uint64_t kPageSizes[] = {4096, 2ull << 20, 1ull << 30};

// False once the address space is gone (nothing more can fault).
bool poison_fault(int uffd, uint64_t address) {
  for (uint64_t page_size : kPageSizes) {
    const uint64_t page = address & ~(page_size - 1);
    const linux_uffd::InstallOutcome r = linux_uffd::poison(uffd, page, page_size);
    switch (r.error) {
      case 0:
        return true;
      case EINVAL:
        continue;  // not aligned to this mapping's pages: try the next size
      case EEXIST:
        linux_uffd::wake(uffd, page, page_size);  // there already: let it retry
        return true;
      case EAGAIN:
        return true;  // the address space is changing: the access faults again
      case ESRCH:
        return false;
      default:
        log().warn("cannot poison page {:#x}: {}", page, std::strerror(r.error));
        return true;
    }
  }
  return true;
}

// Reads what the VM sends (nothing, normally); false once it has gone.
bool still_connected(int connection) {
  char discard[256];
  const ssize_t n = ::recv(connection, discard, sizeof discard, MSG_DONTWAIT);
  return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
}

// Answers faults until the VM goes or we stop; returns how many were poisoned.
uint64_t poison_until_gone(int uffd, int connection, int stop_fd) {
  uint64_t poisoned = 0;
  pollfd fds[3] = {{uffd, POLLIN, 0}, {connection, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return poisoned;
    }
    if (fds[2].revents != 0 || (fds[0].revents & (POLLERR | POLLHUP)) != 0) return poisoned;
    if (fds[1].revents != 0 && !still_connected(connection)) return poisoned;
    if ((fds[0].revents & POLLIN) == 0) continue;
    uffd_msg msgs[kEventsPerRead];
    const ssize_t n = ::read(uffd, msgs, sizeof msgs);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return poisoned;
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
      if (msgs[i].event == UFFD_EVENT_FORK) {
        ::close(static_cast<int>(msgs[i].arg.fork.ufd));  // a child's: nobody serves it either
        continue;
      }
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;  // read is all the others need
      if (!poison_fault(uffd, msgs[i].arg.pagefault.address)) return poisoned;
      ++poisoned;
    }
  }
}

// SIGKILL through a pidfd, taken while the peer still holds its end of the
// connection, so that a recycled pid is never signalled.
bool kill_peer(int pid, int connection) {
  if (pid <= 0) return false;
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return false;
  pollfd pfd{connection, POLLRDHUP, 0};
  const bool connected = ::poll(&pfd, 1, 0) == 0;
  const bool killed =
      connected && ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) == 0;
  ::close(pidfd);
  return killed;
}

}  // namespace

RefusalReport refuse_vm(UniqueFd uffd, int connection, int stop_fd, const std::string& name) {
  RefusalReport report;
  if (!uffd || !check_is_userfaultfd(uffd.get()).is_ok()) return report;
  if (!linux_uffd::api_done(uffd.get())) {
    log().info(
        "{}: its userfaultfd was never initialised (no UFFDIO_API), so no fault can wait "
        "on it; closing",
        name);
    return report;
  }
  if (linux_uffd::can_poison(uffd.get())) {
    log().warn(
        "{}: answering every fault of the refused VM with SIGBUS (UFFDIO_POISON) until it "
        "disconnects",
        name);
    const int flags = ::fcntl(uffd.get(), F_GETFL);
    if (flags >= 0) ::fcntl(uffd.get(), F_SETFL, flags | O_NONBLOCK);
    report.outcome = RefusalOutcome::kFaultsPoisoned;
    report.poisoned_faults = poison_until_gone(uffd.get(), connection, stop_fd);
    log().info("{}: refused VM gone after {} faults got SIGBUS", name, report.poisoned_faults);
    return report;
  }
  const int pid = peer_pid(connection);
  if (kill_peer(pid, connection)) {
    log().warn(
        "{}: this kernel cannot poison pages (UFFDIO_POISON, Linux 6.6), so its faults "
        "would wait for ever: killed pid {}",
        name, pid);
    report.outcome = RefusalOutcome::kPeerKilled;
  } else {
    log().error(
        "{}: this kernel cannot poison pages and pid {} could not be killed: its "
        "faults will wait until it exits",
        name, pid);
    report.outcome = RefusalOutcome::kPeerNotKilled;
  }
  return report;
}

}  // namespace faultline::firecracker
