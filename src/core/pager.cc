#include "faultline/pager.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/latency_histogram.h"
#include "core/log.h"
#include "core/region_table.h"

namespace faultline {
namespace {

bool is_valid_page_size(uint64_t page_size) {
  return page_size >= kMinPageSize && std::has_single_bit(page_size);
}

uint64_t nanos_since(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count());
}

struct Counters {
#define FAULTLINE_ATOMIC_COUNTER(name) std::atomic<uint64_t> name{0};
  FAULTLINE_PAGER_COUNTERS(FAULTLINE_ATOMIC_COUNTER)
#undef FAULTLINE_ATOMIC_COUNTER
  LatencyHistogram fault_latency;
};

}  // namespace

// Everything a Pager holds.
class Pager::Impl {
 public:
  Impl(std::unique_ptr<PageSource> source, PagerConfig config)
      : source_(std::move(source)), config_(std::move(config)) {}

  Result<PageKind> fetch_with_retry(Gpa page_gpa, std::span<std::byte> dest);
  Status prewarm_into(PageSink* sink);
  bool shutdown_requested() const { return shutdown_.load(std::memory_order_acquire); }

  std::unique_ptr<PageSource> source_;
  PagerConfig config_;
  RegionTable regions_;
  Counters counters_;
  std::atomic<bool> shutdown_{false};
  std::mutex listeners_mu_;
  std::vector<std::pair<uint64_t, std::function<void()>>> listeners_;
  uint64_t next_listener_id_ = 1;
  std::weak_ptr<Pager> self_;  // for handle()
};

PagerHandle Pager::create(std::unique_ptr<PageSource> source, PagerConfig config) {
  PagerHandle pager(new Pager(std::make_unique<Impl>(std::move(source), std::move(config))));
  pager->impl_->self_ = pager;
  return pager;
}

Pager::Pager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Pager::~Pager() = default;

PagerHandle Pager::handle() {
  return impl_->self_.lock();
}

const PagerConfig& Pager::config() const {
  return impl_->config_;
}

const PageSource& Pager::source() const {
  return *impl_->source_;
}

bool Pager::shutdown_requested() const {
  return impl_->shutdown_requested();
}

Status Pager::register_region(uint64_t base, uint64_t size) {
  return impl_->regions_.add(base, size);
}

bool Pager::contains_gpa(Gpa gpa) const {
  return impl_->regions_.contains(gpa);
}

bool Pager::contains_range(uint64_t base, uint64_t size) const {
  return impl_->regions_.contains_range(base, size);
}

