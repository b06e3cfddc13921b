// What one client can make a PageServer hold: replies it does not read,
// requests outside the image, silence, slots it never uses, and headers
// announcing bodies it should not send.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "faultline/page_server.h"
#include "net/socket_io.h"
#include "protocol/v1_wire.h"
#include "support/raw_v2_client.h"
#include "support/served_image.h"
#include "support/temp_dir.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;
using testing::RawV2Client;
using testing::ServedImage;

constexpr uint64_t kPage = ServedImage::kPageSize;
constexpr uint64_t kMiB = 1u << 20;
// What a 4 KiB demand reply costs: the frame header, the DATA prefix, the page.
constexpr uint64_t kReplyCost = v2::kFrameHeaderSize + v2::kDataPrefixSize + kPage;

template <typename Predicate>
bool Eventually(Predicate done) {
  for (int i = 0; i < 2000 && !done(); ++i) std::this_thread::sleep_for(10ms);
  return done();
}

// The next frame is DATA for request `id` carrying exactly the page at `gpa`.
void ExpectPage(RawV2Client& client, const ServedImage& served, uint64_t id, Gpa gpa) {
  auto frame = client.read_frame();
  ASSERT_TRUE(frame) << frame.status().to_string();
  ASSERT_EQ(frame->type, v2::FrameType::kData);
  auto header = v2::decode_data_prefix(frame->body);
  ASSERT_TRUE(header) << header.status().to_string();
  ASSERT_EQ(header->id, id);
  ASSERT_EQ(header->gpa, gpa);
  ASSERT_EQ(header->length, kPage);
  const auto expected = served.expected(gpa);
  if (header->encoding == v2::Encoding::kZero) {
    ASSERT_TRUE(served.is_zero_page((gpa - ServedImage::kRamStart) / kPage)) << "id " << id;
    return;
  }
  ASSERT_EQ(header->encoding, v2::Encoding::kRaw);
  const auto payload = std::span(frame->body).subspan(v2::kDataPrefixSize);
  ASSERT_TRUE(std::equal(payload.begin(), payload.end(), expected.begin(), expected.end()))
      << "reply " << id << " differs from the file";
}

class PageServerLimitsTest : public ::testing::Test {
 protected:
  void Serve(PageServerOptions options, uint64_t pages = 256) {
    served_ = testing::serve_image(dir_, "unix:" + dir_.file("pages.sock"), pages, options);
    ASSERT_TRUE(served_.server);
  }
  const std::string& address() const { return served_.server->address(); }
  PageServerStats stats() const { return served_.server->stats(); }

  // Sends `count` requests for successive pages (ids 1, 2, ...) from a thread
  // of its own, since the server may stop reading them.
  std::thread SendRequests(RawV2Client& client, uint64_t count, std::atomic<bool>& all_sent) {
    return std::thread([this, &client, count, &all_sent] {
      for (uint64_t id = 1; id <= count; ++id) {
        if (!client.send_request(id, served_.page_gpa(id % served_.pages()), kPage)) return;
      }
      all_sent = true;
    });
  }

  testing::TempDir dir_;
  ServedImage served_;
};

TEST_F(PageServerLimitsTest, AClientThatDoesNotReadHasAtMostItsReplyLimitQueuedThenGetsEveryReply) {
  PageServerOptions options;
  options.connection_reply_limit = 1 * kMiB;
  Serve(options);
  RawV2Client client(address());
  ASSERT_TRUE(client.connected());
  constexpr uint64_t kRequests = 20000;  // 80 MiB of replies
  std::atomic<bool> all_sent{false};
  std::thread sender = SendRequests(client, kRequests, all_sent);

  // Either the server holds as much as one connection may, or it read every request.
  ASSERT_TRUE(Eventually([&] {
    return all_sent || stats().queued_bytes + kReplyCost > options.connection_reply_limit;
  }));
  EXPECT_LE(stats().queued_bytes, options.connection_reply_limit);
  EXPECT_FALSE(all_sent) << "the server read every request while the client read no reply";

  for (uint64_t id = 1; id <= kRequests; ++id) {
    ExpectPage(client, served_, id, served_.page_gpa(id % served_.pages()));
    if (::testing::Test::HasFatalFailure()) break;
  }
  sender.join();
  EXPECT_TRUE(all_sent);
  EXPECT_TRUE(Eventually([&] { return stats().queued_bytes == 0; }));
}

