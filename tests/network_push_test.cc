// NetworkPageSource::start_push: the push is an object whose lifetime is the
// hand-over of pushed pages to a sink (the end-to-end push tests, into a real
// fault server, are in network_source_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "faultline/network_page_source.h"
#include "faultline/page_sink.h"
#include "support/served_image.h"

namespace faultline {
namespace {

using namespace std::chrono_literals;
using testing::ServedImage;
using testing::Transport;
constexpr uint64_t kPage = ServedImage::kPageSize;

class NetworkPushTest : public testing::ServedImageTest {
 protected:
  std::unique_ptr<NetworkPageSource> Connect(bool push) {
    NetworkSourceOptions options;
    options.allow_plain_tcp = true;
    options.push = push;
    auto source = NetworkPageSource::connect(served_.server->address(), options);
    EXPECT_TRUE(source.is_ok()) << source.status().to_string();
    return source.is_ok() ? std::move(source).value() : nullptr;
  }
};

// Counts what a push hands over; holds nothing, so everything is pushed.
class CountingSink final : public PageSink {
 public:
  Status install(Gpa /*gpa*/, uint64_t length, std::span<const std::byte> /*bytes*/) override {
    installed.fetch_add(length);
    std::this_thread::sleep_for(delay);
    return Status::ok();
  }
  bool holds_page(Gpa /*gpa*/) const override { return false; }
  std::atomic<uint64_t> installed{0};
  std::chrono::microseconds delay{0};  // per hand-over: keeps the push going
};

TEST_P(NetworkPushTest, APushEndsWhenItsObjectIsDestroyed) {
  Serve(4096);
  auto source = Connect(/*push=*/true);
  ASSERT_TRUE(source);
  CountingSink sink;
  sink.delay = 2ms;  // 16 MiB in 128 KiB frames: still pushing when the Push goes
  auto push = source->start_push(sink);
  ASSERT_TRUE(push.is_ok()) << push.status().to_string();
  // One push per source.
  EXPECT_EQ(source->start_push(sink).status().code(), ErrorCode::kInvalidArgument);
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (sink.installed.load() == 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GT(sink.installed.load(), 0u);
  push->reset();  // returns once no hand-over is in progress
  const uint64_t at_end = sink.installed.load();
  std::this_thread::sleep_for(100ms);
  EXPECT_LT(at_end, 4096 * kPage) << "the push ended before its object did: nothing tested";
  EXPECT_EQ(sink.installed.load(), at_end) << "pages handed over after the push ended";
  // The source keeps serving fetches.
  std::vector<std::byte> page(kPage);
  auto kind = source->fetch(served_.page_gpa(1), page);
  ASSERT_TRUE(kind.is_ok()) << kind.status().to_string();
  const auto expected = served_.expected(served_.page_gpa(1), kPage);
  if (*kind == PageKind::kData) {
    EXPECT_TRUE(std::equal(page.begin(), page.end(), expected.begin()));
  } else {
    EXPECT_TRUE(served_.is_zero_page(1));
  }
}

TEST_P(NetworkPushTest, APushMayOutliveItsSource) {
  Serve(256);
  auto source = Connect(/*push=*/true);
  ASSERT_TRUE(source);
  CountingSink sink;
  auto push = source->start_push(sink);
  ASSERT_TRUE(push.is_ok()) << push.status().to_string();
  source.reset();
  push->reset();
}

TEST_P(NetworkPushTest, StartPushNeedsASourceOpenedWithPush) {
  Serve(16);
  auto source = Connect(/*push=*/false);
  ASSERT_TRUE(source);
  CountingSink sink;
  EXPECT_EQ(source->start_push(sink).status().code(), ErrorCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Transports, NetworkPushTest,
                         ::testing::Values(Transport::kUnix, Transport::kTcp),
                         [](const auto& info) { return testing::transport_name(info.param); });

}  // namespace
}  // namespace faultline
