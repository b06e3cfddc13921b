// A connected byte stream: a plain socket, or TLS over one. The v2 page
// protocol runs over either without knowing which.
//
// One thread may read while another writes (a reader thread and a writer
// thread per connection); two concurrent readers or two concurrent writers are
// not allowed.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "faultline/status.h"
#include "faultline/unique_fd.h"
#include "net/socket_io.h"

namespace faultline::net {

class Stream {
 public:
  virtual ~Stream() = default;

  // Exactly buf.size() bytes, as net::read_full: the peer closing first is
  // kUnavailable, the deadline passing kTimeout.
  virtual Status read_full(std::span<std::byte> buf, Deadline deadline) = 0;
  // All of `buf`, never raising SIGPIPE; errors as for read_full.
  virtual Status write_full(std::span<const std::byte> buf, Deadline deadline) = 0;
  // Ends the connection in both directions; a thread blocked in read_full or
  // write_full returns promptly with an error. Safe from any thread, repeatable.
  virtual void shutdown() = 0;
  // Bytes written but not yet sent by the kernel (SIOCOUTQ; TLS record
  // overhead included), for pacing bulk data behind urgent replies.
  virtual size_t unsent_bytes() const = 0;
  // "127.0.0.1:4242 (TLSv1.3, peer CN=dest)" or "unix peer pid 42 (plain)".
  virtual std::string describe() const = 0;
};

// A plain stream over a connected socket (made non-blocking here).
std::unique_ptr<Stream> make_plain_stream(UniqueFd socket);

}  // namespace faultline::net
