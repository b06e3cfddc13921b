// TLS contexts: what each end presents and whom it trusts, loaded once from
// PEM files, and the per-connection setup of the peer name a client expects.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "net/tls.h"
#include "net/tls_errors.h"
#include "net/tls_stream.h"

namespace faultline::net {
namespace {

Status check_readable(std::string_view what, const std::string& path) {
  if (::access(path.c_str(), R_OK) == 0) return Status::ok();
  return invalid_argument(
      fmt::format("cannot read the TLS {} file {}: {}", what, path, std::strerror(errno)));
}

Status load_failure(std::string_view what, const std::string& path) {
  return invalid_argument(fmt::format("TLS {} file {}: {}", what, path, take_openssl_errors()));
}

// Whether the last queued error says the key is not the certificate's.
bool key_mismatch() {
  const unsigned long error = ERR_peek_last_error();
  return ERR_GET_LIB(error) == ERR_LIB_X509 &&
         (ERR_GET_REASON(error) == X509_R_KEY_VALUES_MISMATCH ||
          ERR_GET_REASON(error) == X509_R_KEY_TYPE_MISMATCH);
}

Status key_mismatch_error(const TlsOptions& options) {
  ERR_clear_error();
  return invalid_argument(fmt::format("the TLS key file {} does not match the certificate in {}",
                                      options.key_file, options.cert_file));
}

// Refuses an encrypted key rather than let OpenSSL prompt on the terminal.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return -1;
}

Status load_identity(SSL_CTX* ctx, const TlsOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return invalid_argument(
        "TlsOptions::cert_file and TlsOptions::key_file go together: give both or neither");
  }
  if (Status status = check_readable("certificate", options.cert_file); !status) return status;
  if (Status status = check_readable("key", options.key_file); !status) return status;
  if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
    return load_failure("certificate", options.cert_file);
  }
  SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
  if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (key_mismatch()) return key_mismatch_error(options);
    return load_failure("key", options.key_file);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) return key_mismatch_error(options);
  return Status::ok();
}

Status load_trust(SSL_CTX* ctx, const std::string& ca_file) {
  if (Status status = check_readable("CA", ca_file); !status) return status;
  if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
    return load_failure("CA", ca_file);
  }
  return Status::ok();
}

// TLS 1.3 only: both ends are ours, so nothing older needs talking to.
Result<SSL_CTX*> new_context(const SSL_METHOD* method) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) {
    return Status(ErrorCode::kIo,
                  fmt::format("cannot make a TLS context: {}", take_openssl_errors()));
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  // Partial writes: each SSL_write_ex returns after a record, so the lock
  // around it is short. Sessions are never resumed, so no tickets are sent.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  return ctx;
}

Result<SslPtr> new_connection(SSL_CTX* ctx) {
  SslPtr ssl(SSL_new(ctx));
  if (ssl) return ssl;
  return Status(ErrorCode::kIo,
                fmt::format("cannot start a TLS connection: {}", take_openssl_errors()));
}

bool is_ip_address(const std::string& name) {
  unsigned char address[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, name.c_str(), address) == 1 ||
         ::inet_pton(AF_INET6, name.c_str(), address) == 1;
}

// The certificate must name `name`: in its IP SANs for an address, its DNS
// SANs (or CN) for a host name, which also goes out as SNI.
Status expect_peer_name(SSL* ssl, const std::string& name) {
  if (is_ip_address(name)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1) return Status::ok();
  } else {
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, name.c_str()) == 1 && SSL_set_tlsext_host_name(ssl, name.c_str()) == 1) {
      return Status::ok();
    }
  }
  return invalid_argument(
      fmt::format("cannot expect TLS server name \"{}\": {}", name, take_openssl_errors()));
}

// "[::1]" as written in an address, "::1" as a certificate holds it.
std::string without_brackets(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

}  // namespace

void TlsContext::Free::operator()(ssl_ctx_st* ctx) const {
  SSL_CTX_free(ctx);
}

TlsContext::TlsContext(CtxPtr ctx, bool mutual, std::string server_name)
    : ctx_(std::move(ctx)), mutual_(mutual), server_name_(std::move(server_name)) {}

TlsContext::~TlsContext() = default;

Result<std::shared_ptr<TlsContext>> TlsContext::server(const TlsOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return invalid_argument("a TLS server needs TlsOptions::cert_file and TlsOptions::key_file");
  }
  auto made = new_context(TLS_server_method());
  if (!made) return made.status();
  CtxPtr ctx(*made);
  if (Status status = load_identity(ctx.get(), options); !status) return status;
  const bool mutual = !options.ca_file.empty();
  if (mutual) {
    if (Status status = load_trust(ctx.get(), options.ca_file); !status) return status;
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // Tells clients which issuers we accept; they pick their certificate by it.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(ctx.get(), names);
    }
    ERR_clear_error();
  }
  return std::shared_ptr<TlsContext>(new TlsContext(std::move(ctx), mutual, ""));
}

Result<std::shared_ptr<TlsContext>> TlsContext::client(const TlsOptions& options) {
  if (options.ca_file.empty()) {
    return invalid_argument("a TLS client needs TlsOptions::ca_file to verify the server");
  }
  auto made = new_context(TLS_client_method());
  if (!made) return made.status();
  CtxPtr ctx(*made);
  const bool mutual = !options.cert_file.empty() || !options.key_file.empty();
  if (mutual) {
    if (Status status = load_identity(ctx.get(), options); !status) return status;
  }
  if (Status status = load_trust(ctx.get(), options.ca_file); !status) return status;
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  return std::shared_ptr<TlsContext>(new TlsContext(std::move(ctx), mutual, options.server_name));
}

Result<std::unique_ptr<Stream>> TlsContext::accept(UniqueFd socket, Deadline deadline) const {
  auto ssl = new_connection(ctx_.get());
  if (!ssl) return ssl.status();
  SSL_set_accept_state(ssl->get());
  return tls_handshake(std::move(socket), std::move(ssl).value(), deadline);
}

Result<std::unique_ptr<Stream>> TlsContext::connect(UniqueFd socket, const std::string& host,
                                                    Deadline deadline) const {
  const std::string name = without_brackets(server_name_.empty() ? host : server_name_);
  if (name.empty()) {
    return invalid_argument(
        "TLS connect: no server name to verify (no host, no TlsOptions::server_name)");
  }
  auto ssl = new_connection(ctx_.get());
  if (!ssl) return ssl.status();
  if (Status status = expect_peer_name(ssl->get(), name); !status) return status;
  SSL_set_connect_state(ssl->get());
  return tls_handshake(std::move(socket), std::move(ssl).value(), deadline);
}

}  // namespace faultline::net
