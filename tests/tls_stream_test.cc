#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <string>
#include <vector>

#include "net/socket_address.h"
#include "net/tls.h"
#include "support/temp_dir.h"
#include "support/test_certs.h"

namespace faultline::net {
namespace {

using namespace std::chrono_literals;
using faultline::testing::TempDir;
using faultline::testing::TestCerts;

// Long enough never to pass on a loaded machine; only failures wait for it.
constexpr auto kPatience = 10s;

void expect_mentions(const Status& status, const std::string& text) {
  EXPECT_NE(status.message().find(text), std::string::npos)
      << "\"" << text << "\" not in: " << status.to_string();
}

std::span<const std::byte> bytes_of(const std::string& text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

// Byte `offset` of the stream numbered `seed`: every offset different, so a
// lost, repeated or reordered chunk shows.
uint64_t pattern_word(uint64_t seed, uint64_t word) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + word * 0xBF58476D1CE4E5B9ull + 1;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 29);
}

void fill_pattern(std::span<std::byte> out, uint64_t seed, uint64_t offset) {
  size_t i = 0;
  while (i < out.size()) {
    const uint64_t position = offset + i;
    const uint64_t word = pattern_word(seed, position / 8);
    const size_t skip = position % 8;
    const size_t n = std::min(out.size() - i, 8 - skip);
    std::memcpy(out.data() + i, reinterpret_cast<const std::byte*>(&word) + skip, n);
    i += n;
  }
}

// Chunk sizes that vary, so records and reads rarely line up.
size_t chunk_size(size_t index, size_t salt) {
  return 1 + (index * 7919 + salt) % 131072;
}

Status send_pattern(Stream& stream, uint64_t seed, uint64_t total) {
  std::vector<std::byte> chunk;
  uint64_t offset = 0;
  for (size_t index = 0; offset < total; ++index) {
    chunk.resize(std::min<uint64_t>(chunk_size(index, 17), total - offset));
    fill_pattern(chunk, seed, offset);
    if (Status status = stream.write_full(chunk, deadline_after(kPatience)); !status) {
      return status;
    }
    offset += chunk.size();
  }
  return Status::ok();
}

Status receive_pattern(Stream& stream, uint64_t seed, uint64_t total) {
  std::vector<std::byte> chunk;
  std::vector<std::byte> expected;
  uint64_t offset = 0;
  for (size_t index = 0; offset < total; ++index) {
    chunk.resize(std::min<uint64_t>(chunk_size(index, 4242), total - offset));
    if (Status status = stream.read_full(chunk, deadline_after(kPatience)); !status) {
      return status;
    }
    expected.resize(chunk.size());
    fill_pattern(expected, seed, offset);
    if (std::memcmp(chunk.data(), expected.data(), chunk.size()) != 0) {
      return {ErrorCode::kProtocol,
              "bytes differ in the chunk at offset " + std::to_string(offset)};
    }
    offset += chunk.size();
  }
  return Status::ok();
}

struct Handshake {
  Result<std::unique_ptr<Stream>> server;
  Result<std::unique_ptr<Stream>> client;
};

struct Connection {
  std::unique_ptr<Stream> server;
  std::unique_ptr<Stream> client;
};

class TlsStreamTest : public ::testing::Test {
 protected:
  TlsStreamTest() {
    auto address = parse_socket_address("tcp:127.0.0.1:0");
    auto listening = listen_socket(*address);
    EXPECT_TRUE(listening) << listening.status().to_string();
    if (listening) listener_ = std::move(*listening);
  }

  TlsOptions server_options() const {
    return {.cert_file = certs_.server_cert, .key_file = certs_.server_key};
  }
  TlsOptions client_options() const { return {.ca_file = certs_.ca_cert}; }
  TlsOptions mutual_server_options() const {
    TlsOptions options = server_options();
    options.ca_file = certs_.ca_cert;
    return options;
  }

