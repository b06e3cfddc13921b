// A client of the v2 page protocol (`faultline serve-pages`, `faultline
// migrate`): pipelined requests with ids, ranges, zero pages as a flag,
// optional lz4/zstd, a checksum per range verified on arrival, pages pushed by
// the server, TLS, and recovery from a dropped connection.
//
// Recovery: when the connection drops, fetches in flight keep waiting (they are
// not failed); the source reconnects with backoff, checks that the server still
// serves the same image, tells it which pages are held already (HAVE), and
// sends every request still unanswered again. Only when reconnecting fails for
// `reconnect_for` do waiting fetches fail (kUnavailable), and they fail at
// once from then on until a reconnection succeeds.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "faultline/compression.h"
#include "faultline/page_sink.h"
#include "faultline/page_source.h"
#include "faultline/status.h"
#include "faultline/tls_options.h"

namespace faultline {

struct NetworkSourceOptions {
  Compression compression = Compression::kNone;  // accepted from the server besides raw
  bool push = false;                             // ask the server to push every page (start_push)
  TlsOptions tls;  // ca_file turns TLS on; cert_file and key_file for mutual
  // TCP without TLS only when asked for; Unix sockets never need it.
  bool allow_plain_tcp = false;
  std::chrono::milliseconds connect_timeout{2000};
  // How long reconnecting may take before waiting fetches fail.
  std::chrono::milliseconds reconnect_for{30000};
};

struct NetworkSourceStats {
  uint64_t requests = 0;         // REQUEST frames sent (re-sends included)
  uint64_t requested_bytes = 0;  // bytes answered to fetches
  uint64_t pushed_bytes = 0;     // bytes pushed by the server and handed on
  uint64_t zero_bytes = 0;       // bytes that arrived as a zero flag
  uint64_t wire_bytes = 0;       // payload bytes received (after compression)
  uint64_t corrupt = 0;          // ranges whose checksum failed (fetched again)
  uint64_t reconnects = 0;       // connections re-established after a drop
  uint64_t late_replies = 0;     // replies to requests answered already
  uint64_t resent = 0;           // requests sent again after a second without a reply
  bool push_done = false;        // the server has pushed every page we lacked
};

struct RemoteImage {
  uint64_t ram_start = 0;
  uint64_t size = 0;
  uint32_t page_size = 4096;
  uint64_t image_id = 0;
  std::vector<std::byte> state;  // what the server handed over (a VM's vCPU state)
};

class NetworkPageSource : public PageSource {
 public:
  // Connects and handshakes before returning, so the image is known.
  static Result<std::unique_ptr<NetworkPageSource>> connect(const std::string& address,
                                                            NetworkSourceOptions options = {});
  ~NetworkPageSource() override;

  Result<PageKind> fetch(Gpa gpa, std::span<std::byte> dest) override;
  std::string describe() const override;

  const RemoteImage& image() const;
  // A push handed to a sink. Destroying it stops the hand-over and returns
  // once none is in progress, so the sink may be destroyed right after. It
  // may outlive the source (the push then ended with the connection).
  class Push {
   public:
    ~Push();
    Push(const Push&) = delete;
    Push& operator=(const Push&) = delete;
    struct State;  // shared with the source's reader (sources/network_push.h)

   private:
    friend class NetworkPageSource;
    explicit Push(std::shared_ptr<State> state);
    std::shared_ptr<State> state_;
  };
  // Starts the push (the source must have been opened with options.push):
  // tells the server what `sink` holds, then hands every pushed page to it
  // until the returned Push is destroyed. `sink` must outlive the Push. One
  // push per source.
  Result<std::unique_ptr<Push>> start_push(PageSink& sink);
  // Tells the server every page is held, so a migration can finish.
  Status complete();
  NetworkSourceStats stats() const;

  class Impl;

 private:
  explicit NetworkPageSource(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace faultline
