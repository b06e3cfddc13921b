#include "net/socket_io.h"

#include <fmt/format.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace faultline::net {
namespace {

enum class Direction { kRead, kWrite };

std::string_view verb(Direction direction) {
  return direction == Direction::kRead ? "received" : "sent";
}

Status transfer_error(Direction direction, int errno_value, size_t done, size_t total) {
  const ErrorCode code = is_disconnect(errno_value) ? ErrorCode::kUnavailable : ErrorCode::kIo;
  return {code, fmt::format("{}: {} after {} of {} bytes {}",
                            direction == Direction::kRead ? "recv" : "send",
                            std::strerror(errno_value), done, total, verb(direction))};
}

// Waits until `fd` is ready; OK, or kTimeout / an error once the deadline passes.
Status wait_for_transfer(int fd, Direction direction, Deadline deadline, size_t done,
                         size_t total) {
  auto ready = wait_ready(fd, direction == Direction::kRead ? POLLIN : POLLOUT, deadline);
  if (!ready) return ready.status();
  if (*ready) return Status::ok();  // readiness, hang-up or error: the next call tells
  return {ErrorCode::kTimeout,
          fmt::format("timed out after {} of {} bytes {}", done, total, verb(direction))};
}

// Moves `total` bytes with `step(done)` (one non-blocking recv or send of the
// rest), waiting for readiness in between.
template <typename Step>
Status transfer_full(int fd, Direction direction, size_t total, Deadline deadline, Step step) {
  size_t done = 0;
  while (done < total) {
    ssize_t n = step(done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      return {ErrorCode::kUnavailable,
              fmt::format("peer closed the connection after {} of {} bytes {}", done, total,
                          verb(direction))};
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return transfer_error(direction, errno, done, total);
    }
    if (Status status = wait_for_transfer(fd, direction, deadline, done, total); !status)
      return status;
  }
  return Status::ok();
}

}  // namespace

Result<std::string> read_to_end(int fd, size_t limit, Deadline deadline) {
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0) return text;
    if (n > 0) {
      if (text.size() + static_cast<size_t>(n) > limit) {
        return invalid_argument(fmt::format("the peer sent more than {} bytes", limit));
      }
      text.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      const ErrorCode code = is_disconnect(errno) ? ErrorCode::kUnavailable : ErrorCode::kIo;
      return Status{code,
                    fmt::format("recv: {} after {} bytes", std::strerror(errno), text.size())};
    }
    auto ready = wait_ready(fd, POLLIN, deadline);
    if (!ready) return ready.status();
    if (!*ready) {
      return Status{ErrorCode::kTimeout,
                    fmt::format("timed out after {} bytes, before the peer closed", text.size())};
    }
  }
}

Result<bool> wait_ready(int fd, short events, Deadline deadline) {
  pollfd pfd{fd, events, 0};
  for (;;) {
    int timeout_ms = -1;
    if (deadline != kNoDeadline) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, INT32_MAX));
    }
    int ready = ::poll(&pfd, 1, timeout_ms);
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) return io_error("poll", errno);
  }
}

bool is_disconnect(int errno_value) {
  switch (errno_value) {
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
    case ECONNABORTED:
    case ECONNREFUSED:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
      return true;
    default:
      return false;
  }
}

size_t unsent_bytes(int fd) {
  int queued = 0;
  if (::ioctl(fd, SIOCOUTQ, &queued) != 0 || queued < 0) return 0;
  return static_cast<size_t>(queued);
}

Status read_full(int fd, std::span<std::byte> buf, Deadline deadline) {
  return transfer_full(fd, Direction::kRead, buf.size(), deadline, [&](size_t done) {
    return ::recv(fd, buf.data() + done, buf.size() - done, MSG_DONTWAIT);
  });
}

Status write_full(int fd, std::span<const std::byte> buf, Deadline deadline) {
  return transfer_full(fd, Direction::kWrite, buf.size(), deadline, [&](size_t done) {
    return ::send(fd, buf.data() + done, buf.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
  });
}

}  // namespace faultline::net
