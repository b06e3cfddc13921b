// OpenSSL's reasons for a failure, as text for a Status message.
#pragma once

#include <openssl/ssl.h>

#include <string>

namespace faultline::net {

// Drains this thread's OpenSSL error queue into its reasons, joined by "; ":
// "no start line", "certificate verify failed". Empty when nothing was queued.
std::string take_openssl_errors();

// Why a call on `ssl` failed: the queued reasons, and when the peer's
// certificate did not verify, why not: "certificate verify failed (unable to
// get local issuer certificate)", with what to do where the reason says it
// ("... certificate required (the server requires a client certificate: give
// TlsOptions::cert_file and TlsOptions::key_file)"). Drains the error queue.
std::string tls_failure_reason(SSL* ssl);

}  // namespace faultline::net
