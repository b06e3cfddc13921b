// The v2 page protocol end to end: a real PageServer, a NetworkPageSource, and
// for push a real userfaultfd FaultServer. Faults are injected by a proxy
// between them: connections cut, bytes corrupted, replies delayed.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "faultline/fault_server.h"
#include "faultline/network_page_source.h"
#include "net/socket_io.h"
#include "protocol/frames.h"
#include "support/fault_proxy.h"
#include "support/guest_memory.h"
#include "support/raw_server.h"
#include "support/served_image.h"
#include "support/test_certs.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;
using testing::Direction;
using testing::FaultProxy;
using testing::ServedImage;
using testing::Transport;
constexpr uint64_t kPage = ServedImage::kPageSize;

NetworkSourceOptions plain_options() {
  NetworkSourceOptions options;
  options.allow_plain_tcp = true;
  options.reconnect_for = 10s;
  return options;
}

class NetworkSourceTest : public ::testing::TestWithParam<Transport> {
 protected:
  void Serve(uint64_t pages, PageServerOptions options = {}) {
    served_ = testing::serve_image(dir_, testing::listen_address(GetParam(), dir_), pages,
                                   std::move(options));
    ASSERT_TRUE(served_.server);
  }

  std::string ProxyAddress() const {
    return GetParam() == Transport::kUnix ? "unix:" + dir_.file("proxy.sock") : "tcp:127.0.0.1:0";
  }

  std::unique_ptr<NetworkPageSource> Connect(const std::string& address,
                                             NetworkSourceOptions options = plain_options()) {
    auto source = NetworkPageSource::connect(address, std::move(options));
    EXPECT_TRUE(source.is_ok()) << source.status().to_string();
    return source.is_ok() ? std::move(source).value() : nullptr;
  }

  // Fetches [first, first + count) pages and checks every byte.
  void FetchAndCheck(NetworkPageSource& source, uint64_t first, uint64_t count) {
    std::vector<std::byte> buf(count * kPage, std::byte{0xee});
    auto kind = source.fetch(served_.page_gpa(first), buf);
    ASSERT_TRUE(kind.is_ok()) << kind.status().to_string();
    auto expected = served_.expected(served_.page_gpa(first), buf.size());
    if (*kind == PageKind::kZero) {
      EXPECT_TRUE(std::all_of(expected.begin(), expected.end(),
                              [](std::byte b) { return b == std::byte{0}; }))
          << "pages " << first << "+" << count << " reported zero";
    } else {
      EXPECT_TRUE(std::equal(buf.begin(), buf.end(), expected.begin()))
          << "pages " << first << "+" << count;
    }
  }

  // Guest memory served by a fault server whose pages come from a pushing source.
  struct PushedGuest {
    std::unique_ptr<testing::GuestMemory> memory;
    NetworkPageSource* source = nullptr;  // owned by the pager
    std::unique_ptr<FaultServer> server;
    std::unique_ptr<NetworkPageSource::Push> push;  // destroyed before the server
  };

  void StartPushedGuest(const std::string& address, PushedGuest& guest) {
    NetworkSourceOptions options = plain_options();
    options.push = true;
    auto connected = Connect(address, options);
    ASSERT_TRUE(connected);
    NetworkPageSource* source = connected.get();
    guest.memory = std::make_unique<testing::GuestMemory>(served_.pages() * kPage);
    auto pager = Pager::create(std::move(connected));
    ASSERT_TRUE(pager->register_region(ServedImage::kRamStart, guest.memory->size()).is_ok());
    auto server = FaultServer::create(pager);
    ASSERT_TRUE(server.is_ok()) << server.status().to_string();
    guest.server = std::move(*server);
    guest.source = source;
    ASSERT_TRUE(
        guest.server
            ->map({ServedImage::kRamStart, guest.memory->data(), guest.memory->size(), kPage})
            .is_ok());
    ASSERT_TRUE(guest.server->start().is_ok());
    auto push = source->start_push(*guest.server);
    ASSERT_TRUE(push.is_ok());
    guest.push = std::move(push).value();
  }

