#include "server/v2_session.h"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "core/log.h"
#include "core/log_rate_limit.h"
#include "core/zero_scan.h"
#include "protocol/page_codec.h"
#include "server/frame_reader.h"

namespace faultline {
namespace {

using Clock = std::chrono::steady_clock;

// The rest of a frame once it has begun.
constexpr std::chrono::seconds kBodyTimeout{30};
constexpr std::chrono::seconds kWriteTimeout{30};
// For the ERROR frame saying why the server closes: the client may not read it.
constexpr std::chrono::seconds kClosingTimeout{1};
constexpr std::chrono::microseconds kPushPause{50};

struct Outgoing {
  // kClose: an ERROR for the whole connection, the last frame sent.
  enum class Kind { kData, kError, kClose } kind = Kind::kData;
  v2::Request request;
  v2::ErrorFrame error;

  // What it holds of the reply budget: the bytes it puts on the wire.
  uint64_t cost() const {
    if (kind == Kind::kClose) return 0;  // never queued behind the budget
    if (kind == Kind::kError) return v2::kFrameHeaderSize + 16 + error.message.size();
    return v2::kFrameHeaderSize + v2::kDataPrefixSize + request.length;
  }
};

class Session {
 public:
  Session(net::Stream& stream, const ServedImage& image, V2Counters& counters, ReplyBudget& budget,
          const net::Connection& connection)
      : stream_(stream),
        image_(image),
        counters_(counters),
        budget_(budget),
        account_(budget),
        connection_(connection),
        peer_(connection.peer),
        reader_(stream),
        last_write_(Clock::now().time_since_epoch().count()),
        pages_(image.image_size / image.page_size),
        sent_((pages_ + 63) / 64, 0) {}

  Status run(const std::function<void()>& on_complete) {
    if (Status s = handshake(); !s) return s;
    std::thread writer([this] { write_loop(); });
    Status result = read_loop(on_complete);
    {
      std::lock_guard lock(mu_);
      // Closing with a reason: the writer sends what is queued, then the reason.
      if (closing_) {
        queue_.push_back(std::move(*closing_));
      } else {
        done_ = true;
      }
    }
    cv_.notify_all();
    writer.join();
    // What the writer had not sent goes back to the budget with account_.
    if (result.is_ok() && !write_error_.is_ok()) result = write_error_;
    return result;
  }

 private:
  Status handshake() {
    auto frame = reader_.read({v2::FrameType::kHello},
                              net::deadline_after(image_.handshake_timeout), kBodyTimeout);
    if (!frame) return frame.status();
    auto hello = v2::decode_hello(frame->body);
    if (!hello) return hello.status();
    v2::Welcome welcome;
    welcome.encoding = (hello->accepted_encodings & v2::encoding_bit(image_.compression)) != 0
                           ? image_.compression
                           : v2::Encoding::kRaw;
    encoding_ = welcome.encoding;
    pushing_ = image_.push && hello->want_push;
    welcome.pushing = pushing_;
    welcome.page_size = image_.page_size;
    welcome.ram_start = image_.ram_start;
    welcome.image_size = image_.image_size;
    welcome.image_id = image_.image_id;
    welcome.max_range = v2::kMaxRange;
    welcome.state = image_.state;
    // Established before the WELCOME, which a client may take as the sign that
    // it holds its slot.
    if (connection_.mark_established) connection_.mark_established();
    if (Status s = stream_.write_full(v2::encode(welcome), net::deadline_after(kWriteTimeout));
        !s) {
      return s;
    }
    if (pushing_) counters_.push_remaining.store(pages_ - sent_count_);
    log().info("page server: v2 session with {}: {}{}", peer_,
               pushing_ ? "pushing once the client has said what it holds" : "demand only",
               encoding_ == v2::Encoding::kRaw
                   ? std::string()
                   : fmt::format(", {} compression", v2::compression_name(encoding_)));
    return Status::ok();
  }

