#include "net/stream_connect.h"

#include <fmt/format.h>

#include "net/tls.h"

namespace faultline::net {

Status plain_tcp_refused(const SocketAddress& address, std::string_view tls_fields) {
  return {ErrorCode::kInvalidArgument,
          fmt::format("refusing plain TCP to {}: guest memory would cross the network in clear "
                      "text; give TLS options ({}) or allow plain TCP explicitly (allow_plain_tcp)",
                      address.to_string(), tls_fields)};
}

Result<std::unique_ptr<Stream>> connect_stream(const SocketAddress& address, const TlsContext* tls,
                                               const std::string& server_name, bool allow_plain_tcp,
                                               std::chrono::milliseconds timeout) {
  if (tls == nullptr && address.kind == SocketAddress::Kind::kTcp && !allow_plain_tcp) {
    return plain_tcp_refused(address, "TlsOptions::ca_file");
  }
  auto socket = connect_socket(address, timeout);
  if (!socket) return socket.status();
  if (tls != nullptr) {
    const std::string host = !server_name.empty()                        ? server_name
                             : address.kind == SocketAddress::Kind::kTcp ? address.host
                                                                         : "localhost";
    return tls->connect(std::move(*socket), host, deadline_after(timeout));
  }
  return make_plain_stream(std::move(*socket));
}

}  // namespace faultline::net
