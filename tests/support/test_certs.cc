#include "support/test_certs.h"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <cstring>
#include <memory>

namespace faultline::testing {
namespace {

struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertFree {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
using CertPtr = std::unique_ptr<X509, CertFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

enum class Role { kCa, kServer, kClient, kServerAndClient };

struct Identity {
  KeyPtr key;
  CertPtr cert;
};

std::string openssl_errors() {
  std::string text;
  while (const unsigned long error = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(error, buffer, sizeof(buffer));
    text += std::string(text.empty() ? "" : "; ") + buffer;
  }
  return text;
}

// `issuer` is nullptr for a self-signed certificate, which `cert` then is.
void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (extension == nullptr) {
    ADD_FAILURE() << "extension " << OBJ_nid2sn(nid) << "=" << value << ": " << openssl_errors();
    return;
  }
  X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
}

void add_role_extensions(X509* cert, X509* issuer, Role role) {
  add_extension(cert, issuer, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_extension(cert, issuer, NID_authority_key_identifier, "keyid:always");
  if (role == Role::kCa) {
    add_extension(cert, issuer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    return;
  }
  add_extension(cert, issuer, NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert, issuer, NID_key_usage, "critical,digitalSignature");
  const char* usage = role == Role::kServer   ? "serverAuth"
                      : role == Role::kClient ? "clientAuth"
                                              : "serverAuth,clientAuth";
  add_extension(cert, issuer, NID_ext_key_usage, usage);
  if (role != Role::kClient) {
    add_extension(cert, issuer, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost");
  }
}

// A new key and its certificate named CN=`name`, signed by `issuer` (or by
// itself when `issuer` is nullptr).
Identity issue(const std::string& name, Role role, const Identity* issuer) {
  static std::atomic<long> serial = 1;
  Identity made{KeyPtr(EVP_EC_gen("P-256")), CertPtr(X509_new())};
  if (!made.key || !made.cert) {
    ADD_FAILURE() << "key or certificate for " << name << ": " << openssl_errors();
    return made;
  }
  X509* cert = made.cert.get();
  X509_set_version(cert, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60L * 60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24L * 60 * 60);
  X509_set_pubkey(cert, made.key.get());
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer != nullptr ? issuer->cert.get() : nullptr;
  X509_set_issuer_name(cert, X509_get_subject_name(issuer_cert != nullptr ? issuer_cert : cert));
  add_role_extensions(cert, issuer_cert, role);
  EVP_PKEY* signing_key = issuer != nullptr ? issuer->key.get() : made.key.get();
  if (X509_sign(cert, signing_key, EVP_sha256()) == 0) {
    ADD_FAILURE() << "signing the certificate for " << name << ": " << openssl_errors();
  }
  return made;
}

BioPtr open_for_writing(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "w"));
  if (!bio) ADD_FAILURE() << "open " << path << ": " << openssl_errors();
  return bio;
}

std::string write_cert(const std::string& path, const Identity& identity) {
  BioPtr out = open_for_writing(path);
  if (out && PEM_write_bio_X509(out.get(), identity.cert.get()) != 1) {
    ADD_FAILURE() << "write " << path << ": " << openssl_errors();
  }
  return path;
}

std::string write_key(const std::string& path, const Identity& identity) {
  BioPtr out = open_for_writing(path);
  if (out && PEM_write_bio_PrivateKey(out.get(), identity.key.get(), nullptr, nullptr, 0, nullptr,
                                      nullptr) != 1) {
    ADD_FAILURE() << "write " << path << ": " << openssl_errors();
  }
  return path;
}

}  // namespace

TestCerts make_test_certs(const std::string& dir) {
  const Identity ca = issue("faultline-test-ca", Role::kCa, nullptr);
  const Identity server = issue("faultline-test-server", Role::kServer, &ca);
  const Identity client = issue("faultline-test-client", Role::kClient, &ca);
  const Identity other_ca = issue("faultline-test-other-ca", Role::kCa, nullptr);
  const Identity other = issue("faultline-test-stranger", Role::kServerAndClient, &other_ca);
  return {
      .ca_cert = write_cert(dir + "/ca.pem", ca),
      .server_cert = write_cert(dir + "/server.pem", server),
      .server_key = write_key(dir + "/server.key", server),
      .client_cert = write_cert(dir + "/client.pem", client),
      .client_key = write_key(dir + "/client.key", client),
      .other_ca_cert = write_cert(dir + "/other-ca.pem", other_ca),
      .other_cert = write_cert(dir + "/other.pem", other),
      .other_key = write_key(dir + "/other.key", other),
  };
}

}  // namespace faultline::testing
