#include "net/tls_errors.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>

namespace faultline::net {
namespace {

std::string reason_text(unsigned long error) {
  if (const char* reason = ERR_reason_error_string(error); reason != nullptr) return reason;
  char buffer[256];
  ERR_error_string_n(error, buffer, sizeof(buffer));
  return buffer;
}

// The name the certificate was checked against, for a mismatch.
std::string expected_name(SSL* ssl) {
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (const char* host = X509_VERIFY_PARAM_get0_host(param, 0); host != nullptr) return host;
  char* ip = X509_VERIFY_PARAM_get1_ip_asc(param);
  if (ip == nullptr) return "";
  std::string text(ip);
  OPENSSL_free(ip);
  return text;
}

std::string verify_failure(SSL* ssl) {
  const long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return "";
  std::string text = X509_verify_cert_error_string(result);
  if (result == X509_V_ERR_HOSTNAME_MISMATCH || result == X509_V_ERR_IP_ADDRESS_MISMATCH) {
    text += fmt::format(": the certificate does not name {}", expected_name(ssl));
  }
  return text;
}

// What a user can do about the failure, where the reason says it: OpenSSL's
// words name the symptom, not the flag that is missing.
std::string hint_for(const std::string& reason, SSL* ssl) {
  const bool client = SSL_is_server(ssl) == 0;
  if (reason.find("certificate required") != std::string::npos) {
    return "the server requires a client certificate: give TlsOptions::cert_file and "
           "TlsOptions::key_file";
  }
  if (!client && reason.find("peer did not return a certificate") != std::string::npos) {
    return "the client presented no certificate, and TlsOptions::ca_file requires one";
  }
  if (reason.find("wrong version number") != std::string::npos ||
      reason.find("packet length too long") != std::string::npos ||
      reason.find("record layer failure") != std::string::npos) {
    return client ? "the server does not speak TLS here; drop the TLS options if it is plain"
                  : "the client does not speak TLS";
  }
  if (client && reason.find("unable to get local issuer certificate") != std::string::npos) {
    return "the server's certificate is not signed by a CA in TlsOptions::ca_file";
  }
  return "";
}

}  // namespace

std::string take_openssl_errors() {
  std::string text;
  while (const unsigned long error = ERR_get_error()) {
    std::string reason = reason_text(error);
    if (text == reason || text.ends_with("; " + reason)) continue;  // repeated by each layer
    if (!text.empty()) text += "; ";
    text += reason;
  }
  return text;
}

std::string tls_failure_reason(SSL* ssl) {
  std::string text = take_openssl_errors();
  if (std::string verify = verify_failure(ssl); !verify.empty()) {
    text += text.empty() ? verify : fmt::format(" ({})", verify);
  }
  if (text.empty()) return "unknown TLS error";
  if (std::string hint = hint_for(text, ssl); !hint.empty()) text += " (" + hint + ")";
  return text;
}

}  // namespace faultline::net
