// A Stream over TLS. OpenSSL's SSL object takes one call at a time, so every
// SSL_* call holds the mutex; the waits for the socket happen with it released,
// so a reader waiting for data never holds up the writer, nor the reverse.
#include "net/tls_stream.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

#include "net/socket_address.h"
#include "net/tls_errors.h"
#include "net/tls_socket_bio.h"

namespace faultline::net {
namespace {

// How long a call waits for readiness in the other direction (a read that
// must write, a write that must read) before trying again: that readiness may
// be taken by the other thread's call, which would leave this wait unanswered.
constexpr auto kCrossWait = std::chrono::milliseconds(10);

enum class Direction { kRead, kWrite };

std::string_view verb(Direction direction) {
  return direction == Direction::kRead ? "received" : "sent";
}

// What one SSL_* call did, taken while the lock was held.
struct Outcome {
  int error = SSL_ERROR_NONE;  // SSL_get_error; SSL_ERROR_NONE when the call succeeded
  size_t bytes = 0;            // moved by a successful read or write
  int errno_value = 0;         // for SSL_ERROR_SYSCALL
  bool peer_closed = false;    // the peer closed the socket without a close_notify
  std::string reason;          // OpenSSL's reason for SSL_ERROR_SSL

  bool wants_io() const { return error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE; }
};

// What ended the connection, without where: the code and a short sentence.
// `call` names the system call an errno came from, when it is known.
Status classify(const Outcome& outcome, std::string_view call) {
  if (outcome.error == SSL_ERROR_ZERO_RETURN || outcome.peer_closed) {
    return {ErrorCode::kUnavailable, "peer closed the connection"};
  }
  if (outcome.error == SSL_ERROR_SYSCALL && outcome.errno_value != 0) {
    return {is_disconnect(outcome.errno_value) ? ErrorCode::kUnavailable : ErrorCode::kIo,
            call.empty() ? std::strerror(outcome.errno_value)
                         : fmt::format("{}: {}", call, std::strerror(outcome.errno_value))};
  }
  return {ErrorCode::kProtocol, outcome.reason};
}

std::string common_name(X509* certificate) {
  X509_NAME* subject = X509_get_subject_name(certificate);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return "";
  unsigned char* utf8 = nullptr;
  const int length =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
  if (length < 0) return "";
  std::string name(reinterpret_cast<const char*>(utf8), static_cast<size_t>(length));
  OPENSSL_free(utf8);
  return name;
}

class TlsStream final : public Stream {
 public:
  TlsStream(UniqueFd socket, SslPtr ssl) : socket_(std::move(socket)), ssl_(std::move(ssl)) {
    const int flags = ::fcntl(socket_.get(), F_GETFL);
    if (flags >= 0) ::fcntl(socket_.get(), F_SETFL, flags | O_NONBLOCK);
    peer_ = describe_peer(socket_.get());
  }

  ~TlsStream() override {
    // A close_notify lets the peer tell this orderly close from a cut
    // connection; one non-blocking try, as nobody waits for it.
    if (established_ && !failure_ && !shut_down_) SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }

  Status handshake(Deadline deadline) {
    for (;;) {
      Outcome outcome = attempt([](SSL* ssl, size_t*) { return SSL_do_handshake(ssl); });
      if (outcome.error == SSL_ERROR_NONE) break;
      if (!outcome.wants_io()) {
        Status why = classify(outcome, "");
        return {why.code(), fmt::format("TLS handshake with {} failed: {}", peer_, why.message())};
      }
      auto ready = wait(outcome, POLLIN | POLLOUT, deadline);
      if (!ready) return ready.status().with_context(fmt::format("TLS handshake with {}", peer_));
      if (!*ready) {
        return {ErrorCode::kTimeout, fmt::format("TLS handshake with {} timed out", peer_)};
      }
    }
    description_ = describe_session();
    established_ = true;
    return Status::ok();
  }

  Status read_full(std::span<std::byte> buf, Deadline deadline) override {
    return transfer(Direction::kRead, buf.size(), deadline, [&](SSL* ssl, size_t done, size_t* n) {
      return SSL_read_ex(ssl, buf.data() + done, buf.size() - done, n);
    });
  }

  Status write_full(std::span<const std::byte> buf, Deadline deadline) override {
    return transfer(Direction::kWrite, buf.size(), deadline, [&](SSL* ssl, size_t done, size_t* n) {
      return SSL_write_ex(ssl, buf.data() + done, buf.size() - done, n);
    });
  }

  void shutdown() override {
    shut_down_ = true;
    ::shutdown(socket_.get(), SHUT_RDWR);
  }

  size_t unsent_bytes() const override { return net::unsent_bytes(socket_.get()); }

  std::string describe() const override { return description_; }