  // Many threads, random ranges, every byte checked.
  void FetchRandomly(NetworkPageSource& source, int threads, int per_thread) {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        std::mt19937_64 rng(static_cast<uint64_t>(t) + 7);
        for (int i = 0; i < per_thread; ++i) {
          const uint64_t count = 1 + rng() % 16;
          const uint64_t first = rng() % (served_.pages() - count);
          FetchAndCheck(source, first, count);
        }
      });
    }
    for (auto& w : workers) w.join();
  }

  testing::TempDir dir_;
  ServedImage served_;
};

TEST_P(NetworkSourceTest, LearnsTheImageInTheHandshake) {
  Serve(256);
  auto source = Connect(served_.server->address());
  ASSERT_TRUE(source);
  EXPECT_EQ(source->image().ram_start, ServedImage::kRamStart);
  EXPECT_EQ(source->image().size, 256 * kPage);
  EXPECT_EQ(source->image().page_size, kPage);
}

TEST_P(NetworkSourceTest, ServesRangesToManyThreadsOverOneConnection) {
  Serve(4096);
  auto source = Connect(served_.server->address());
  ASSERT_TRUE(source);
  FetchRandomly(*source, 8, 200);
  EXPECT_EQ(served_.server->stats().v2_sessions, 1u);
  EXPECT_EQ(source->stats().corrupt, 0u);
}

TEST_P(NetworkSourceTest, SendsZeroPagesAsAFlag) {
  Serve(64);  // every 5th page is zero
  auto source = Connect(served_.server->address());
  ASSERT_TRUE(source);
  std::vector<std::byte> buf(kPage, std::byte{0xee});
  uint64_t zero_page = 0;
  while (!served_.is_zero_page(zero_page)) ++zero_page;
  auto kind = source->fetch(served_.page_gpa(zero_page), buf);
  ASSERT_TRUE(kind.is_ok()) << kind.status().to_string();
  EXPECT_EQ(*kind, PageKind::kZero);
  EXPECT_EQ(source->stats().zero_bytes, kPage);
  EXPECT_EQ(source->stats().wire_bytes, 0u);
}

TEST_P(NetworkSourceTest, CompressesWithLz4AndZstd) {
  for (const Compression compression : {Compression::kLz4, Compression::kZstd}) {
    PageServerOptions options;
    options.compression = compression;
    Serve(1024, options);
    NetworkSourceOptions client = plain_options();
    client.compression = compression;
    auto source = Connect(served_.server->address(), client);
    ASSERT_TRUE(source);
    FetchRandomly(*source, 4, 100);
    const auto stats = source->stats();
    EXPECT_LT(stats.wire_bytes, stats.requested_bytes - stats.zero_bytes)
        << compression_name(compression);
    served_.server.reset();
  }
}

TEST_P(NetworkSourceTest, ARequestOutsideTheImageIsAPermanentError) {
  Serve(16);
  auto source = Connect(served_.server->address());
  ASSERT_TRUE(source);
  std::vector<std::byte> buf(kPage);
  auto kind = source->fetch(served_.page_gpa(16), buf);
  ASSERT_FALSE(kind.is_ok());
  EXPECT_EQ(kind.status().code(), ErrorCode::kOutOfRange) << kind.status().to_string();
  FetchAndCheck(*source, 15, 1);  // and the connection still works
}

