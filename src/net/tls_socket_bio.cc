#include "net/tls_socket_bio.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstdint>

namespace faultline::net {
namespace {

int fd_of(BIO* bio) {
  return static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
}

bool would_block(int errno_value) {
  return errno_value == EAGAIN || errno_value == EWOULDBLOCK || errno_value == EINTR;
}

int socket_write(BIO* bio, const char* data, size_t length, size_t* written) {
  BIO_clear_retry_flags(bio);
  const ssize_t n = ::send(fd_of(bio), data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) {
    *written = static_cast<size_t>(n);
    return 1;
  }
  if (would_block(errno)) BIO_set_retry_write(bio);
  return 0;
}

int socket_read(BIO* bio, char* data, size_t length, size_t* read) {
  BIO_clear_retry_flags(bio);
  const ssize_t n = ::recv(fd_of(bio), data, length, MSG_DONTWAIT);
  if (n > 0) {
    *read = static_cast<size_t>(n);
    return 1;
  }
  if (n == 0) {
    // As OpenSSL's own socket BIO: BIO_CTRL_EOF tells the record layer that
    // the peer closed, which it reports apart from a failed call.
    BIO_set_flags(bio, BIO_FLAGS_IN_EOF);
  } else if (would_block(errno)) {
    BIO_set_retry_read(bio);
  }
  return 0;
}

long socket_ctrl(BIO* bio, int command, long /*num*/, void* /*ptr*/) {
  switch (command) {
    case BIO_CTRL_FLUSH:
      return 1;  // nothing is buffered here
    case BIO_CTRL_EOF:
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    default:
      return 0;
  }
}

BIO_METHOD* make_socket_method() {
  BIO_METHOD* method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "faultline socket");
  if (method == nullptr) return nullptr;
  BIO_meth_set_write_ex(method, socket_write);
  BIO_meth_set_read_ex(method, socket_read);
  BIO_meth_set_ctrl(method, socket_ctrl);
  return method;
}

}  // namespace

BIO* new_socket_bio(int fd) {
  // Made once and kept for the life of the process, as OpenSSL's own methods are.
  static BIO_METHOD* const method = make_socket_method();
  if (method == nullptr) return nullptr;
  BIO* bio = BIO_new(method);
  if (bio == nullptr) return nullptr;
  // The descriptor itself rides in the data pointer: nothing to allocate or free.
  // NOLINTNEXTLINE(performance-no-int-to-ptr)
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd)));
  BIO_set_init(bio, 1);
  return bio;
}

}  // namespace faultline::net
