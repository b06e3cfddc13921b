// The Stream side of TLS: a handshake over a socket, then reads and writes
// that may run on two threads at once.
#pragma once

#include <openssl/ssl.h>

#include <memory>

#include "faultline/status.h"
#include "faultline/unique_fd.h"
#include "net/socket_io.h"
#include "net/stream.h"

namespace faultline::net {

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

// Runs the handshake of `ssl`, already set up as client or server, over the
// connected `socket`; the Stream returned owns both. A failure names the peer
// and OpenSSL's reason: "TLS handshake with 127.0.0.1:4242 failed: ...".
Result<std::unique_ptr<Stream>> tls_handshake(UniqueFd socket, SslPtr ssl, Deadline deadline);

}  // namespace faultline::net
