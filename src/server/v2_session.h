// One v2 connection on the serving side: answers REQUESTs (demand first,
// always) and, when the client asks for it, pushes every page the client does
// not hold yet, paced so that a demand reply never queues behind more than a
// little push data.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "faultline/page_source.h"
#include "faultline/status.h"
#include "net/connection_server.h"
#include "net/stream.h"
#include "protocol/frames.h"
#include "server/reply_budget.h"

namespace faultline {

// What a server offers every v2 client.
struct ServedImage {
  PageSource* source = nullptr;
  uint64_t ram_start = 0;
  uint64_t image_size = 0;
  uint32_t page_size = 4096;
  uint64_t image_id = 0;
  std::vector<std::byte> state;                   // sent in WELCOME
  v2::Encoding compression = v2::Encoding::kRaw;  // used when the client accepts it
  bool push = true;                               // push when a client asks
  uint32_t push_chunk = 128u << 10;               // bytes per pushed DATA frame
  size_t push_queue_limit = 256u << 10;           // guest bytes in flight before push waits
  // What one client may do before it is closed:
  std::chrono::milliseconds handshake_timeout{10'000};  // HELLO within this
  std::chrono::milliseconds idle_timeout{300'000};      // no frame either way this long
  uint32_t max_bad_requests = 32;                       // REQUESTs outside the image
};

struct V2Counters {
  std::atomic<uint64_t> sessions{0};
  std::atomic<uint64_t> demand_requests{0};
  std::atomic<uint64_t> demand_bytes{0};
  std::atomic<uint64_t> pushed_bytes{0};
  std::atomic<uint64_t> zero_bytes{0};  // of demand and push, sent as a flag
  std::atomic<uint64_t> wire_bytes{0};  // payload bytes on the wire (after compression)
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<uint64_t> completes{0};
  // Pages the newest pushing client does not hold yet (not sent, not held).
  std::atomic<uint64_t> push_remaining{0};
};

// Runs a v2 connection whose 8-byte magic has been read, until the client
// leaves, breaks the protocol, sends COMPLETE, idles, or `stream` is shut
// down. The connection is marked established once the handshake is done;
// replies owed to it are held in `budget`. OK after COMPLETE or a clean close;
// the reason otherwise (kTimeout: idle). `on_complete` is called when the
// client says it holds everything.
Status serve_v2_connection(net::Stream& stream, const ServedImage& image, V2Counters& counters,
                           ReplyBudget& budget, const net::Connection& connection,
                           const std::function<void()>& on_complete);

}  // namespace faultline