TEST_P(NetworkSourceTest, RecoversFromACutConnectionWithoutFailingAFetch) {
  Serve(2048);
  auto proxy = FaultProxy::start(ProxyAddress(), served_.server->address());
  ASSERT_TRUE(proxy.is_ok()) << proxy.status().to_string();
  // The first connection dies in the middle of the replies, twice more later.
  (*proxy)->cut_after(Direction::kToClient, 300'000, 3);
  auto source = Connect((*proxy)->address());
  ASSERT_TRUE(source);
  FetchRandomly(*source, 4, 150);
  EXPECT_GE(source->stats().reconnects, 3u);
  EXPECT_GE((*proxy)->counters().cuts, 3u);
}

TEST_P(NetworkSourceTest, RefetchesRangesThatArriveCorrupted) {
  Serve(1024);
  auto proxy = FaultProxy::start(ProxyAddress(), served_.server->address());
  ASSERT_TRUE(proxy.is_ok()) << proxy.status().to_string();
  // One bit flipped now and then in the payloads (headers too, sometimes):
  // either the checksum or the framing catches it, never the guest.
  (*proxy)->corrupt_randomly(Direction::kToClient, 0.02, 42);
  auto source = Connect((*proxy)->address());
  ASSERT_TRUE(source);
  FetchRandomly(*source, 4, 150);
  const auto stats = source->stats();
  EXPECT_GT(stats.corrupt + stats.reconnects, 0u);
  EXPECT_GT((*proxy)->counters().corrupted_bytes, 0u);
}

TEST_P(NetworkSourceTest, SlowRepliesAreWaitedFor) {
  Serve(64);
  auto proxy = FaultProxy::start(ProxyAddress(), served_.server->address());
  ASSERT_TRUE(proxy.is_ok()) << proxy.status().to_string();
  auto source = Connect((*proxy)->address());
  ASSERT_TRUE(source);
  constexpr auto kDelay = 50ms;
  (*proxy)->set_delay(Direction::kToClient, kDelay);
  const uint64_t forwarded = (*proxy)->counters().bytes_to_client;
  // Every reply is held back, so no fetch can end before one delay has passed,
  // and the bytes still arrive right (FetchAndCheck compares them).
  auto started = std::chrono::steady_clock::now();
  FetchAndCheck(*source, 3, 1);
  EXPECT_GE(std::chrono::steady_clock::now() - started, kDelay);
  started = std::chrono::steady_clock::now();
  FetchRandomly(*source, 2, 5);
  EXPECT_GE(std::chrono::steady_clock::now() - started, kDelay);
  EXPECT_GT((*proxy)->counters().bytes_to_client, forwarded) << "the replies passed the proxy";
}

TEST_P(NetworkSourceTest, GivesUpWithAClearErrorWhenTheServerStaysAway) {
  Serve(64);
  NetworkSourceOptions options = plain_options();
  options.reconnect_for = 300ms;
  auto source = Connect(served_.server->address(), options);
  ASSERT_TRUE(source);
  served_.server.reset();
  std::vector<std::byte> buf(kPage);
  auto kind = source->fetch(served_.page_gpa(1), buf);
  ASSERT_FALSE(kind.is_ok());
  EXPECT_EQ(kind.status().code(), ErrorCode::kUnavailable) << kind.status().to_string();
  EXPECT_NE(kind.status().message().find("no connection"), std::string::npos)
      << kind.status().to_string();
}

TEST_P(NetworkSourceTest, RefusesAServerThatSpeaksGarbage) {
  testing::RawServer garbage(testing::listen_address(GetParam(), dir_), [](int fd) {
    // Reads the client's opening (magic + HELLO), answers junk, and stays
    // until the client hangs up: closing with unread bytes would reset the
    // connection and the client might see that instead of the junk.
    std::array<std::byte, 8 + 8 + 12> opening;
    (void)net::read_full(fd, opening, net::deadline_after(5s));
    std::array<std::byte, 64> junk;
    junk.fill(std::byte{0x42});
    (void)net::write_full(fd, junk, net::deadline_after(1s));
    std::array<std::byte, 1> rest;
    (void)net::read_full(fd, rest, net::deadline_after(5s));
  });
  auto source = NetworkPageSource::connect(garbage.address(), plain_options());
  ASSERT_FALSE(source.is_ok());
  EXPECT_EQ(source.status().code(), ErrorCode::kProtocol) << source.status().to_string();
}

TEST_P(NetworkSourceTest, TheServerDropsAGarbageClientAndServesOthers) {
  Serve(64);
  auto address = net::parse_socket_address(served_.server->address());
  ASSERT_TRUE(address.is_ok());
  auto fd = net::connect_socket(*address, 1s);
  ASSERT_TRUE(fd.is_ok());
  std::vector<std::byte> junk(v2::kMagic.begin(), v2::kMagic.end());
  junk.resize(64, std::byte{0xff});
  ASSERT_TRUE(net::write_full(fd->get(), junk, net::deadline_after(1s)).is_ok());
  std::array<std::byte, 1> one;
  // The server hangs up on it (whatever it read first).
  Status read = net::read_full(fd->get(), one, net::deadline_after(5s));
  EXPECT_EQ(read.code(), ErrorCode::kUnavailable) << read.to_string();
  auto source = Connect(served_.server->address());
  ASSERT_TRUE(source);
  FetchAndCheck(*source, 3, 2);
}

TEST(NetworkSourcePolicyTest, RefusesPlainTcpUnlessAskedFor) {
  testing::TempDir dir;
  ServedImage served = testing::serve_image(dir, "tcp:127.0.0.1:0", 16);
  ASSERT_TRUE(served.server);
  auto source = NetworkPageSource::connect(served.server->address(), NetworkSourceOptions{});
  ASSERT_FALSE(source.is_ok());
  EXPECT_EQ(source.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(source.status().message().find("plain TCP"), std::string::npos)
      << source.status().to_string();
  // The library names option fields, never a CLI flag.
  EXPECT_EQ(source.status().message().find("--"), std::string::npos) << source.status().to_string();
}

// TLS: the same protocol inside TLS 1.3, the server verified by the client's
// CA, and with mutual authentication the client verified by the server's.
class NetworkSourceTlsTest : public ::testing::Test {
 protected:
  void SetUp() override { certs_ = testing::make_test_certs(dir_.path()); }

  ServedImage ServeTls(bool mutual) {
    PageServerOptions options;
    options.tls.cert_file = certs_.server_cert;
    options.tls.key_file = certs_.server_key;
    if (mutual) options.tls.ca_file = certs_.ca_cert;
    options.compression = Compression::kLz4;
    return testing::serve_image(dir_, "tcp:127.0.0.1:0", 512, options);
  }

  NetworkSourceOptions TlsClient(bool with_client_cert) {
    NetworkSourceOptions options;
    options.tls.ca_file = certs_.ca_cert;
    if (with_client_cert) {
      options.tls.cert_file = certs_.client_cert;
      options.tls.key_file = certs_.client_key;
    }
    options.compression = Compression::kLz4;
    options.reconnect_for = 500ms;
    return options;
  }

  testing::TempDir dir_;
  testing::TestCerts certs_;
};

void FetchEverything(const ServedImage& served, NetworkPageSource& source) {
  std::vector<std::byte> buf(64 * kPage);
  for (uint64_t first = 0; first < served.pages(); first += 64) {
    auto kind = source.fetch(served.page_gpa(first), buf);
    ASSERT_TRUE(kind.is_ok()) << kind.status().to_string();
    auto expected = served.expected(served.page_gpa(first), buf.size());
    if (*kind == PageKind::kData) {
      ASSERT_TRUE(std::equal(buf.begin(), buf.end(), expected.begin())) << "page " << first;
    }
  }
}

TEST_F(NetworkSourceTlsTest, ServesPagesInsideTls) {
  ServedImage served = ServeTls(false);
  ASSERT_TRUE(served.server);
  auto source = NetworkPageSource::connect(served.server->address(), TlsClient(false));
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  FetchEverything(served, **source);
}

TEST_F(NetworkSourceTlsTest, MutualAuthenticationServesAClientWithACertificate) {
  ServedImage served = ServeTls(true);
  ASSERT_TRUE(served.server);
  auto source = NetworkPageSource::connect(served.server->address(), TlsClient(true));
  ASSERT_TRUE(source.is_ok()) << source.status().to_string();
  FetchEverything(served, **source);
}

TEST_F(NetworkSourceTlsTest, MutualAuthenticationRefusesAClientWithoutOne) {
  ServedImage served = ServeTls(true);
  ASSERT_TRUE(served.server);
  auto source = NetworkPageSource::connect(served.server->address(), TlsClient(false));
  EXPECT_FALSE(source.is_ok());
}

TEST_F(NetworkSourceTlsTest, AClientTrustingAnotherCaRefusesTheServer) {
  ServedImage served = ServeTls(false);
  ASSERT_TRUE(served.server);
  NetworkSourceOptions options = TlsClient(false);
  options.tls.ca_file = certs_.other_ca_cert;
  auto source = NetworkPageSource::connect(served.server->address(), options);
  ASSERT_FALSE(source.is_ok());
  EXPECT_NE(source.status().message().find("verify"), std::string::npos)
      << source.status().to_string();
}

TEST_F(NetworkSourceTlsTest, APlainClientGetsNothingFromATlsServer) {
  ServedImage served = ServeTls(false);
  ASSERT_TRUE(served.server);
  auto source = NetworkPageSource::connect(served.server->address(), plain_options());
  EXPECT_FALSE(source.is_ok());
}

// Push: the server streams every page into the fault server while threads
// fault; demand faults are answered first and nothing is asked for twice.
TEST_P(NetworkSourceTest, PushMakesEverythingResidentWhileFaultsAreServed) {
  PageServerOptions server_options;
  server_options.push_chunk = 64 << 10;
  Serve(8192, server_options);  // 32 MiB
  PushedGuest guest;
  ASSERT_NO_FATAL_FAILURE(StartPushedGuest(served_.server->address(), guest));
  NetworkPageSource* source = guest.source;
  testing::GuestMemory& memory = *guest.memory;
  auto& server = guest.server;

  std::vector<std::thread> vcpus;
  for (int t = 0; t < 4; ++t) {
    vcpus.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t) + 1);
      for (int i = 0; i < 300; ++i) {
        const uint64_t page = rng() % served_.pages();
        auto expected = served_.expected(served_.page_gpa(page));
        ASSERT_EQ(std::memcmp(memory.data() + page * kPage, expected.data(), kPage), 0)
            << "page " << page;
      }
    });
  }
  for (auto& v : vcpus) v.join();
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!server->everything_resident() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(server->everything_resident());
  ASSERT_TRUE(std::equal(served_.image.begin(), served_.image.end(), memory.data()));
  ASSERT_TRUE(source->complete().is_ok());
  const auto stats = server->stats();
  EXPECT_GT(stats.pushed_pages, 0u);
  EXPECT_GT(stats.fully_resident_ns, 0u);
  // Every page arrived once by push or by demand; demand asked only for what
  // was missing.
  const auto net = source->stats();
  EXPECT_LE(net.requested_bytes, 1200 * 16 * kPage);
  const auto deadline2 = std::chrono::steady_clock::now() + 5s;
  while (served_.server->stats().completes == 0 && std::chrono::steady_clock::now() < deadline2) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(served_.server->stats().completes, 1u);
  server->request_shutdown();
  EXPECT_TRUE(server->wait().is_ok());
}

