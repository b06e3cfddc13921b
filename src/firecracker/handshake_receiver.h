// Receiving Firecracker's handshake from a connected Unix socket: the JSON
// mapping array with the userfaultfd attached as SCM_RIGHTS.
#pragma once

#include <chrono>
#include <string>

#include "faultline/status.h"
#include "faultline/unique_fd.h"

namespace faultline::firecracker {

struct ReceivedHandshake {
  std::string json;
  UniqueFd uffd;
};

// Reads until the JSON is complete (or cannot become valid) and a descriptor
// has come. A message without the descriptor is retried briefly, as
// Firecracker occasionally sends it that way. Errors name what was missing;
// `got` keeps what came even then, the descriptor too, for the refusal (the
// VM's faults on it must still be answered: refusal.h).
// Gives up with kShutdown as soon as `stop_fd` (if not -1) becomes readable.
Status receive_handshake(int connection, int stop_fd, std::chrono::milliseconds timeout,
                         ReceivedHandshake& got, size_t max_bytes = 64 * 1024);

// kInvalidArgument unless `fd` is a userfaultfd.
Status check_is_userfaultfd(int fd);

// The pid of the process at the other end of a Unix socket, or -1.
int peer_pid(int connection);

}  // namespace faultline::firecracker
