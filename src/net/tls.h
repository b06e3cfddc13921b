// TLS for the page protocol: certificates and trust from PEM files, TLS 1.3
// only, the peer always verified. A context is made once and shared; each
// accepted or connected socket becomes a Stream through its handshake.
#pragma once

#include <memory>
#include <string>

#include "faultline/status.h"
#include "faultline/tls_options.h"
#include "faultline/unique_fd.h"
#include "net/socket_io.h"
#include "net/stream.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX, kept out of this header

namespace faultline::net {

// TlsOptions (include/faultline/tls_options.h) says what each end presents
// and whom it trusts.
class TlsContext {
 public:
  static Result<std::shared_ptr<TlsContext>> server(const TlsOptions& options);
  static Result<std::shared_ptr<TlsContext>> client(const TlsOptions& options);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Runs the handshake on a connected socket; the resulting Stream owns the
  // socket. Handshake and verification failures name the peer and the reason.
  Result<std::unique_ptr<Stream>> accept(UniqueFd socket, Deadline deadline) const;
  Result<std::unique_ptr<Stream>> connect(UniqueFd socket, const std::string& host,
                                          Deadline deadline) const;

  // Whether both ends authenticate: a server that requires client
  // certificates (ca_file), a client that has one to present (cert_file).
  bool mutual() const { return mutual_; }

 private:
  struct Free {
    void operator()(ssl_ctx_st* ctx) const;
  };
  using CtxPtr = std::unique_ptr<ssl_ctx_st, Free>;

  TlsContext(CtxPtr ctx, bool mutual, std::string server_name);

  CtxPtr ctx_;
  bool mutual_;
  std::string server_name_;
};

}  // namespace faultline::net
