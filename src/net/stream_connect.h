// Opening a Stream to a page server: TLS when configured, plain otherwise, and
// plain TCP only when explicitly allowed (guest memory is secret).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "faultline/status.h"
#include "net/socket_address.h"
#include "net/stream.h"

namespace faultline::net {

class TlsContext;

// `tls` null: plain (refused for TCP unless allow_plain_tcp).
Result<std::unique_ptr<Stream>> connect_stream(const SocketAddress& address, const TlsContext* tls,
                                               const std::string& server_name, bool allow_plain_tcp,
                                               std::chrono::milliseconds timeout);

// The refusal for plain TCP without an explicit allowance, shared by both ends.
// `tls_fields` names the TlsOptions fields that would turn TLS on; the
// message names option fields, never a CLI flag (the CLI maps them).
Status plain_tcp_refused(const SocketAddress& address, std::string_view tls_fields);

}  // namespace faultline::net