TEST_P(NetworkSourceTest, PushSurvivesCutsAndResumesWhereItWas) {
  Serve(8192);
  auto proxy = FaultProxy::start(ProxyAddress(), served_.server->address());
  ASSERT_TRUE(proxy.is_ok()) << proxy.status().to_string();
  (*proxy)->cut_after(Direction::kToClient, 9'000'000, 2);
  PushedGuest guest;
  ASSERT_NO_FATAL_FAILURE(StartPushedGuest((*proxy)->address(), guest));
  NetworkPageSource* source = guest.source;
  testing::GuestMemory& memory = *guest.memory;
  auto& server = guest.server;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!server->everything_resident() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(server->everything_resident());
  ASSERT_TRUE(std::equal(served_.image.begin(), served_.image.end(), memory.data()));
  EXPECT_GE(source->stats().reconnects, 2u);
  // After a reconnection the server skips what the client said it holds.
  EXPECT_LT(source->stats().pushed_bytes, 2 * served_.image.size());
  server->request_shutdown();
  EXPECT_TRUE(server->wait().is_ok());
}

INSTANTIATE_TEST_SUITE_P(Transports, NetworkSourceTest,
                         ::testing::Values(Transport::kUnix, Transport::kTcp),
                         [](const auto& info) { return testing::transport_name(info.param); });

}  // namespace
}  // namespace faultline
