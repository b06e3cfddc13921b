// What a VM whose handshake was refused gets. Its userfaultfd came with the
// refused handshake, and its memory is registered on it: closing our copy
// would leave its first fault waiting for ever (the VMM keeps its own copy).
// So every fault on it is answered with UFFDIO_POISON, which gives the
// faulting access SIGBUS (KVM: the vCPU run fails), until the VM disconnects
// or the handler stops. Where the kernel cannot poison (before Linux 6.6), the
// peer is killed instead, as Firecracker's example handlers do when they fail.
#pragma once

#include <cstdint>
#include <string>

#include "faultline/unique_fd.h"

namespace faultline::firecracker {

enum class RefusalOutcome {
  kNothingToAnswer,  // not a userfaultfd, or one with no UFFDIO_API: nothing can wait on it
  kFaultsPoisoned,   // answered with SIGBUS until the VM disconnected or we stopped
  kPeerKilled,       // no poisoning here: SIGKILL to the peer
  kPeerNotKilled,    // no poisoning, and the peer could not be identified or signalled
};

struct RefusalReport {
  RefusalOutcome outcome = RefusalOutcome::kNothingToAnswer;
  uint64_t poisoned_faults = 0;
};

// Logs which it does, as `name` ("session 3 (pid 42)"), then does it. Blocks
// while poisoning: until `connection` hangs up or `stop_fd` is readable.
RefusalReport refuse_vm(UniqueFd uffd, int connection, int stop_fd, const std::string& name);

}  // namespace faultline::firecracker