  Status read_loop(const std::function<void()>& on_complete) {
    for (;;) {
      auto frame =
          reader_.read({v2::FrameType::kRequest, v2::FrameType::kHave, v2::FrameType::kComplete},
                       net::deadline_after(image_.idle_timeout), kBodyTimeout);
      if (!frame && frame.status().code() == ErrorCode::kTimeout) {
        if (!idle()) continue;
        return close_with_error(ErrorCode::kTimeout,
                                fmt::format("idle for {} ms (no request, nothing to send)",
                                            image_.idle_timeout.count()));
      }
      if (!frame) {
        if (frame.status().code() == ErrorCode::kProtocol) ++counters_.bad_requests;
        return frame.status();
      }
      switch (frame->type) {
        case v2::FrameType::kRequest: {
          auto request = v2::decode_request(frame->body);
          if (!request) {
            ++counters_.bad_requests;
            return request.status();
          }
          if (Status s = queue_reply(*request); !s) return s;
          break;
        }
        case v2::FrameType::kHave: {
          auto have = v2::decode_have(frame->body);
          if (!have) {
            ++counters_.bad_requests;
            return have.status();
          }
          if (Status s = apply_have(*have); !s) {
            ++counters_.bad_requests;
            return s;
          }
          cv_.notify_one();
          break;
        }
        default:  // kComplete
          ++counters_.completes;
          log().info("page server: {} holds every page (COMPLETE)", peer_);
          if (on_complete) on_complete();
          return Status::ok();
      }
    }
  }

  // Queues the answer to `request` once the reply budget has room for it: a
  // client that does not read its replies stops having its requests read.
  Status queue_reply(const v2::Request& request) {
    Status range = v2::check_range(request.gpa, request.length, image_.page_size, image_.ram_start,
                                   image_.image_size, v2::kMaxRange);
    Outgoing out;
    if (!range) {
      ++counters_.bad_requests;
      if (range.code() != ErrorCode::kOutOfRange) return range;
      if (++bad_requests_ >= image_.max_bad_requests) {
        return close_with_error(
            ErrorCode::kOutOfRange,
            fmt::format("{} requests outside the image ({})", bad_requests_, range.message()));
      }
      // A request outside the image gets a permanent error, not a hang-up.
      log_limited(spdlog::level::warn, "page server: v2 request outside the image",
                  "page server: v2 request from {}: {}", peer_, range.message());
      out.kind = Outgoing::Kind::kError;
      out.error = {request.id, ErrorCode::kOutOfRange, range.message()};
    } else {
      out.request = request;
    }
    if (!account_.reserve(out.cost(), [this] { return writer_failed_.load(); })) {
      return Status::ok();  // the writer's error ends the session
    }
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(out));
    }
    cv_.notify_one();
    return Status::ok();
  }

  // Nothing was heard from the client for idle_timeout: idle unless the
  // writer has sent something meanwhile.
  bool idle() const {
    const Clock::time_point last{Clock::duration(last_write_.load())};
    return Clock::now() - last >= image_.idle_timeout;
  }

  // Ends the session, telling the client why once its replies are sent.
  Status close_with_error(ErrorCode code, const std::string& why) {
    Outgoing close;
    close.kind = Outgoing::Kind::kClose;
    close.error = v2::ErrorFrame{0, code, "closing the connection: " + why};
    std::lock_guard lock(mu_);
    closing_ = std::move(close);
    return {code, why};
  }

  // Pages the client holds are never pushed; an empty HAVE lets pushing begin.
  Status apply_have(const v2::Have& have) {
    std::lock_guard lock(mu_);
    if (have.bitmap.empty()) {
      if (!push_armed_) {
        log().info("page server: {} held {} of {} pages; pushing the rest", peer_, sent_count_,
                   pages_);
      }
      push_armed_ = true;
      return Status::ok();
    }
    if (have.first_page % 8 != 0 || have.first_page >= pages_ ||
        have.bitmap.size() > (pages_ - have.first_page + 7) / 8) {
      return {ErrorCode::kProtocol,
              fmt::format("HAVE for pages from {} ({} bitmap bytes) exceeds the image's {} pages",
                          have.first_page, have.bitmap.size(), pages_)};
    }
    for (size_t i = 0; i < have.bitmap.size(); ++i) {
      const auto bits = static_cast<uint8_t>(have.bitmap[i]);
      for (uint64_t b = 0; b < 8; ++b) {
        const uint64_t page = have.first_page + i * 8 + b;
        if ((bits >> b & 1) != 0 && page < pages_) mark_sent(page, 1);
      }
    }
    if (pushing_) counters_.push_remaining.store(pages_ - sent_count_);
    return Status::ok();
  }

  bool is_sent(uint64_t page) const { return (sent_[page / 64] >> (page % 64) & 1) != 0; }
  void mark_sent(uint64_t first, uint64_t count) {
    for (uint64_t p = first; p < first + count; ++p) {
      if (!is_sent(p)) {
        sent_[p / 64] |= uint64_t{1} << (p % 64);
        ++sent_count_;
      }
    }
  }

