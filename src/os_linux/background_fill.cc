// Background fill: while the guest runs, install the pages it has not asked
// for yet. A working set, if there is one, goes first, in recorded order;
// then (policy full) everything else, starting where the guest touched last
// and moving on from there, in chunks the source's cost model sizes. Pages a
// demand fault (or anyone else) is fetching are claimed and skipped, so no
// range is fetched twice; removed (ballooned) pages are skipped too.
#include <fmt/format.h>
#include <poll.h>

#include <thread>

#include "core/log.h"
#include "os_linux/fault_server_impl.h"

namespace faultline {
namespace {

// The fill's largest chunk (and its buffer).
constexpr uint64_t kMaxFillChunk = 2ull << 20;
// How long the fill waits for the guest's first fault to tell it where to start.
constexpr auto kFirstFaultWait = std::chrono::milliseconds(5);

uint64_t nanos_since(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count());
}

}  // namespace

// A fault is queued (unread) or being served right now.
bool FaultServer::Impl::demand_waiting() const {
  if (faults_in_service_.load(std::memory_order_relaxed) > 0) return true;
  pollfd pfd{uffd_.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN) != 0;
}

// Demand goes first. With a core to spare beside the serving threads the
// fill runs alongside them; without one it waits while faults are queued.
bool FaultServer::Impl::give_way_to_demand() {
  if (spare_core_) return !stopping_.load(std::memory_order_relaxed);
  while (demand_waiting()) {
    if (stopping_.load(std::memory_order_relaxed)) return false;
    std::this_thread::yield();
  }
  return !stopping_.load(std::memory_order_relaxed);
}

void FaultServer::Impl::fill_loop() {
  auto buffer = AnonymousMemory::map(std::max(kMaxFillChunk, options_.max_page_size),
                                     "background fill buffer");
  if (!buffer.is_ok()) {
    log().warn("{}: no buffer for background fill: {}", options_.name, buffer.status().to_string());
    return;
  }
  const PrefetchOptions& p = options_.prefetch;
  if (p.working_set != nullptr && p.policy != PrefetchPolicy::kDemand) {
    if (!replay_working_set(*p.working_set, buffer->bytes())) return;
  }
  if (p.policy != PrefetchPolicy::kFull || !p.fill) return;
  if (!fill_everything(buffer->bytes())) return;
  if (!everything_resident()) {
    log().warn("{}: background fill ended with pages still missing", options_.name);
  }
}

void FaultServer::Impl::note_fully_resident() {
  const auto took = std::chrono::steady_clock::now() - started_at_;
  uint64_t expected = 0;
  if (fully_resident_ns_.compare_exchange_strong(
          expected, static_cast<uint64_t>(
                        std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()))) {
    log().debug("{}: everything resident after {:.1f} ms", options_.name,
                std::chrono::duration<double, std::milli>(took).count());
  }
}

