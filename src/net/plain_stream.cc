// A Stream straight over a socket: the readiness loops of socket_io.h.
#include <fcntl.h>
#include <sys/socket.h>

#include <string>

#include "net/socket_address.h"
#include "net/stream.h"

namespace faultline::net {
namespace {

class PlainStream final : public Stream {
 public:
  explicit PlainStream(UniqueFd socket) : socket_(std::move(socket)) {
    const int flags = ::fcntl(socket_.get(), F_GETFL);
    if (flags >= 0) ::fcntl(socket_.get(), F_SETFL, flags | O_NONBLOCK);
    peer_ = describe_peer(socket_.get());
  }

  Status read_full(std::span<std::byte> buf, Deadline deadline) override {
    return net::read_full(socket_.get(), buf, deadline);
  }
  Status write_full(std::span<const std::byte> buf, Deadline deadline) override {
    return net::write_full(socket_.get(), buf, deadline);
  }
  void shutdown() override { ::shutdown(socket_.get(), SHUT_RDWR); }
  size_t unsent_bytes() const override { return net::unsent_bytes(socket_.get()); }
  std::string describe() const override { return peer_ + " (plain)"; }

 private:
  UniqueFd socket_;
  std::string peer_;
};

}  // namespace

std::unique_ptr<Stream> make_plain_stream(UniqueFd socket) {
  return std::make_unique<PlainStream>(std::move(socket));
}

}  // namespace faultline::net
