#include "net/socket_address.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "support/temp_dir.h"

namespace faultline::net {
namespace {

using faultline::testing::TempDir;

void expect_rejected(const std::string& text, const std::string& problem) {
  auto parsed = parse_socket_address(text);
  ASSERT_FALSE(parsed) << text << " parsed";
  EXPECT_EQ(parsed.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find(problem), std::string::npos)
      << text << ": " << parsed.status().message();
}

TEST(SocketAddressTest, ParsesUnixPath) {
  auto parsed = parse_socket_address("unix:/run/pages.sock");
  ASSERT_TRUE(parsed) << parsed.status().to_string();
  EXPECT_EQ(parsed->kind, SocketAddress::Kind::kUnix);
  EXPECT_EQ(parsed->path, "/run/pages.sock");
  EXPECT_EQ(parsed->to_string(), "unix:/run/pages.sock");
}

TEST(SocketAddressTest, ParsesTcpNameIpv4AndBracketedIpv6) {
  for (const auto& [text, host, port] : {std::tuple{"tcp:localhost:80", "localhost", 80},
                                         {"tcp:10.0.0.1:65535", "10.0.0.1", 65535},
                                         {"tcp:[::1]:0", "::1", 0}}) {
    auto parsed = parse_socket_address(text);
    ASSERT_TRUE(parsed) << text << ": " << parsed.status().to_string();
    EXPECT_EQ(parsed->kind, SocketAddress::Kind::kTcp);
    EXPECT_EQ(parsed->host, host);
    EXPECT_EQ(parsed->port, port);
    EXPECT_EQ(parsed->to_string(), text);
  }
}

TEST(SocketAddressTest, RejectsMalformedAddressesNamingTheProblem) {
  expect_rejected("/run/pages.sock", "missing scheme");
  expect_rejected("udp:host:1", "missing scheme");
  expect_rejected("unix:", "path is empty");
  expect_rejected("unix:/" + std::string(200, 'a'), "at most 107");
  expect_rejected("tcp:localhost", "port is missing");
  expect_rejected("tcp:localhost:", "port is missing");
  expect_rejected("tcp:[::1]", "port is missing");
  expect_rejected("tcp:localhost:http", "not a decimal number");
  expect_rejected("tcp:localhost:-1", "not a decimal number");
  expect_rejected("tcp:localhost:65536", "larger than 65535");
  expect_rejected("tcp:localhost:99999999999999999999", "larger than 65535");
  expect_rejected("tcp::80", "host is empty");
  expect_rejected("tcp:::1:80", "brackets");
}

// Found by fuzz/socket_address.cc: the host went to getaddrinfo cut at the NUL.
TEST(SocketAddressTest, RejectsAHostWithANulByte) {
  using namespace std::string_literals;
  expect_rejected("tcp:locm\0\0\0\0\0\0\0alhost:7000"s, "NUL byte");
  expect_rejected("tcp:[::1\0evil]:7000"s, "NUL byte");
}

// Found by fuzz/socket_address.cc: "tcp:[[x]:1" gave host "[x", whose text form
// "tcp:[x:1" did not parse back.
TEST(SocketAddressTest, RejectsAHostWithBrackets) {
  expect_rejected("tcp:[[x]:1", "'[' or ']'");
  expect_rejected("tcp:x]:1", "'[' or ']'");
  expect_rejected("tcp:a[b:1", "'[' or ']'");
}

TEST(SocketAddressTest, UnixListenerReplacesAStaleSocketAndIsPrivate) {
  TempDir dir;
  auto address = parse_socket_address("unix:" + dir.file("s.sock"));
  ASSERT_TRUE(address);
  {  // a server that died without removing its socket file
    UniqueFd dead(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, address->path.c_str(), sizeof sa.sun_path - 1);
    ASSERT_EQ(::bind(dead.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa), 0);
  }
  auto listener = listen_socket(*address);
  ASSERT_TRUE(listener) << listener.status().to_string();
  struct stat st {};
  ASSERT_EQ(::stat(address->path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST(SocketAddressTest, AUnixListenerRemovesItsSocketFileButNotOneThatReplacedIt) {
  TempDir dir;
  auto address = parse_socket_address("unix:" + dir.file("s.sock"));
  ASSERT_TRUE(address);
  struct stat st {};
  { ASSERT_TRUE(listen_socket(*address)); }
  EXPECT_NE(::lstat(address->path.c_str(), &st), 0) << "its own socket file outlived it";

  {
    auto listener = listen_socket(*address);
    ASSERT_TRUE(listener) << listener.status().to_string();
    ASSERT_EQ(::unlink(address->path.c_str()), 0);
    testing::write_file(address->path, {});  // someone else's file now
  }
  EXPECT_EQ(::lstat(address->path.c_str(), &st), 0) << "it removed a file it did not create";
}

TEST(SocketAddressTest, UnixListenerRefusesToReplaceALiveSocketOrAnotherFile) {
  TempDir dir;
  auto live = parse_socket_address("unix:" + dir.file("live.sock"));
  auto listener = listen_socket(*live);
  ASSERT_TRUE(listener) << listener.status().to_string();
  auto second = listen_socket(*live);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(second.status().message().find("another server"), std::string::npos)
      << second.status().message();

  testing::write_file(dir.file("plain"), {});
  auto plain = listen_socket(*parse_socket_address("unix:" + dir.file("plain")));
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(plain.status().message().find("not a socket"), std::string::npos)
      << plain.status().message();
}

TEST(SocketAddressTest, TcpPortZeroReportsTheRealPort) {
  auto listener = listen_socket(*parse_socket_address("tcp:127.0.0.1:0"));
  ASSERT_TRUE(listener) << listener.status().to_string();
  EXPECT_NE(listener->address.port, 0);
  auto connected = connect_socket(listener->address, std::chrono::milliseconds(2000));
  EXPECT_TRUE(connected) << connected.status().to_string();
}

TEST(SocketAddressTest, LoopbackOnlyKnowsLoopbackFromWildcard) {
  EXPECT_TRUE(is_loopback_only(*parse_socket_address("unix:/x")));
  EXPECT_TRUE(is_loopback_only(*parse_socket_address("tcp:127.0.0.1:1")));
  EXPECT_TRUE(is_loopback_only(*parse_socket_address("tcp:[::1]:1")));
  EXPECT_FALSE(is_loopback_only(*parse_socket_address("tcp:0.0.0.0:1")));
  EXPECT_FALSE(is_loopback_only(*parse_socket_address("tcp:[::]:1")));
}

}  // namespace
}  // namespace faultline::net