  UniqueFd accept_one() {
    pollfd pfd{listener_.fd.get(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(std::chrono::milliseconds(kPatience).count())) != 1) {
      ADD_FAILURE() << "nobody connected";
      return UniqueFd();
    }
    UniqueFd fd(::accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(fd) << "accept: " << std::strerror(errno);
    return fd;
  }

  UniqueFd connect_one() {
    auto fd = connect_socket(listener_.address, kPatience);
    EXPECT_TRUE(fd) << fd.status().to_string();
    return fd ? std::move(*fd) : UniqueFd();
  }

  // Both ends of a handshake, each with its own outcome.
  Handshake handshake(const TlsOptions& server_options, const TlsOptions& client_options,
                      const std::string& host = "127.0.0.1") {
    auto server = TlsContext::server(server_options);
    auto client = TlsContext::client(client_options);
    if (!server) return {server.status(), server.status()};
    if (!client) return {client.status(), client.status()};
    auto accepted = std::async(std::launch::async, [&] {
      return (*server)->accept(accept_one(), deadline_after(kPatience));
    });
    auto connected = (*client)->connect(connect_one(), host, deadline_after(kPatience));
    return {accepted.get(), std::move(connected)};
  }

  // A connection both ends established; fails the test when either did not.
  Connection connect(const TlsOptions& server_options, const TlsOptions& client_options,
                     const std::string& host = "127.0.0.1") {
    Handshake both = handshake(server_options, client_options, host);
    EXPECT_TRUE(both.server) << both.server.status().to_string();
    EXPECT_TRUE(both.client) << both.client.status().to_string();
    if (!both.server || !both.client) return {};
    return {std::move(*both.server), std::move(*both.client)};
  }

  TempDir dir_;
  TestCerts certs_ = faultline::testing::make_test_certs(dir_.path());
  Listener listener_;
};

// A client whose handshake "succeeded" may only learn at its first read that
// the server refused it (TLS 1.3 sends the verdict on a client certificate
// after the client finished): either way it gets an error, not a wait.
Status first_read_of(Result<std::unique_ptr<Stream>>& client) {
  if (!client) return client.status();
  std::byte byte[1];
  return (*client)->read_full(byte, deadline_after(kPatience));
}

TEST_F(TlsStreamTest, HandshakeSucceedsAndBytesRoundTripBothWays) {
  Connection c = connect(server_options(), client_options());
  ASSERT_TRUE(c.server && c.client);

  const std::string request = "page 0x80000000 please";
  const std::string reply = "here it is";
  ASSERT_TRUE(c.client->write_full(bytes_of(request), deadline_after(kPatience)));
  std::string received(request.size(), '\0');
  ASSERT_TRUE(
      c.server->read_full(std::as_writable_bytes(std::span(received)), deadline_after(kPatience)));
  ASSERT_TRUE(c.server->write_full(bytes_of(reply), deadline_after(kPatience)));
  std::string answered(reply.size(), '\0');
  ASSERT_TRUE(
      c.client->read_full(std::as_writable_bytes(std::span(answered)), deadline_after(kPatience)));

  EXPECT_EQ(received, request);
  EXPECT_EQ(answered, reply);
}

TEST_F(TlsStreamTest, CarriesSixtyFourMiBEachWayAtOnceEveryByteIntact) {
  constexpr uint64_t kClientToServer = 64ull << 20;
  constexpr uint64_t kServerToClient = 64ull << 20;
  Connection c = connect(server_options(), client_options());
  ASSERT_TRUE(c.server && c.client);

  // One reader and one writer thread on each end, all four at once.
  auto client_writes =
      std::async(std::launch::async, [&] { return send_pattern(*c.client, 1, kClientToServer); });
  auto server_reads = std::async(std::launch::async,
                                 [&] { return receive_pattern(*c.server, 1, kClientToServer); });
  auto server_writes =
      std::async(std::launch::async, [&] { return send_pattern(*c.server, 2, kServerToClient); });
  auto client_reads = std::async(std::launch::async,
                                 [&] { return receive_pattern(*c.client, 2, kServerToClient); });

  EXPECT_TRUE(client_writes.get()) << "client writer";
  EXPECT_TRUE(server_reads.get()) << "server reader";
  EXPECT_TRUE(server_writes.get()) << "server writer";
  EXPECT_TRUE(client_reads.get()) << "client reader";
}

TEST_F(TlsStreamTest, DescribeNamesThePeerTheTlsVersionAndThePeerCertificate) {
  Connection c = connect(
      mutual_server_options(),
      {.cert_file = certs_.client_cert, .key_file = certs_.client_key, .ca_file = certs_.ca_cert});
  ASSERT_TRUE(c.server && c.client);

  EXPECT_NE(c.client->describe().find("127.0.0.1:" + std::to_string(listener_.address.port)),
            std::string::npos)
      << c.client->describe();
  EXPECT_NE(c.client->describe().find("(TLSv1.3, peer CN=faultline-test-server)"),
            std::string::npos)
      << c.client->describe();
  EXPECT_NE(c.server->describe().find("(TLSv1.3, peer CN=faultline-test-client)"),
            std::string::npos)
      << c.server->describe();
}

TEST_F(TlsStreamTest, MutualServerAcceptsAClientCertificateItsCaSigned) {
  auto server = TlsContext::server(mutual_server_options());
  auto client = TlsContext::client(
      {.cert_file = certs_.client_cert, .key_file = certs_.client_key, .ca_file = certs_.ca_cert});
  ASSERT_TRUE(server && client);
  EXPECT_TRUE((*server)->mutual());
  EXPECT_TRUE((*client)->mutual());

  Connection c = connect(
      mutual_server_options(),
      {.cert_file = certs_.client_cert, .key_file = certs_.client_key, .ca_file = certs_.ca_cert});
  ASSERT_TRUE(c.server && c.client);
  ASSERT_TRUE(c.client->write_full(bytes_of("hello"), deadline_after(kPatience)));
  std::byte received[5];
  EXPECT_TRUE(c.server->read_full(received, deadline_after(kPatience)));
}

TEST_F(TlsStreamTest, MutualServerRefusesAClientWithoutACertificate) {
  Handshake both = handshake(mutual_server_options(), client_options());

  ASSERT_FALSE(both.server);
  EXPECT_EQ(both.server.status().code(), ErrorCode::kProtocol);
  expect_mentions(both.server.status(), "TLS handshake with 127.0.0.1:");
  expect_mentions(both.server.status(), "peer did not return a certificate");
  Status client = first_read_of(both.client);
  EXPECT_FALSE(client);
  EXPECT_NE(client.code(), ErrorCode::kTimeout) << client.to_string();
}

TEST_F(TlsStreamTest, MutualServerRefusesAClientCertificateFromAnotherCa) {
  Handshake both = handshake(
      mutual_server_options(),
      {.cert_file = certs_.other_cert, .key_file = certs_.other_key, .ca_file = certs_.ca_cert});

  ASSERT_FALSE(both.server);
  expect_mentions(both.server.status(), "certificate verify failed");
  expect_mentions(both.server.status(), "unable to get local issuer certificate");
  Status client = first_read_of(both.client);
  EXPECT_FALSE(client);
  EXPECT_NE(client.code(), ErrorCode::kTimeout) << client.to_string();
}

TEST_F(TlsStreamTest, ClientTrustingAnotherCaRefusesTheServer) {
  Handshake both = handshake(server_options(), {.ca_file = certs_.other_ca_cert});

  ASSERT_FALSE(both.client);
  EXPECT_EQ(both.client.status().code(), ErrorCode::kProtocol);
  expect_mentions(
      both.client.status(),
      "TLS handshake with 127.0.0.1:" + std::to_string(listener_.address.port) +
          " failed: certificate verify failed (unable to get local issuer certificate)");
  ASSERT_FALSE(both.server);
  EXPECT_NE(both.server.status().code(), ErrorCode::kTimeout) << both.server.status().to_string();
}

TEST_F(TlsStreamTest, ClientRefusesAServerCertificateForAnotherName) {
  TlsOptions client = client_options();
  client.server_name = "wrong.example";

  Handshake both = handshake(server_options(), client);

  ASSERT_FALSE(both.client);
  expect_mentions(both.client.status(), "certificate verify failed");
  expect_mentions(both.client.status(), "hostname mismatch");
  expect_mentions(both.client.status(), "wrong.example");
  EXPECT_FALSE(both.server);
}

TEST_F(TlsStreamTest, ClientVerifiesTheServerByDnsNameWhenGivenOne) {
  TlsOptions client = client_options();
  client.server_name = "localhost";

  Handshake both = handshake(server_options(), client);

  EXPECT_TRUE(both.client) << both.client.status().to_string();
  EXPECT_TRUE(both.server) << both.server.status().to_string();
}

TEST_F(TlsStreamTest, ServerGivesAPlainClientSendingGarbageAnErrorNotAWait) {
  auto server = TlsContext::server(server_options());
  ASSERT_TRUE(server);
  auto accepted = std::async(std::launch::async, [&] {
    return (*server)->accept(accept_one(), deadline_after(kPatience));
  });
  UniqueFd plain = connect_one();
  ASSERT_TRUE(write_full(plain.get(), bytes_of("GET / HTTP/1.1\r\nHost: pages\r\n\r\n"),
                         deadline_after(kPatience)));

  auto refused = accepted.get();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.status().code(), ErrorCode::kProtocol);
  expect_mentions(refused.status(), "TLS handshake with 127.0.0.1:");
  std::byte answer[4096];
  Status plain_read = read_full(plain.get(), answer, deadline_after(kPatience));
  EXPECT_NE(plain_read.code(), ErrorCode::kTimeout) << plain_read.to_string();
}

TEST_F(TlsStreamTest, ClientHandshakeTimesOutOnAServerThatNeverAnswers) {
  auto client = TlsContext::client(client_options());
  ASSERT_TRUE(client);
  UniqueFd socket = connect_one();
  UniqueFd silent = accept_one();

  auto connected = (*client)->connect(std::move(socket), "127.0.0.1", deadline_after(100ms));

  ASSERT_FALSE(connected);
  EXPECT_EQ(connected.status().code(), ErrorCode::kTimeout);
  expect_mentions(connected.status(), "TLS handshake with 127.0.0.1:");
}

TEST_F(TlsStreamTest, ReadTimesOutAtItsDeadlineAndLosesNothing) {
  Connection c = connect(server_options(), client_options());
  ASSERT_TRUE(c.server && c.client);
  std::byte received[4];

  const Deadline deadline = deadline_after(100ms);
  Status status = c.client->read_full(received, deadline);
  EXPECT_EQ(status.code(), ErrorCode::kTimeout) << status.to_string();
  EXPECT_GE(Clock::now(), deadline);

  ASSERT_TRUE(c.server->write_full(bytes_of("late"), deadline_after(kPatience)));
  ASSERT_TRUE(c.client->read_full(received, deadline_after(kPatience)));
  EXPECT_EQ(std::memcmp(received, "late", 4), 0);
}

TEST_F(TlsStreamTest, ShutdownFromAnotherThreadWakesABlockedRead) {
  Connection c = connect(server_options(), client_options());
  ASSERT_TRUE(c.server && c.client);
  auto blocked = std::async(std::launch::async, [&] {
    std::byte byte[1];
    return c.server->read_full(byte, kNoDeadline);
  });
  ASSERT_EQ(blocked.wait_for(50ms), std::future_status::timeout) << "read returned early";

  c.server->shutdown();

  const bool woke = blocked.wait_for(kPatience) == std::future_status::ready;
  if (!woke) c.client.reset();  // ends the read some other way, so the test can end
  ASSERT_TRUE(woke);
  Status status = blocked.get();
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable) << status.to_string();
  expect_mentions(status, "shut down");
}

