#include "net/stream_connect.h"

#include <fmt/format.h>

namespace faultline::net {

Status plain_tcp_refused(const SocketAddress& address, std::string_view tls_flag) {
  return {ErrorCode::kInvalidArgument,
          fmt::format("refusing plain TCP to {}: guest memory would cross the network in clear "
                      "text; give TLS options ({}) or allow plain TCP explicitly (--plain-tcp)",
                      address.to_string(), tls_flag)};
}

Result<std::unique_ptr<Stream>> connect_stream(const SocketAddress& address,
                                               const TlsClientOptions& tls, bool allow_plain_tcp,
                                               std::chrono::milliseconds timeout) {
  const bool use_tls = !tls.ca_file.empty();
  if (!use_tls && address.kind == SocketAddress::Kind::kTcp && !allow_plain_tcp) {
    return plain_tcp_refused(address, "--tls-ca");
  }
  auto socket = connect_socket(address, timeout);
  if (!socket) return socket.status();
  if (use_tls) {
    return Status(ErrorCode::kUnsupported, "TLS is not built into this faultline yet");
  }
  return make_plain_stream(std::move(*socket));
}

}  // namespace faultline::net