Result<PageKind> Pager::Impl::fetch_with_retry(Gpa page_gpa, std::span<std::byte> dest) {
  const auto start = std::chrono::steady_clock::now();
  const RetryPolicy& policy = config_.source_retry;
  auto backoff = policy.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    Result<PageKind> fetched = source_->fetch(page_gpa, dest);
    if (fetched.is_ok()) return fetched;
    const Status& error = fetched.status();
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (!error.is_retryable() || elapsed + backoff > policy.deadline) {
      return Status(
          ErrorCode::kSource,
          fmt::format("page {:#x}: {} (gave up after {} attempt{} in {} ms)", page_gpa,
                      error.to_string(), attempt, attempt == 1 ? "" : "s",
                      std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
    }
    if (shutdown_requested()) {
      return Status(ErrorCode::kShutdown,
                    fmt::format("page {:#x}: shutdown while retrying after: {}", page_gpa,
                                error.to_string()));
    }
    counters_.source_retries.fetch_add(1, std::memory_order_relaxed);
    if (attempt == 1) {
      log().warn("page {:#x}: {}; retrying for up to {} ms", page_gpa, error.to_string(),
                 policy.deadline.count());
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
}

Result<ServedPage> Pager::serve_fault(Gpa gpa, uint64_t page_size, std::span<std::byte> dest,
                                      uint64_t window, uint64_t before) {
  Impl& p = *impl_;
  const auto start = std::chrono::steady_clock::now();
  if (!is_valid_page_size(page_size)) {
    return invalid_argument(fmt::format("page size {} is not a power of two of at least {} bytes",
                                        page_size, kMinPageSize));
  }
  if (dest.size() < page_size) {
    return invalid_argument(
        fmt::format("buffer of {} bytes cannot hold a page of {} bytes", dest.size(), page_size));
  }
  const Gpa page_gpa = gpa & ~(page_size - 1);
  if (!p.regions_.contains_range(page_gpa, page_size)) {
    p.counters_.out_of_region.fetch_add(1, std::memory_order_relaxed);
    return Status(ErrorCode::kOutOfRegion,
                  fmt::format("fault at {:#x}: page [{:#x}, +{:#x}) is outside every registered "
                              "region",
                              gpa, page_gpa, page_size));
  }
  window = std::clamp<uint64_t>(window, page_size, dest.size());
  Gpa first = page_gpa;
  if (before != 0) {
    before &= ~(page_size - 1);
    // The window must still hold the page, and lie inside one region.
    if (before >= window || before > page_gpa ||
        !p.regions_.contains_range(page_gpa - before, window)) {
      before = 0;
      window = page_size;  // as documented: the page alone
    }
    first = page_gpa - before;
  }
  uint64_t length = p.regions_.room_after(first, window) & ~(page_size - 1);
  // The pages around are a bonus: one try for the window, and if that fails
  // (it may reach where the source cannot), the faulting page alone gets the
  // full retry policy.
  Result<PageKind> fetched = Status(ErrorCode::kUnavailable, "not fetched");
  if (length > page_size) fetched = p.source_->fetch(first, dest.first(length));
  if (!fetched.is_ok()) {
    first = page_gpa;
    length = page_size;
    fetched = p.fetch_with_retry(page_gpa, dest.first(length));
  }
  if (!fetched.is_ok()) {
    p.counters_.source_errors.fetch_add(1, std::memory_order_relaxed);
    return fetched.status();
  }
  p.counters_.faults.fetch_add(1, std::memory_order_relaxed);
  p.counters_.fault_around_pages.fetch_add(length / page_size - 1, std::memory_order_relaxed);
  p.counters_.bytes_served.fetch_add(length, std::memory_order_relaxed);
  if (*fetched == PageKind::kZero) {
    p.counters_.zero_pages.fetch_add(length / page_size, std::memory_order_relaxed);
  }
  p.counters_.fault_latency.record(nanos_since(start));
  return ServedPage{page_gpa, *fetched, length, first};
}

Result<PageKind> Pager::fetch_around(Gpa gpa, uint64_t page_size, std::span<std::byte> dest) {
  Impl& p = *impl_;
  if (dest.empty() || !p.regions_.contains_range(gpa, dest.size())) {
    return Status(
        ErrorCode::kOutOfRegion,
        fmt::format("fault-around [{:#x}, +{:#x}) is not inside one region", gpa, dest.size()));
  }
  Result<PageKind> fetched = p.source_->fetch(gpa, dest);
  if (!fetched.is_ok()) return fetched;
  p.counters_.fault_around_pages.fetch_add(dest.size() / page_size, std::memory_order_relaxed);
  p.counters_.bytes_served.fetch_add(dest.size(), std::memory_order_relaxed);
  if (*fetched == PageKind::kZero) {
    p.counters_.zero_pages.fetch_add(dest.size() / page_size, std::memory_order_relaxed);
  }
  return fetched;
}

Result<PageKind> Pager::fetch_ahead(Gpa gpa, std::span<std::byte> dest) {
  Impl& p = *impl_;
  if (dest.empty() || !p.regions_.contains_range(gpa, dest.size())) {
    return Status(
        ErrorCode::kOutOfRegion,
        fmt::format("background fetch [{:#x}, +{:#x}) is not inside one region", gpa, dest.size()));
  }
  Result<PageKind> fetched = p.fetch_with_retry(gpa, dest);
  if (!fetched.is_ok()) {
    p.counters_.source_errors.fetch_add(1, std::memory_order_relaxed);
    return fetched.status();
  }
  p.counters_.fetched_ahead_pages.fetch_add(dest.size() / kMinPageSize, std::memory_order_relaxed);
  return fetched;
}

void Pager::count_installed_ahead(uint64_t bytes) {
  impl_->counters_.bytes_served.fetch_add(bytes, std::memory_order_relaxed);
}

Status Pager::prewarm() {
  return impl_->prewarm_into(nullptr);
}

Status Pager::prewarm(PageSink& sink) {
  return impl_->prewarm_into(&sink);
}

Status Pager::Impl::prewarm_into(PageSink* sink) {
  const uint64_t page_size = config_.prewarm_page_size;
  if (!is_valid_page_size(page_size)) {
    return invalid_argument(fmt::format("prewarm page size {} is not a power of two of at least {}",
                                        page_size, kMinPageSize));
  }
  std::vector<std::byte> buffer(page_size);
  for (const GuestRange& range : config_.prewarm.ranges()) {
    if (range.size == 0) continue;
    const uint64_t first = range.base & ~(page_size - 1);
    const uint64_t last = (range.base + range.size - 1) & ~(page_size - 1);
    for (uint64_t page = first;; page += page_size) {
      if (!regions_.contains_range(page, page_size)) {
        counters_.out_of_region.fetch_add(1, std::memory_order_relaxed);
        return Status(ErrorCode::kOutOfRegion,
                      fmt::format("prewarm page {:#x} (of range [{:#x}, +{:#x})) is outside "
                                  "every registered region",
                                  page, range.base, range.size));
      }
      Result<PageKind> fetched = fetch_with_retry(page, buffer);
      if (!fetched.is_ok()) {
        counters_.source_errors.fetch_add(1, std::memory_order_relaxed);
        return fetched.status().with_context("prewarm");
      }
      const bool zero = *fetched == PageKind::kZero;
      if (sink != nullptr) {
        Status installed =
            sink->install(page, page_size, zero ? std::span<const std::byte>{} : buffer);
        if (!installed.is_ok()) return installed.with_context("prewarm");
      }
      counters_.prewarmed.fetch_add(1, std::memory_order_relaxed);
      counters_.bytes_served.fetch_add(page_size, std::memory_order_relaxed);
      if (zero) counters_.zero_pages.fetch_add(1, std::memory_order_relaxed);
      if (page == last) break;
    }
  }
  return Status::ok();
}

PagerStats Pager::stats() const {
  const Impl& p = *impl_;
  PagerStats s;
#define FAULTLINE_LOAD_COUNTER(name) s.name = p.counters_.name.load(std::memory_order_relaxed);
  FAULTLINE_PAGER_COUNTERS(FAULTLINE_LOAD_COUNTER)
#undef FAULTLINE_LOAD_COUNTER
  s.fault_latency = p.counters_.fault_latency.summary();
  return s;
}

void Pager::request_shutdown() {
  if (impl_->shutdown_.exchange(true, std::memory_order_acq_rel)) return;
  std::vector<std::function<void()>> to_call;
  {
    std::lock_guard lock(impl_->listeners_mu_);
    for (auto& [id, listener] : impl_->listeners_) to_call.push_back(listener);
  }
  for (auto& listener : to_call) listener();
}

uint64_t Pager::add_shutdown_listener(
    std::function<void()> listener) {  // NOLINT(performance-unnecessary-value-param): stored
  uint64_t id = 0;
  {
    std::lock_guard lock(impl_->listeners_mu_);
    id = impl_->next_listener_id_++;
    impl_->listeners_.emplace_back(id, listener);  // copied: called below too
  }
  if (shutdown_requested()) listener();
  return id;
}

void Pager::remove_shutdown_listener(uint64_t id) {
  std::lock_guard lock(impl_->listeners_mu_);
  std::erase_if(impl_->listeners_, [id](const auto& entry) { return entry.first == id; });
}

}  // namespace faultline
