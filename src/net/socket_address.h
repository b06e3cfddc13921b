// Where a page server listens and a page source connects: "unix:PATH" or
// "tcp:HOST:PORT" (HOST a name, an IPv4 address or a bracketed IPv6 address).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "faultline/status.h"
#include "faultline/unique_fd.h"
#include "net/socket_file.h"

namespace faultline::net {

struct SocketAddress {
  enum class Kind { kUnix, kTcp };

  Kind kind = Kind::kUnix;
  std::string path;   // kUnix
  std::string host;   // kTcp, without brackets
  uint16_t port = 0;  // kTcp

  // The canonical text form, the one parse_socket_address accepts.
  std::string to_string() const;
};

Result<SocketAddress> parse_socket_address(std::string_view text);

// A connected stream socket (CLOEXEC, TCP_NODELAY for TCP). Tries every address
// a TCP host name resolves to; `timeout` bounds each attempt.
Result<UniqueFd> connect_socket(const SocketAddress& address, std::chrono::milliseconds timeout);

struct Listener {
  UniqueFd fd;            // listening, CLOEXEC, non-blocking
  SocketAddress address;  // as clients should connect: the real port for "tcp:HOST:0"
  // Unix: the socket file bound, removed when this goes (keep it as long as
  // the listener serves). TCP: nothing.
  SocketFile socket_file;
};

// Unix: removes a stale socket file (only a socket nobody listens on), binds,
// makes the file 0600 and only then listens; a failure leaves whatever was at
// the path where it was. TCP: SO_REUSEADDR, binds, listens.
Result<Listener> listen_socket(const SocketAddress& address, int backlog = 128);

// Whether only this host can reach the address: a Unix socket, or a TCP host
// whose every resolved address is a loopback address.
bool is_loopback_only(const SocketAddress& address);

// For the sockets accept() returns: TCP_NODELAY on TCP, nothing on Unix.
void set_no_delay(int fd);

// "1.2.3.4:5678", "[::1]:5678", or "unix peer pid 42" for the other end of `fd`.
std::string describe_peer(int fd);

}  // namespace faultline::net
