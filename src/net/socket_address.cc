#include "net/socket_address.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

namespace faultline::net {
namespace {

constexpr std::string_view kUnixScheme = "unix:";
constexpr std::string_view kTcpScheme = "tcp:";
constexpr size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;  // room for the NUL

Status bad_address(std::string_view text, std::string_view problem) {
  return invalid_argument(fmt::format("socket address \"{}\": {}", text, problem));
}

Result<uint16_t> parse_port(std::string_view text, std::string_view port) {
  if (port.empty()) return bad_address(text, "the port is missing (expected tcp:HOST:PORT)");
  uint32_t value = 0;
  auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (error == std::errc::result_out_of_range || (error == std::errc() && value > 65535)) {
    return bad_address(text, fmt::format("port {} is larger than 65535", port));
  }
  if (error != std::errc() || end != port.data() + port.size()) {
    return bad_address(text, fmt::format("port \"{}\" is not a decimal number", port));
  }
  return static_cast<uint16_t>(value);
}

Result<SocketAddress> parse_tcp(std::string_view text, std::string_view rest) {
  std::string_view host;
  std::string_view after_host;
  if (rest.starts_with('[')) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad_address(text, "missing ']' after IPv6 host");
    host = rest.substr(1, close - 1);
    after_host = rest.substr(close + 1);
    if (!after_host.starts_with(':')) {
      return bad_address(text, "the port is missing (expected tcp:[IPV6]:PORT)");
    }
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return bad_address(text, "the port is missing (expected tcp:HOST:PORT)");
    }
    host = rest.substr(0, colon);
    after_host = rest.substr(colon);
    if (host.find(':') != std::string_view::npos) {
      return bad_address(text, "an IPv6 host must be written in brackets: tcp:[::1]:PORT");
    }
  }
  if (host.empty()) return bad_address(text, "the host is empty (expected tcp:HOST:PORT)");
  // The resolver would stop at a NUL and look up another host than the one written.
  if (host.find('\0') != std::string_view::npos) {
    return bad_address(text, "the host contains a NUL byte");
  }
  // No name or address holds them, and to_string() could not be parsed back.
  if (host.find_first_of("[]") != std::string_view::npos) {
    return bad_address(text, "the host contains '[' or ']'");
  }
  auto port = parse_port(text, after_host.substr(1));
  if (!port) return port.status();
  SocketAddress address;
  address.kind = SocketAddress::Kind::kTcp;
  address.host = std::string(host);
  address.port = *port;
  return address;
}

sockaddr_un unix_sockaddr(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}

Status connect_failure(const SocketAddress& address, int errno_value) {
  return {ErrorCode::kUnavailable,
          fmt::format("cannot connect to {}: {}", address.to_string(), std::strerror(errno_value))};
}

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Connects a non-blocking socket, waiting at most `timeout` for the handshake.
Status connect_within(int fd, const sockaddr* sa, socklen_t length, const SocketAddress& address,
                      std::chrono::milliseconds timeout) {
  if (::connect(fd, sa, length) == 0) return Status::ok();
  if (errno != EINPROGRESS && errno != EINTR) return connect_failure(address, errno);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd pfd{fd, POLLOUT, 0};
  for (;;) {
    int ready = ::poll(&pfd, 1, remaining_ms(deadline));
    if (ready > 0) break;
    if (ready == 0) {
      return {ErrorCode::kTimeout, fmt::format("cannot connect to {}: no answer within {} ms",
                                               address.to_string(), timeout.count())};
    }
    if (errno != EINTR) return connect_failure(address, errno);
  }
  int error = 0;
  socklen_t error_length = sizeof(error);
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_length) != 0) error = errno;
  return error == 0 ? Status::ok() : connect_failure(address, error);
}

struct AddrInfoDeleter {
  void operator()(addrinfo* list) const { ::freeaddrinfo(list); }
};
using AddrInfoList = std::unique_ptr<addrinfo, AddrInfoDeleter>;

Result<AddrInfoList> resolve(const SocketAddress& address, int flags) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags | AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string port = std::to_string(address.port);
  int error = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &list);
  if (error != 0) {
    return Status(ErrorCode::kUnavailable, fmt::format("cannot resolve host of {}: {}",
                                                       address.to_string(), gai_strerror(error)));
  }
  return AddrInfoList(list);
}

bool is_loopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    return (ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
  }
  return false;
}

Result<UniqueFd> connect_unix(const SocketAddress& address, std::chrono::milliseconds timeout) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return io_error("socket(AF_UNIX)", errno);
  const sockaddr_un sa = unix_sockaddr(address.path);
  Status status = connect_within(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa),
                                 address, timeout);
  if (!status) return status;
  return fd;
}

Result<UniqueFd> connect_tcp(const SocketAddress& address, std::chrono::milliseconds timeout) {
  auto list = resolve(address, 0);
  if (!list) return list.status();
  Status last_error(ErrorCode::kUnavailable,
                    fmt::format("{}: the host resolves to no address", address.to_string()));
  for (const addrinfo* ai = list->get(); ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    if (!fd) {
      last_error = io_error("socket", errno);
      continue;
    }
    last_error = connect_within(fd.get(), ai->ai_addr, ai->ai_addrlen, address, timeout);
    if (last_error) {
      set_no_delay(fd.get());
      return fd;
    }
  }
  return last_error;
}

