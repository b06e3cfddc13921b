// TLS settings of both ends of protocol v2 (NetworkSourceOptions::tls,
// PageServerOptions::tls): certificates and trust from PEM files. TLS 1.3
// only, and the peer is always verified.
#pragma once

#include <string>

namespace faultline {

struct TlsOptions {
  // Our certificate chain and its private key (PEM). Required for a server;
  // for a client only when the server asks for mutual authentication.
  std::string cert_file;
  std::string key_file;
  // Trust anchors (PEM) that verify the peer. Server: when set, every client
  // must present a certificate they sign (mutual authentication). Client:
  // turns TLS on, since the server is always verified.
  std::string ca_file;
  // Client: the DNS name or IP address the server certificate must name;
  // empty means the host connected to. A server ignores it.
  std::string server_name;
};

}  // namespace faultline