// Fetches and installs the claimed run [page, page + pages) of `m`, then
// releases it. False if filling must stop (shutdown, a failing source, the
// process gone).
bool FaultServer::Impl::fill_run(Mapping& m, uint64_t page, uint64_t pages,
                                 std::span<std::byte> buffer, std::atomic<uint64_t>& counter) {
  const uint64_t page_size = m.layout.page_size;
  struct Release {
    Mapping& m;
    uint64_t first, count;
    ~Release() { m.release(first, count); }
  } release{m, page, pages};
  const uint64_t host = m.host_begin() + page * page_size;
  auto chunk = buffer.first(pages * page_size);
  const auto start = std::chrono::steady_clock::now();
  Result<PageKind> fetched = pager_->fetch_ahead(m.guest_address(host), chunk);
  if (!fetched.is_ok()) {
    // Demand faults will meet the same trouble and deal with it.
    log().warn("{}: background fill stops: {}", options_.name, fetched.status().to_string());
    return false;
  }
  const uint64_t fetch_ns = nanos_since(start);
  const std::byte* src = *fetched == PageKind::kData ? chunk.data() : nullptr;
  const auto install_start = std::chrono::steady_clock::now();
  for (;;) {
    // The bytes stay good across retries: install_range checks removals anew.
    uint64_t installed_bytes = 0;
    Result<Installed> installed = install_range(m, host, chunk.size(), src, &installed_bytes);
    // Only what reached guest memory is served: not pages demand faults
    // installed first, nor a chunk that must be fetched again.
    pager_->count_installed_ahead(installed_bytes);
    counter.fetch_add(installed_bytes / page_size, std::memory_order_relaxed);
    if (!installed.is_ok()) {
      log().warn("{}: background fill stops: {}", options_.name, installed.status().to_string());
      return false;
    }
    if (*installed == Installed::kGone) return false;
    if (*installed == Installed::kDone) break;
    // kAgain: the address space is changing; a serving thread reads the event.
    if (stopping_.load(std::memory_order_relaxed)) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  cost_.record(chunk.size(), fetch_ns + nanos_since(install_start));
  return true;
}

// Everything still wanted, from where the guest touched last onwards,
// wrapping round, until every page is present. A page claimed by someone
// else is left to them, but if their install fell through (an address space
// change, a failed fetch) it is wanted again and the next sweep takes it.
// False if filling must stop.
bool FaultServer::Impl::fill_everything(std::span<std::byte> buffer) {
  // Start where the guest starts: wait a moment for its first fault.
  const auto first_fault_by = std::chrono::steady_clock::now() + kFirstFaultWait;
  while (fill_hint_.load(std::memory_order_relaxed) == 0 &&
         std::chrono::steady_clock::now() < first_fault_by) {
    if (stopping_.load(std::memory_order_relaxed)) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  if (mappings_.size() == 0) return true;
  uint64_t hint_seen = ~uint64_t{0};
  size_t mapping = 0;
  uint64_t page = 0;
  size_t swept = 0;  // mappings found with nothing wanted since work was last found
  for (;;) {
    if (stopping_.load(std::memory_order_relaxed)) return false;
    if (swept > mappings_.size()) {
      if (everything_resident()) return true;
      // Claimed pages are still on their way: look again shortly.
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      swept = 0;
    }
    const uint64_t hint = fill_hint_.load(std::memory_order_relaxed);
    if (hint != hint_seen) {
      hint_seen = hint;
      for (size_t i = 0; i < mappings_.size(); ++i) {
        Mapping& m = mappings_.at(i);
        if (!m.retired.load() && hint >= m.host_begin() && hint < m.host_end()) {
          mapping = i;
          page = m.page_index(hint);
          break;
        }
      }
    }
    if (mapping >= mappings_.size()) mapping = 0;
    Mapping& m = mappings_.at(mapping);
    if (m.retired.load()) {
      mapping = (mapping + 1) % mappings_.size();
      page = 0;
      ++swept;
      continue;
    }
    page = m.next_wanted(page);
    if (page >= m.pages()) {
      mapping = (mapping + 1) % mappings_.size();
      page = 0;
      ++swept;
      continue;
    }
    swept = 0;
    if (!give_way_to_demand()) return false;
    const uint64_t page_size = m.layout.page_size;
    const uint64_t chunk_pages = std::max<uint64_t>(
        1, cost_.window_for(page_size, std::min(kMaxFillChunk, buffer.size())) / page_size);
    const uint64_t claimed = m.claim_run(page, chunk_pages);
    if (claimed == 0) {
      ++page;
      continue;
    }
    if (!fill_run(m, page, claimed, buffer, filled_pages_)) return false;
    page += claimed;
  }
  return true;
}

// Installs the working set's pages in recorded order, runs of adjacent
// pages together. Pages the guest got to first, removed ones and ones
// outside every mapping are skipped. False if the server must stop.
bool FaultServer::Impl::replay_working_set(const WorkingSet& ws, std::span<std::byte> buffer) {
  const auto touches = ws.touches();
  size_t i = 0;
  while (i < touches.size()) {
    if (stopping_.load(std::memory_order_relaxed)) return false;
    const WorkingSetTouch& first = touches[i];
    Mapping* m = mappings_.find_guest(first.gpa, first.page_size);
    if (m == nullptr || first.page_size != m->layout.page_size) {
      ++i;
      continue;
    }
    const uint64_t page_size = m->layout.page_size;
    // A run: the next touches follow page by page, in this mapping.
    size_t n = 1;
    while (i + n < touches.size() && (n + 1) * page_size <= buffer.size() &&
           touches[i + n].page_size == page_size &&
           touches[i + n].gpa == first.gpa + n * page_size &&
           m->contains_guest(touches[i + n].gpa, page_size)) {
      ++n;
    }
    const uint64_t run_first = m->page_index(m->host_address(first.gpa));
    uint64_t at = 0;
    while (at < n) {
      if (!m->wanted(run_first + at)) {
        ++at;
        continue;
      }
      if (!give_way_to_demand()) return false;
      const uint64_t claimed = m->claim_run(run_first + at, n - at);
      if (claimed == 0) {
        ++at;
        continue;
      }
      if (!fill_run(*m, run_first + at, claimed, buffer, replayed_pages_)) return false;
      at += claimed;
    }
    i += n;
  }
  log().debug("{}: working set replayed", options_.name);
  return true;
}

}  // namespace faultline