TEST_F(TlsStreamTest, ReadReportsThePeerClosingAsUnavailable) {
  Connection c = connect(server_options(), client_options());
  ASSERT_TRUE(c.server && c.client);

  c.client.reset();

  std::byte received[8];
  Status status = c.server->read_full(received, deadline_after(kPatience));
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable) << status.to_string();
  expect_mentions(status, "peer closed the connection after 0 of 8 bytes received");
}

TEST_F(TlsStreamTest, WritingToAPeerThatWentAwayFailsWithoutSigpipe) {
  Connection c = connect(server_options(), client_options());
  ASSERT_TRUE(c.server && c.client);

  c.client.reset();

  const std::vector<std::byte> chunk(1 << 20);
  Status status;
  for (int i = 0; i < 64 && status; ++i)
    status = c.server->write_full(chunk, deadline_after(kPatience));
  EXPECT_EQ(status.code(), ErrorCode::kUnavailable) << status.to_string();
}

TEST_F(TlsStreamTest, ServerContextNamesAMissingCertificateFile) {
  TlsOptions options = server_options();
  options.cert_file = dir_.file("missing.pem");

  auto server = TlsContext::server(options);

  ASSERT_FALSE(server);
  EXPECT_EQ(server.status().code(), ErrorCode::kInvalidArgument);
  expect_mentions(server.status(), dir_.file("missing.pem") + ": No such file or directory");
}