TEST_F(PageServerLimitsTest, AllClientsTogetherHaveAtMostTheServerReplyLimitQueued) {
  PageServerOptions options;
  options.connection_reply_limit = 1 * kMiB;
  options.server_reply_limit = 2 * kMiB;
  Serve(options);
  constexpr int kClients = 4;
  constexpr uint64_t kRequests = 5000;
  std::vector<std::unique_ptr<RawV2Client>> clients;
  std::vector<std::thread> senders;
  std::atomic<bool> all_sent[kClients] = {};
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<RawV2Client>(address()));
    ASSERT_TRUE(clients.back()->connected());
  }
  for (int i = 0; i < kClients; ++i) {
    senders.push_back(SendRequests(*clients[i], kRequests, all_sent[i]));
  }

  ASSERT_TRUE(Eventually([&] {
    return all_sent[0] || stats().queued_bytes + kReplyCost > options.server_reply_limit;
  }));
  // A connection holding nothing may always queue one reply, so that it moves on.
  EXPECT_LE(stats().queued_bytes, options.server_reply_limit + kClients * kReplyCost);
  for (auto& sent : all_sent) EXPECT_FALSE(sent);

  for (int i = 0; i < kClients; ++i) {
    for (uint64_t id = 1; id <= kRequests; ++id) {
      ExpectPage(*clients[i], served_, id, served_.page_gpa(id % served_.pages()));
      if (::testing::Test::HasFatalFailure()) break;
    }
  }
  for (auto& sender : senders) sender.join();
  EXPECT_TRUE(Eventually([&] { return stats().queued_bytes == 0; }));
}

TEST_F(PageServerLimitsTest, ABurstOfRequestsOutsideTheImageEndsTheConnectionSayingWhy) {
  PageServerOptions options;
  options.max_bad_requests = 8;
  Serve(options);
  RawV2Client client(address());
  ASSERT_TRUE(client.connected());
  const Gpa outside = served_.page_gpa(served_.pages() + 16);
  // All at once; writes after the server has hung up may fail.
  for (uint64_t id = 1; id <= 200; ++id) {
    if (!client.send_request(id, outside, kPage)) break;
  }
  for (uint64_t id = 1; id < options.max_bad_requests; ++id) {
    auto frame = client.read_frame();
    ASSERT_TRUE(frame) << frame.status().to_string();
    ASSERT_EQ(frame->type, v2::FrameType::kError);
    auto error = v2::decode_error(frame->body);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->id, id);
    EXPECT_EQ(error->code, ErrorCode::kOutOfRange);
  }
  auto last = client.read_frame();
  ASSERT_TRUE(last) << last.status().to_string();
  ASSERT_EQ(last->type, v2::FrameType::kError);
  auto error = v2::decode_error(last->body);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->id, 0u) << "an error for the whole connection";
  EXPECT_NE(error->message.find("8 requests outside the image"), std::string::npos)
      << error->message;
  EXPECT_TRUE(client.sees_hang_up());
  EXPECT_EQ(stats().bad_requests, options.max_bad_requests);
}

TEST_F(PageServerLimitsTest, AV2ConnectionIdleForTheIdleTimeoutIsClosedSayingWhy) {
  PageServerOptions options;
  options.idle_timeout = 200ms;
  Serve(options);
  RawV2Client client(address());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send_request(1, served_.page_gpa(3), kPage));
  ExpectPage(client, served_, 1, served_.page_gpa(3));
  // Then nothing from the client.
  auto frame = client.read_frame();
  ASSERT_TRUE(frame) << frame.status().to_string();
  ASSERT_EQ(frame->type, v2::FrameType::kError);
  auto error = v2::decode_error(frame->body);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->id, 0u);
  EXPECT_NE(error->message.find("idle"), std::string::npos) << error->message;
  EXPECT_TRUE(client.sees_hang_up());
}

TEST_F(PageServerLimitsTest, AV1ConnectionIdleForTheIdleTimeoutIsClosed) {
  PageServerOptions options;
  options.idle_timeout = 200ms;
  Serve(options);
  RawV2Client client(address(), /*handshake=*/false);
  ASSERT_TRUE(client.connected());
  const v1::PageRequest request{served_.page_gpa(2), kPage};
  ASSERT_TRUE(client.send_bytes(v1::encode_page_request(request)));
  std::vector<std::byte> reply(v1::kReplyHeaderSize + kPage);
  ASSERT_TRUE(net::read_full(client.fd(), reply, net::deadline_after(20s)));
  const auto expected = served_.expected(request.gpa);
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), reply.begin() + v1::kReplyHeaderSize));
  EXPECT_TRUE(client.sees_hang_up());
}