  void write_loop() {
    v2::PayloadEncoder encoder(encoding_);
    std::vector<std::byte> buffer;  // grown to the largest range sent so far
    for (;;) {
      Outgoing out;
      uint64_t queued_cost = 0;  // of the reply taken from the queue, released once sent
      uint64_t push_first = 0;
      uint64_t push_pages = 0;
      {
        std::unique_lock lock(mu_);
        for (;;) {
          if (done_) return;
          if (!queue_.empty()) break;
          if (pushing_ && push_armed_ && sent_count_ < pages_) {
            if (stream_.unsent_bytes() < push_wire_limit()) break;
            cv_.wait_for(lock, kPushPause);
            continue;
          }
          if (pushing_ && push_armed_ && !push_done_sent_) break;
          cv_.wait(lock);
        }
        if (!queue_.empty()) {
          out = std::move(queue_.front());
          queue_.pop_front();
          queued_cost = out.cost();
          if (out.kind == Outgoing::Kind::kData) {
            const uint64_t first = (out.request.gpa - image_.ram_start) / image_.page_size;
            mark_sent(first, out.request.length / image_.page_size);
            // Push on from where the guest is looking.
            cursor_ = first + out.request.length / image_.page_size;
          }
        } else if (sent_count_ < pages_) {
          push_first = next_unsent();
          const uint64_t max_pages = std::max<uint64_t>(1, image_.push_chunk / image_.page_size);
          while (push_pages < max_pages && push_first + push_pages < pages_ &&
                 !is_sent(push_first + push_pages)) {
            ++push_pages;
          }
          mark_sent(push_first, push_pages);
          cursor_ = push_first + push_pages;
        } else {
          push_done_sent_ = true;
        }
        if (pushing_) counters_.push_remaining.store(pages_ - sent_count_);
      }
      Status s;
      if (out.kind == Outgoing::Kind::kClose) {
        (void)stream_.write_full(v2::encode(out.error), net::deadline_after(kClosingTimeout));
        return;
      }
      if (out.kind == Outgoing::Kind::kError) {
        s = stream_.write_full(v2::encode(out.error), net::deadline_after(kWriteTimeout));
      } else if (out.request.id != 0) {
        s = send_demand(out.request, encoder, buffer);
      } else if (push_pages > 0) {
        s = send_push(push_first, push_pages, encoder, buffer);
      } else {
        s = stream_.write_full(v2::encode_empty(v2::FrameType::kPushDone),
                               net::deadline_after(kWriteTimeout));
        log().info("page server: pushed every page {} lacked", peer_);
      }
      if (!s) {
        {
          std::lock_guard lock(mu_);
          write_error_ = s;
          done_ = true;
          stream_.shutdown();
        }
        writer_failed_.store(true);
        budget_.wake();
        return;
      }
      last_write_.store(Clock::now().time_since_epoch().count());
      account_.release(queued_cost);
    }
  }

  // Compressed push data costs the client more to take in than its size on
  // the wire: queue at most push_queue_limit bytes of guest memory, so a
  // demand reply never waits behind much of it. Called with mu_ held.
  size_t push_wire_limit() const {
    if (push_raw_bytes_ == 0) return image_.push_queue_limit;
    const double ratio =
        static_cast<double>(push_wire_bytes_) / static_cast<double>(push_raw_bytes_);
    return std::max<size_t>(
        4096, static_cast<size_t>(static_cast<double>(image_.push_queue_limit) * ratio));
  }

  uint64_t next_unsent() {
    for (uint64_t i = 0; i < pages_; ++i) {
      const uint64_t page = (cursor_ + i) % pages_;
      if (page % 64 == 0 && sent_[page / 64] == ~uint64_t{0} && page + 64 <= pages_) {
        i += 63;
        continue;
      }
      if (!is_sent(page)) return page;
    }
    return 0;
  }

  Status send_frame(const v2::PayloadEncoder::Encoded& e) {
    const auto prefix = v2::encode_data_prefix(e.header, static_cast<uint32_t>(e.payload.size()));
    const auto deadline = net::deadline_after(kWriteTimeout);
    if (Status s = stream_.write_full(prefix, deadline); !s) return s;
    if (!e.payload.empty()) {
      if (Status s = stream_.write_full(e.payload, deadline); !s) return s;
    }
    counters_.wire_bytes += e.payload.size();
    if (e.header.encoding == v2::Encoding::kZero) counters_.zero_bytes += e.header.length;
    return Status::ok();
  }

