// Socket address parsing ("unix:PATH", "tcp:HOST:PORT"): what serve-pages and
// the socket source accept. An accepted address is usable as is (a Unix path
// that fits sockaddr_un with its NUL, a non-empty host with nothing the
// resolver would cut short) and its canonical text parses back to the same
// address. A rejected one is an InvalidArgument with a message.
#include "net/socket_address.h"

#include <sys/un.h>

#include <string_view>

#include "fuzz_check.h"

using namespace faultline;
using net::SocketAddress;

namespace {

bool same(const SocketAddress& a, const SocketAddress& b) {
  return a.kind == b.kind && a.path == b.path && a.host == b.host && a.port == b.port;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = net::parse_socket_address(text);
  if (!parsed) {
    FUZZ_CHECK(parsed.status().code() == ErrorCode::kInvalidArgument);
    FUZZ_CHECK(!parsed.status().message().empty());
    return 0;
  }
  if (parsed->kind == SocketAddress::Kind::kUnix) {
    FUZZ_CHECK(!parsed->path.empty());
    FUZZ_CHECK(parsed->path.size() < sizeof(sockaddr_un::sun_path));
    FUZZ_CHECK(parsed->path.find('\0') == std::string::npos);
    FUZZ_CHECK(parsed->host.empty() && parsed->port == 0);
  } else {
    FUZZ_CHECK(!parsed->host.empty());
    FUZZ_CHECK(parsed->host.find('\0') == std::string::npos);
    FUZZ_CHECK(parsed->path.empty());
  }
  const std::string canonical = parsed->to_string();
  auto reparsed = net::parse_socket_address(canonical);
  FUZZ_CHECK(reparsed.is_ok());
  FUZZ_CHECK(same(*parsed, *reparsed));
  FUZZ_CHECK(reparsed->to_string() == canonical);
  return 0;
}
