// Whole-buffer reads and writes on a stream socket, bounded by a deadline.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>

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

// Writes all of `buf` without raising SIGPIPE; errors as for read_full.
Status write_full(int fd, std::span<const std::byte> buf, Deadline deadline);

}  // namespace faultline::net