  Status send_demand(const v2::Request& request, v2::PayloadEncoder& encoder,
                     std::vector<std::byte>& buffer) {
    if (buffer.size() < request.length) buffer.resize(request.length);
    auto dest = std::span(buffer).first(request.length);
    Result<PageKind> kind = image_.source->fetch(request.gpa, dest);
    if (!kind) {
      log().error("page server: cannot read [{:#x}, +{:#x}) for {}: {}", request.gpa,
                  request.length, peer_, kind.status().to_string());
      const ErrorCode code = kind.status().code() == ErrorCode::kOutOfRange
                                 ? ErrorCode::kOutOfRange
                                 : ErrorCode::kUnavailable;
      return stream_.write_full(
          v2::encode(v2::ErrorFrame{request.id, code, kind.status().message()}),
          net::deadline_after(kWriteTimeout));
    }
    ++counters_.demand_requests;
    counters_.demand_bytes += request.length;
    return send_frame(encoder.encode(request.id, request.gpa, dest, *kind == PageKind::kZero));
  }

  void note_pushed(uint64_t raw, uint64_t wire) {
    std::lock_guard lock(mu_);
    push_raw_bytes_ += raw;
    push_wire_bytes_ += wire + v2::kFrameHeaderSize + v2::kDataPrefixSize;
  }

  // Sends runs of zero and non-zero pages as their own frames.
  Status send_push(uint64_t first_page, uint64_t pages, v2::PayloadEncoder& encoder,
                   std::vector<std::byte>& buffer) {
    const uint64_t page_size = image_.page_size;
    const Gpa gpa = image_.ram_start + first_page * page_size;
    if (buffer.size() < pages * page_size) buffer.resize(pages * page_size);
    auto range = std::span(buffer).first(pages * page_size);
    Result<PageKind> kind = image_.source->fetch(gpa, range);
    if (!kind) {
      // Demand requests will meet the same trouble and report it; pushing stops.
      log().error("page server: push to {} stops: cannot read [{:#x}, +{:#x}): {}", peer_, gpa,
                  range.size(), kind.status().to_string());
      std::lock_guard lock(mu_);
      pushing_ = false;
      return Status::ok();
    }
    counters_.pushed_bytes += range.size();
    if (*kind == PageKind::kZero) {
      note_pushed(range.size(), 0);
      return send_frame(encoder.encode(0, gpa, range, true));
    }
    uint64_t run_start = 0;
    while (run_start < pages) {
      const bool zero = is_all_zero(range.subspan(run_start * page_size, page_size));
      uint64_t run_end = run_start + 1;
      while (run_end < pages &&
             is_all_zero(range.subspan(run_end * page_size, page_size)) == zero) {
        ++run_end;
      }
      auto run = range.subspan(run_start * page_size, (run_end - run_start) * page_size);
      const auto encoded = encoder.encode(0, gpa + run_start * page_size, run, zero);
      if (Status s = send_frame(encoded); !s) return s;
      note_pushed(run.size(), encoded.payload.size());
      run_start = run_end;
    }
    return Status::ok();
  }

  net::Stream& stream_;
  const ServedImage& image_;
  V2Counters& counters_;
  ReplyBudget& budget_;
  ReplyBudget::Account account_;  // replies queued and being written
  const net::Connection& connection_;
  const std::string& peer_;
  FrameReader reader_;         // used by the reader thread only
  uint32_t bad_requests_ = 0;  // used by the reader thread only
  std::atomic<bool> writer_failed_{false};
  std::atomic<Clock::rep> last_write_;  // when the writer last sent something
  const uint64_t pages_;
  v2::Encoding encoding_ = v2::Encoding::kRaw;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Outgoing> queue_;       // guarded by mu_
  std::vector<uint64_t> sent_;       // guarded by mu_ once the writer runs
  uint64_t sent_count_ = 0;          // guarded by mu_
  uint64_t cursor_ = 0;              // guarded by mu_
  bool pushing_ = false;             // guarded by mu_ once the writer runs
  bool push_armed_ = false;          // guarded by mu_: the client has said what it holds
  bool push_done_sent_ = false;      // guarded by mu_
  bool done_ = false;                // guarded by mu_
  uint64_t push_raw_bytes_ = 0;      // guarded by mu_: guest bytes pushed
  uint64_t push_wire_bytes_ = 0;     // guarded by mu_: what they took on the wire
  Status write_error_;               // written by the writer before done_, read after join
  std::optional<Outgoing> closing_;  // guarded by mu_: queued last once the reader ends
};

}  // namespace

Status serve_v2_connection(net::Stream& stream, const ServedImage& image, V2Counters& counters,
                           ReplyBudget& budget, const net::Connection& connection,
                           const std::function<void()>& on_complete) {
  ++counters.sessions;
  Session session(stream, image, counters, budget, connection);
  return session.run(on_complete);
}

}  // namespace faultline
