#include "cli/flag_names.h"

#include <array>
#include <utility>

namespace faultline::cli {
namespace {

// Option fields named in library messages, and the flags that set them.
constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kFlagOfField{{
    {"TlsOptions::cert_file", "--tls-cert"},
    {"TlsOptions::key_file", "--tls-key"},
    {"TlsOptions::ca_file", "--tls-ca"},
    {"TlsOptions::server_name", "--tls-server-name"},
    {"allow_plain_tcp", "--plain-tcp"},
    {"MigrationSourceOptions::listen", "--listen"},
    {"MigrationSourceOptions::after_progress", "--after-progress"},
}};

}  // namespace

std::string with_flag_names(std::string_view message) {
  std::string text(message);
  for (const auto& [field, flag] : kFlagOfField) {
    for (size_t at = text.find(field); at != std::string::npos;
         at = text.find(field, at + flag.size())) {
      text.replace(at, field.size(), flag);
    }
  }
  return text;
}

}  // namespace faultline::cli