bool someone_listens_on(const SocketAddress& address) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return false;
  const sockaddr_un sa = unix_sockaddr(address.path);
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0) return true;
  return errno == EAGAIN || errno == EINPROGRESS;  // a full backlog is still a listener
}

// A socket file is stale when nobody accepts connections on it any more.
Status remove_stale_socket_file(const SocketAddress& address) {
  struct stat st {};
  if (::lstat(address.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::ok();
    return io_error(fmt::format("stat {}", address.path), errno);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return invalid_argument(fmt::format(
        "cannot listen on {}: the path exists and is not a socket; refusing to replace it",
        address.to_string()));
  }
  if (someone_listens_on(address)) {
    return {
        ErrorCode::kUnavailable,
        fmt::format("cannot listen on {}: another server is listening there", address.to_string())};
  }
  if (::unlink(address.path.c_str()) != 0 && errno != ENOENT) {
    return io_error(fmt::format("remove stale socket {}", address.path), errno);
  }
  return Status::ok();
}

Result<Listener> listen_unix(const SocketAddress& address, int backlog) {
  if (Status status = remove_stale_socket_file(address); !status) return status;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return io_error("socket(AF_UNIX)", errno);
  const sockaddr_un sa = unix_sockaddr(address.path);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0) {
    return io_error(fmt::format("bind {}", address.to_string()), errno);
  }
  SocketFile socket_file = SocketFile::claim(address.path);  // from here on, ours to remove
  // Nobody can connect before listen(), so tightening here leaves no window.
  if (::chmod(address.path.c_str(), 0600) != 0 || ::listen(fd.get(), backlog) != 0) {
    return io_error(fmt::format("listen on {}", address.to_string()), errno);
  }
  return Listener{std::move(fd), address, std::move(socket_file)};
}

Result<Listener> listen_tcp(const SocketAddress& address, int backlog) {
  auto list = resolve(address, AI_PASSIVE);
  if (!list) return list.status();
  Status last_error(ErrorCode::kUnavailable,
                    fmt::format("{}: the host resolves to no address", address.to_string()));
  for (const addrinfo* ai = list->get(); ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    const int on = 1;
    if (!fd || ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        ::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), backlog) != 0) {
      last_error = io_error(fmt::format("listen on {}", address.to_string()), errno);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
      return io_error(fmt::format("getsockname of {}", address.to_string()), errno);
    }
    SocketAddress actual = address;
    actual.port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
    return Listener{std::move(fd), std::move(actual), {}};
  }
  return last_error;
}

}  // namespace

std::string SocketAddress::to_string() const {
  if (kind == Kind::kUnix) return fmt::format("unix:{}", path);
  if (host.find(':') != std::string::npos) return fmt::format("tcp:[{}]:{}", host, port);
  return fmt::format("tcp:{}:{}", host, port);
}

Result<SocketAddress> parse_socket_address(std::string_view text) {
  if (text.starts_with(kUnixScheme)) {
    std::string_view path = text.substr(kUnixScheme.size());
    if (path.empty()) return bad_address(text, "the socket path is empty");
    if (path.size() > kMaxUnixPath) {
      return bad_address(text, fmt::format("the socket path is {} bytes long; a Unix socket "
                                           "path holds at most {}",
                                           path.size(), kMaxUnixPath));
    }
    if (path.find('\0') != std::string_view::npos) {
      return bad_address(text, "the socket path contains a NUL byte");
    }
    SocketAddress address;
    address.path = std::string(path);
    return address;
  }
  if (text.starts_with(kTcpScheme)) return parse_tcp(text, text.substr(kTcpScheme.size()));
  return bad_address(text, "missing scheme (expected unix:PATH or tcp:HOST:PORT)");
}

Result<UniqueFd> connect_socket(const SocketAddress& address, std::chrono::milliseconds timeout) {
  return address.kind == SocketAddress::Kind::kUnix ? connect_unix(address, timeout)
                                                    : connect_tcp(address, timeout);
}

Result<Listener> listen_socket(const SocketAddress& address, int backlog) {
  return address.kind == SocketAddress::Kind::kUnix ? listen_unix(address, backlog)
                                                    : listen_tcp(address, backlog);
}

bool is_loopback_only(const SocketAddress& address) {
  if (address.kind == SocketAddress::Kind::kUnix) return true;
  auto list = resolve(address, AI_PASSIVE);
  if (!list) return false;
  for (const addrinfo* ai = list->get(); ai != nullptr; ai = ai->ai_next) {
    if (!is_loopback(ai->ai_addr)) return false;
  }
  return true;
}

void set_no_delay(int fd) {
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) return;
  if (local.ss_family != AF_INET && local.ss_family != AF_INET6) return;
  const int on = 1;
  // Requests and replies are small and latency-bound: never wait to coalesce.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

std::string describe_peer(int fd) {
  sockaddr_storage peer{};
  socklen_t length = sizeof(peer);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) return "unknown peer";
  char host[INET6_ADDRSTRLEN] = {};
  if (peer.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&peer);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return fmt::format("{}:{}", host, ntohs(in->sin_port));
  }
  if (peer.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&peer);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
  }
  ucred cred{};
  socklen_t cred_length = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_length) == 0) {
    return fmt::format("unix peer pid {}", cred.pid);
  }
  return "unix peer";
}

}  // namespace faultline::net
