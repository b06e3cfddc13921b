// The TLS options of the commands that speak protocol v2 over a network.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "faultline/tls_options.h"

namespace faultline::cli {

// The flags fill the library's TlsOptions directly.
struct TlsArgs {
  TlsOptions options;
  bool plain_tcp = false;

  // `server`: the listening side (serve-pages, migrate); else the connecting one.
  void add_to(CLI::App* cmd, bool server) {
    cmd->add_option("--tls-cert", options.cert_file,
                    server ? "TLS: this server's certificate chain (PEM)"
                           : "TLS: our client certificate, for servers that require one");
    cmd->add_option("--tls-key", options.key_file, "TLS: the key of --tls-cert (PEM)");
    cmd->add_option("--tls-ca", options.ca_file,
                    server ? "TLS: require client certificates signed by these CAs (mutual)"
                           : "TLS: verify the server against these CAs (turns TLS on)");
    if (!server) {
      cmd->add_option("--tls-server-name", options.server_name,
                      "TLS: the name in the server's certificate (default: the host)");
    }
    cmd->add_flag("--plain-tcp", plain_tcp,
                  "allow TCP without TLS (guest memory crosses the network in clear text)");
  }
};

}  // namespace faultline::cli