 private:
  // Runs `call(ssl, &bytes)`, one SSL_* call, with the lock held. After a
  // fatal error OpenSSL allows no further calls: every later one repeats it.
  template <typename Call>
  Outcome attempt(Call call) {
    std::lock_guard lock(mutex_);
    if (failure_) return *failure_;
    ERR_clear_error();
    errno = 0;
    Outcome outcome;
    const int result = call(ssl_.get(), &outcome.bytes);
    if (result > 0) return outcome;
    outcome.errno_value = errno;
    outcome.error = SSL_get_error(ssl_.get(), result);
    if (outcome.error != SSL_ERROR_SSL && outcome.error != SSL_ERROR_SYSCALL) return outcome;
    const unsigned long first = ERR_peek_error();
    outcome.peer_closed = (outcome.error == SSL_ERROR_SYSCALL && outcome.errno_value == 0) ||
                          (ERR_GET_LIB(first) == ERR_LIB_SSL &&
                           ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
    outcome.reason = tls_failure_reason(ssl_.get());
    failure_ = outcome;
    return outcome;
  }

  // After SSL_ERROR_WANT_READ / WANT_WRITE, waits with the lock released until
  // the socket is ready for what OpenSSL wants. `usual` is what this kind of
  // call waits for; a wait for anything else is bounded by kCrossWait. False
  // once the deadline passes.
  Result<bool> wait(const Outcome& outcome, short usual, Deadline deadline) {
    const short wanted = outcome.error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    Deadline until = deadline;
    if ((wanted & usual) == 0) until = std::min(deadline, Clock::now() + kCrossWait);
    auto ready = wait_ready(socket_.get(), wanted, until);
    if (!ready || *ready) return ready;
    return Clock::now() < deadline;
  }

  // Moves `total` bytes with `call(ssl, done, &bytes)`, one SSL_read_ex or
  // SSL_write_ex of the rest, waiting for the socket in between.
  template <typename Call>
  Status transfer(Direction direction, size_t total, Deadline deadline, Call call) {
    size_t done = 0;
    while (done < total) {
      Outcome outcome = attempt([&](SSL* ssl, size_t* bytes) { return call(ssl, done, bytes); });
      if (outcome.error == SSL_ERROR_NONE) {
        done += outcome.bytes;
        continue;
      }
      const std::string progress =
          fmt::format("after {} of {} bytes {}", done, total, verb(direction));
      if (!outcome.wants_io()) return transfer_failure(outcome, direction, progress);
      auto ready = wait(outcome, direction == Direction::kRead ? POLLIN : POLLOUT, deadline);
      if (!ready) return ready.status();
      if (!*ready) return {ErrorCode::kTimeout, "timed out " + progress};
    }
    return Status::ok();
  }

  Status transfer_failure(const Outcome& outcome, Direction direction,
                          const std::string& progress) const {
    if (shut_down_) return {ErrorCode::kUnavailable, "the connection was shut down " + progress};
    Status why = classify(outcome, direction == Direction::kRead ? "recv" : "send");
    if (why.code() == ErrorCode::kProtocol) {
      return {why.code(),
              fmt::format("TLS connection with {} failed {}: {}", peer_, progress, why.message())};
    }
    return {why.code(), fmt::format("{} {}", why.message(), progress)};
  }

  // "127.0.0.1:4242 (TLSv1.3, peer CN=dest)"; called once the handshake is done.
  std::string describe_session() {
    std::lock_guard lock(mutex_);
    std::string text = fmt::format("{} ({}", peer_, SSL_get_version(ssl_.get()));
    if (X509* certificate = SSL_get0_peer_certificate(ssl_.get()); certificate != nullptr) {
      if (std::string name = common_name(certificate); !name.empty()) text += ", peer CN=" + name;
    }
    return text + ")";
  }

  UniqueFd socket_;
  std::string peer_;
  std::string description_;  // set by handshake(), before any other thread sees the stream
  bool established_ = false;
  std::atomic<bool> shut_down_ = false;

  std::mutex mutex_;
  SslPtr ssl_;                      // guarded by mutex_
  std::optional<Outcome> failure_;  // guarded by mutex_: the fatal error, once there is one
};

}  // namespace

Result<std::unique_ptr<Stream>> tls_handshake(UniqueFd socket, SslPtr ssl, Deadline deadline) {
  BIO* bio = new_socket_bio(socket.get());
  if (bio == nullptr) {
    return Status(ErrorCode::kIo,
                  fmt::format("cannot make a TLS socket BIO: {}", take_openssl_errors()));
  }
  SSL_set_bio(ssl.get(), bio, bio);  // one reference, owned by `ssl` from here
  auto stream = std::make_unique<TlsStream>(std::move(socket), std::move(ssl));
  if (Status status = stream->handshake(deadline); !status) return status;
  return std::unique_ptr<Stream>(std::move(stream));
}

}  // namespace faultline::net