TEST_F(TlsStreamTest, ContextNamesACertificateFileThatHoldsNoCertificate) {
  const std::string garbage = dir_.file("garbage.pem");
  faultline::testing::write_file(garbage, bytes_of("not a certificate\n"));

  auto server = TlsContext::server({.cert_file = garbage, .key_file = certs_.server_key});
  auto client = TlsContext::client({.ca_file = garbage});

  ASSERT_FALSE(server);
  expect_mentions(server.status(), "TLS certificate file " + garbage + ": ");
  ASSERT_FALSE(client);
  expect_mentions(client.status(), "TLS CA file " + garbage + ": ");
}

TEST_F(TlsStreamTest, ServerContextRefusesAKeyThatIsNotItsCertificates) {
  auto server =
      TlsContext::server({.cert_file = certs_.server_cert, .key_file = certs_.client_key});

  ASSERT_FALSE(server);
  EXPECT_EQ(server.status().code(), ErrorCode::kInvalidArgument);
  expect_mentions(server.status(), "the TLS key file " + certs_.client_key +
                                       " does not match the certificate in " + certs_.server_cert);
}

TEST_F(TlsStreamTest, ContextsRefuseIncompleteOptions) {
  auto server = TlsContext::server({.ca_file = certs_.ca_cert});
  auto client =
      TlsContext::client({.cert_file = certs_.client_cert, .key_file = certs_.client_key});
  auto half = TlsContext::client({.cert_file = certs_.client_cert, .ca_file = certs_.ca_cert});

  // Refused as invalid arguments, naming the option fields (the CLI turns
  // them into its flags).
  ASSERT_FALSE(server);
  EXPECT_EQ(server.status().code(), ErrorCode::kInvalidArgument);
  expect_mentions(server.status(),
                  "a TLS server needs TlsOptions::cert_file and TlsOptions::key_file");
  ASSERT_FALSE(client);
  EXPECT_EQ(client.status().code(), ErrorCode::kInvalidArgument);
  expect_mentions(client.status(), "a TLS client needs TlsOptions::ca_file");
  ASSERT_FALSE(half);
  EXPECT_EQ(half.status().code(), ErrorCode::kInvalidArgument);
  expect_mentions(half.status(), "give both or neither");
}

}  // namespace
}  // namespace faultline::net
