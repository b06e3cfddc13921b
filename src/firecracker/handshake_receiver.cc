#include "firecracker/handshake_receiver.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "firecracker/handshake.h"

namespace faultline::firecracker {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxFds = 4;
// How long to wait for a descriptor that did not come with complete JSON.
constexpr std::chrono::milliseconds kLateFdWait{300};

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), INT_MAX));
}

}  // namespace

Status receive_handshake(int connection, int stop_fd, std::chrono::milliseconds timeout,
                         ReceivedHandshake& got, size_t max_bytes) {
  const auto deadline = Clock::now() + timeout;
  std::optional<Clock::time_point> json_complete_at;
  std::vector<char> chunk(std::min<size_t>(max_bytes, 16 * 1024));
  for (;;) {
    const bool json_done = !got.json.empty() && !is_incomplete_json(got.json);
    if (json_done && got.uffd) return Status::ok();
    if (json_done && !json_complete_at) json_complete_at = Clock::now();
    auto wait_until = deadline;
    if (json_complete_at) wait_until = std::min(deadline, *json_complete_at + kLateFdWait);
    pollfd waits[2] = {{connection, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    int ready = ::poll(waits, stop_fd >= 0 ? 2 : 1, remaining_ms(wait_until));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return io_error("poll on the handshake connection", errno);
    if (ready > 0 && waits[1].revents != 0) {
      return Status(ErrorCode::kShutdown, "the handler stopped before the handshake was complete");
    }
    if (ready == 0) {
      if (json_done) {
        return invalid_argument(fmt::format(
            "the handshake ({} bytes of JSON) carried no userfaultfd descriptor", got.json.size()));
      }
      return Status(
          ErrorCode::kTimeout,
          fmt::format("no complete handshake within {} ms ({} bytes received{})", timeout.count(),
                      got.json.size(), got.uffd ? ", with a descriptor" : ""));
    }
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFds)> control{};
    iovec iov{chunk.data(), chunk.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n = ::recvmsg(connection, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return io_error("receiving the handshake", errno);
    }
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.emplace_back(fd);
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      return invalid_argument("the handshake carried more descriptors than one");
    }
    if (fds.size() + (got.uffd ? 1 : 0) > 1) {
      return invalid_argument(
          fmt::format("the handshake carried {} descriptors; Firecracker sends one",
                      fds.size() + (got.uffd ? 1 : 0)));
    }
    if (!fds.empty()) got.uffd = std::move(fds.front());
    if (n == 0) {
      if (got.json.empty())
        return Status(ErrorCode::kUnavailable, "the peer hung up before sending a handshake");
      if (is_incomplete_json(got.json)) {
        return Status(ErrorCode::kProtocol,
                      fmt::format("the peer hung up after {} bytes of an unfinished handshake",
                                  got.json.size()));
      }
      if (!got.uffd) {
        return invalid_argument(fmt::format(
            "the handshake ({} bytes of JSON) carried no userfaultfd descriptor", got.json.size()));
      }
      return Status::ok();
    }
    got.json.append(chunk.data(), static_cast<size_t>(n));
    if (got.json.size() > max_bytes) {
      return invalid_argument(fmt::format("the handshake is longer than {} bytes", max_bytes));
    }
  }
}

Status check_is_userfaultfd(int fd) {
  std::array<char, 128> target{};
  const std::string link = fmt::format("/proc/self/fd/{}", fd);
  ssize_t n = ::readlink(link.c_str(), target.data(), target.size() - 1);
  if (n < 0) return io_error(fmt::format("inspecting descriptor {}", fd), errno);
  const std::string_view what(target.data(), static_cast<size_t>(n));
  if (what != "anon_inode:[userfaultfd]") {
    return invalid_argument(
        fmt::format("the descriptor sent is {}, not a userfaultfd", std::string(what)));
  }
  return Status::ok();
}

int peer_pid(int connection) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
  return cred.pid;
}

}  // namespace faultline::firecracker
