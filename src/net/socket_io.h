// Whole-buffer reads and writes on a stream socket, bounded by a deadline.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string>

#include "faultline/status.h"

namespace faultline::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline constexpr Deadline kNoDeadline = Deadline::max();

inline Deadline deadline_after(std::chrono::milliseconds timeout) {
  return Clock::now() + timeout;
}

// Reads exactly buf.size() bytes. The peer closing first is kUnavailable, with
// how many of how many bytes arrived; the deadline passing is kTimeout. Works on
// blocking and non-blocking sockets alike and retries after EINTR.
Status read_full(int fd, std::span<std::byte> buf, Deadline deadline);

// Reads until the peer closes, at most `limit` bytes (more is kInvalidArgument:
// a peer must not make us buffer without end); errors as for read_full.
Result<std::string> read_to_end(int fd, size_t limit, Deadline deadline);

// Writes all of `buf` without raising SIGPIPE; errors as for read_full.
Status write_full(int fd, std::span<const std::byte> buf, Deadline deadline);

// Waits until `fd` has one of `events` (POLLIN, POLLOUT), a hang-up or an
// error: true; false once the deadline passes. Retries after EINTR.
Result<bool> wait_ready(int fd, short events, Deadline deadline);

// Whether a send or recv errno means the connection is gone (kUnavailable)
// rather than that this host misbehaves (kIo).
bool is_disconnect(int errno_value);

// Bytes written to the socket that the kernel has not sent yet (SIOCOUTQ);
// 0 when it cannot tell.
size_t unsent_bytes(int fd);

}  // namespace faultline::net
