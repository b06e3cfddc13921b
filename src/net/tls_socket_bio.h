// The BIO OpenSSL reads and writes the socket through: send() with
// MSG_NOSIGNAL, so a peer that went away never raises SIGPIPE, and both
// directions non-blocking whatever the socket's own mode.
#pragma once

#include <openssl/bio.h>

namespace faultline::net {

// A BIO over `fd` that does not own it (the Stream does); nullptr when OpenSSL
// cannot allocate one.
BIO* new_socket_bio(int fd);

}  // namespace faultline::net