TEST_F(PageServerLimitsTest, WithEverySlotHeldBySilentConnectionsANewClientIsServed) {
  PageServerOptions options;
  options.max_clients = 4;
  Serve(options);
  std::vector<std::unique_ptr<RawV2Client>> silent;
  for (int i = 0; i < options.max_clients; ++i) {
    silent.push_back(std::make_unique<RawV2Client>(address(), /*handshake=*/false));
  }
  ASSERT_TRUE(Eventually([&] { return stats().active == 4; }));

  RawV2Client client(address());
  ASSERT_TRUE(client.connected()) << "refused while every slot was held by silence";
  ASSERT_TRUE(client.send_request(7, served_.page_gpa(5), kPage));
  ExpectPage(client, served_, 7, served_.page_gpa(5));
  // The oldest silent one gave way.
  EXPECT_TRUE(silent.front()->sees_hang_up());
  EXPECT_EQ(stats().evicted, 1u);
}

TEST_F(PageServerLimitsTest, ClientsThatHaveHandshakenKeepTheirSlotsAndANewcomerIsRefused) {
  PageServerOptions options;
  options.max_clients = 2;
  Serve(options);
  RawV2Client first(address()), second(address());
  ASSERT_TRUE(first.connected() && second.connected());
  RawV2Client third(address(), /*handshake=*/false);
  EXPECT_TRUE(third.sees_hang_up());
  ASSERT_TRUE(first.send_request(1, served_.page_gpa(1), kPage));
  ExpectPage(first, served_, 1, served_.page_gpa(1));
  EXPECT_EQ(stats().evicted, 0u);
}

TEST_F(PageServerLimitsTest, AHandshakeOfTheWrongFrameTypeIsRefusedBeforeItsBodyIsSent) {
  Serve(PageServerOptions{});
  RawV2Client client(address(), /*handshake=*/false);
  ASSERT_TRUE(client.send_bytes(v2::kMagic));
  // A DATA header announcing 2 MiB, and no body: the server must not wait for it.
  ASSERT_TRUE(
      client.send_bytes(v2::encode_data_prefix({1, served_.page_gpa(0), 2 * kMiB}, 2 * kMiB)));
  EXPECT_TRUE(client.sees_hang_up(5s));
}

TEST_F(PageServerLimitsTest, AFrameAClientMayNotSendIsRefusedBeforeItsBodyIsSent) {
  Serve(PageServerOptions{});
  RawV2Client client(address());
  ASSERT_TRUE(client.connected());
  // A WELCOME header announcing 1 MiB of state, and no body.
  const v2::FrameHeader header{v2::FrameType::kWelcome, 1u << 20};
  ASSERT_TRUE(client.send_bytes(v2::encode_frame_header(header)));
  EXPECT_TRUE(client.sees_hang_up(5s));
}

// VmRSS of this process, in bytes.
uint64_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    uint64_t kib = 0;
    if (key == "VmRSS:" && status >> kib) return kib << 10;
    status.ignore(1 << 10, '\n');
  }
  return 0;
}

TEST_F(PageServerLimitsTest, V1ClientsAskingFor2MiBPagesAndNotReadingHoldLittleServerMemory) {
  Serve(PageServerOptions{}, 1024);  // 4 MiB
  constexpr int kClients = 64;
  // Every connection and its thread exist before the first measurement, each
  // served one 4 KiB page: what grows after is what the 2 MiB requests cost
  // (a sanitizer's per-thread memory is in both measurements).
  std::vector<std::unique_ptr<RawV2Client>> clients;
  std::vector<std::byte> reply(v1::kReplyHeaderSize + kPage);
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<RawV2Client>(address(), /*handshake=*/false));
    const v1::PageRequest small{served_.page_gpa(i), kPage};
    ASSERT_TRUE(clients.back()->send_bytes(v1::encode_page_request(small)));
    ASSERT_TRUE(net::read_full(clients.back()->fd(), reply, net::deadline_after(10s)));
    const auto expected = served_.expected(small.gpa);
    EXPECT_TRUE(std::equal(reply.begin() + v1::kReplyHeaderSize, reply.end(), expected.begin()));
  }
  const uint64_t before = resident_bytes();
  for (int i = 0; i < kClients; ++i) {
    const v1::PageRequest request{served_.page_gpa(i % 2 * 512), 2 * kMiB};
    ASSERT_TRUE(clients[i]->send_bytes(v1::encode_page_request(request)));
  }
  // Every reply is being sent (counted first), none read.
  ASSERT_TRUE(Eventually([&] { return stats().requests == 2 * kClients; }));
  const uint64_t grown = resident_bytes() - std::min(before, resident_bytes());
  // One 2 MiB buffer each would be 128 MiB.
  EXPECT_LT(grown, 32 * kMiB);
}

}  // namespace
}  // namespace faultline
