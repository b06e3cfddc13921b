// A client of `faultline serve-pages`: one request, one reply, on a pooled
// connection. Any error closes the connection it happened on; the Pager, not
// this source, decides whether to retry.
#include <fmt/format.h>
#include <poll.h>

#include <array>
#include <mutex>
#include <vector>

#include "core/zero_scan.h"
#include "faultline/page_source.h"
#include "faultline/unique_fd.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "protocol/v1_wire.h"

namespace faultline {
namespace {

// Idle connections kept without reallocating; more concurrent fetches still work.
constexpr size_t kPoolReserve = 64;

// An idle connection the server has since closed (it restarted, or dropped
// idle clients) would fail the next fetch: readable or hung up means dead,
// since the server never speaks unasked.
bool is_still_open(int fd) {
  pollfd pfd{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&pfd, 1, 0) == 0;
}

class SocketPageSource final : public PageSource {
 public:
  SocketPageSource(net::SocketAddress address, SocketSourceOptions options)
      : address_(std::move(address)),
        name_(fmt::format("page server {}", address_.to_string())),
        options_(options) {
    idle_.reserve(kPoolReserve);
  }

  // A range is sent as a run of v1 requests, pipelined on one connection:
  // up to kPipelineDepth requests go out in one write, then their replies are
  // read in order. One round trip per window instead of one per page.
  Result<PageKind> fetch(Gpa gpa, std::span<std::byte> dest) override {
    if (v1::largest_request_at(gpa, dest.size()) == 0) {
      const v1::PageRequest request{gpa, dest.size()};
      Status status = v1::validate_page_request(request);
      if (status.is_ok()) status = invalid_argument("range is not made of whole pages");
      return status.with_context(name_);
    }
    auto connection = take_connection();
    if (!connection) return connection.status().with_context(name_);
    Status status = exchange_range(connection->get(), gpa, dest);
    if (!status) {
      return status.with_context(
          fmt::format("{}: page {:#x} (size {:#x})", name_, gpa, dest.size()));
    }
    give_back(std::move(*connection));
    return is_all_zero(dest) ? PageKind::kZero : PageKind::kData;
  }

  std::string describe() const override { return name_; }

 private:
  // The whole of each batch must finish within io_timeout.
  Status exchange_range(int fd, Gpa gpa, std::span<std::byte> dest) {
    constexpr size_t kPipelineDepth = 64;
    uint64_t done = 0;
    while (done < dest.size()) {
      std::array<v1::PageRequest, kPipelineDepth> batch;
      std::array<std::byte, kPipelineDepth * v1::kRequestSize> bytes;
      size_t count = 0;
      uint64_t planned = done;
      while (count < kPipelineDepth && planned < dest.size()) {
        const uint64_t size = v1::largest_request_at(gpa + planned, dest.size() - planned);
        batch[count] = {gpa + planned, size};
        const v1::RequestBytes encoded = v1::encode_page_request(batch[count]);
        std::copy(encoded.begin(), encoded.end(), bytes.begin() + count * v1::kRequestSize);
        planned += size;
        ++count;
      }
      const net::Deadline deadline = net::deadline_after(options_.io_timeout);
      if (Status status =
              net::write_full(fd, std::span(bytes).first(count * v1::kRequestSize), deadline);
          !status) {
        return explain(status, "sending the request");
      }
      for (size_t i = 0; i < count; ++i) {
        Status status = read_reply(fd, batch[i], dest.subspan(done, batch[i].page_size), deadline);
        if (!status) return status;
        done += batch[i].page_size;
      }
    }
    return Status::ok();
  }

  Status read_reply(int fd, const v1::PageRequest& request, std::span<std::byte> dest,
                    net::Deadline deadline) {
    v1::ReplyHeaderBytes header;
    if (Status status = net::read_full(fd, header, deadline); !status) {
      if (status.code() == ErrorCode::kUnavailable) {
        // v1 has no error reply: a server hangs up on requests it cannot serve.
        return status.with_context(
            "reading the reply header (the server hangs up on requests it cannot serve, "
            "such as pages outside its memory file; its log says why)");
      }
      return explain(status, "reading the reply header");
    }
    if (Status status = v1::check_reply_header(header, request); !status) return status;
    if (Status status = net::read_full(fd, dest, deadline); !status) {
      return explain(status, "reading the page payload");
    }
    return Status::ok();
  }

  Status explain(const Status& status, std::string_view step) const {
    if (status.code() == ErrorCode::kTimeout) {
      return status.with_context(
          fmt::format("{}: no answer within io_timeout {} ms", step, options_.io_timeout.count()));
    }
    return status.with_context(step);
  }

  Result<UniqueFd> take_connection() {
    {
      std::lock_guard lock(mu_);
      while (!idle_.empty()) {
        UniqueFd fd = std::move(idle_.back());
        idle_.pop_back();
        if (is_still_open(fd.get())) return fd;
      }
    }
    return net::connect_socket(address_, options_.connect_timeout);
  }

  void give_back(UniqueFd fd) {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(fd));
  }

  const net::SocketAddress address_;
  const std::string name_;
  const SocketSourceOptions options_;
  std::mutex mu_;
  std::vector<UniqueFd> idle_;  // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<PageSource>> connect_socket_page_source(const std::string& address,
                                                               SocketSourceOptions options) {
  auto parsed = net::parse_socket_address(address);
  if (!parsed) return parsed.status();
  return std::unique_ptr<PageSource>(new SocketPageSource(std::move(*parsed), options));
}

}  // namespace faultline
