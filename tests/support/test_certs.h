// Certificates for TLS tests, made at test time with the OpenSSL API: a CA,
// a server and a client certificate it signs, and an unrelated CA with a
// certificate of its own for the tests that must be refused. EC P-256 keys;
// every certificate is valid from an hour ago for a day.
#pragma once

#include <string>

namespace faultline::testing {

// Paths of PEM files.
struct TestCerts {
  std::string ca_cert;
  std::string server_cert;  // CN=faultline-test-server; IP:127.0.0.1, IP:::1, DNS:localhost
  std::string server_key;
  std::string client_cert;  // CN=faultline-test-client
  std::string client_key;
  std::string other_ca_cert;  // trusts nothing of the above, nor they it
  std::string other_cert;     // CN=faultline-test-stranger, signed by other_ca_cert, server's names
  std::string other_key;
};

// Writes the certificates and keys into `dir`; fails the test on error.
TestCerts make_test_certs(const std::string& dir);

}  // namespace faultline::testing
