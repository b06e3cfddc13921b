// Background fill: while the guest runs, install every page it has not asked
// for yet, in chunks, always giving way to demand faults, until all of guest
// memory is resident.
#include <fmt/format.h>
#include <poll.h>

#include "core/log.h"
#include "os_linux/fault_server_impl.h"

namespace faultline {
namespace {

constexpr uint64_t kFillChunk = 256ull << 10;

}  // namespace

// A fault is queued (unread) or being served right now.
bool FaultServer::Impl::demand_waiting() const {
  if (faults_in_service_.load(std::memory_order_relaxed) > 0) return true;
  pollfd pfd{uffd_.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN) != 0;
}

void FaultServer::Impl::fill_loop() {
  auto buffer =
      AnonymousMemory::map(std::max(kFillChunk, options_.max_page_size), "background fill buffer");
  if (!buffer.is_ok()) {
    log().warn("{}: no buffer for background fill: {}", options_.name, buffer.status().to_string());
    return;
  }
  const PrefetchOptions& p = options_.prefetch;
  if (p.working_set != nullptr && p.policy != PrefetchPolicy::kDemand) {
    if (!replay_working_set(*p.working_set, buffer->bytes())) return;
  }
  if (p.policy != PrefetchPolicy::kFull || !p.fill) return;
  for (size_t i = 0; i < mappings_.size(); ++i) {
    if (!fill_mapping(mappings_.at(i), buffer->bytes())) return;
  }
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

// False if filling must stop (shutdown, a failing source, the process gone).
bool FaultServer::Impl::fill_mapping(Mapping& m, std::span<std::byte> buffer) {
  const uint64_t page_size = m.layout.page_size;
  const uint64_t chunk_pages = std::max<uint64_t>(1, kFillChunk / page_size);
  uint64_t page = 0;
  while (page < m.pages()) {
    if (stopping_.load(std::memory_order_relaxed)) return false;
    if (m.retired.load()) return true;
    if (m.resident.test(page) || m.removed.test(page)) {
      ++page;
      continue;
    }
    while (demand_waiting()) {
      if (stopping_.load(std::memory_order_relaxed)) return false;
      std::this_thread::yield();
    }
    uint64_t pages = 1;
    while (pages < chunk_pages && page + pages < m.pages() && !m.resident.test(page + pages) &&
           !m.removed.test(page + pages)) {
      ++pages;
    }
    const uint64_t host = m.host_begin() + page * page_size;
    auto chunk = buffer.first(pages * page_size);
    Result<PageKind> fetched = pager_->fetch_ahead(m.guest_address(host), chunk);
    if (!fetched.is_ok()) {
      // Demand faults will meet the same trouble and deal with it.
      log().warn("{}: background fill stops: {}", options_.name, fetched.status().to_string());
      return false;
    }
    const std::byte* src = *fetched == PageKind::kData ? chunk.data() : nullptr;
    uint64_t installed_bytes = 0;
    Result<Installed> installed =
        install_range(m, host, chunk.size(), src, buffer, &installed_bytes);
    // Only what reached guest memory is served: not pages demand faults
    // installed first, nor a chunk that must be fetched again.
    pager_->count_installed_ahead(installed_bytes);
    if (!installed.is_ok()) {
      log().warn("{}: background fill stops: {}", options_.name, installed.status().to_string());
      return false;
    }
    if (*installed == Installed::kGone) return false;
    if (*installed == Installed::kAgain) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      continue;  // the address space is changing; look again
    }
    filled_pages_.fetch_add(pages, std::memory_order_relaxed);
    ++page;  // the rest of the chunk is skipped above if it is now resident
  }
  return true;
}

// Installs the working set's pages in recorded order, runs of adjacent
// pages together, giving way to demand faults. Pages the guest got to
// first, removed ones and ones outside every mapping are skipped. False if
// the server must stop.
bool FaultServer::Impl::replay_working_set(const WorkingSet& ws, std::span<std::byte> buffer) {
  const auto touches = ws.touches();
  size_t i = 0;
  while (i < touches.size()) {
    if (stopping_.load(std::memory_order_relaxed)) return false;
    const WorkingSetTouch& first = touches[i];
    Mapping* m = mappings_.find_guest(first.gpa, first.page_size);
    if (m == nullptr || m->retired.load() || first.page_size != m->layout.page_size) {
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
    const uint64_t host = m->host_address(first.gpa);
    const uint64_t page = m->page_index(host);
    // Only the part still missing, from its first missing page.
    uint64_t skip = 0;
    while (skip < n && (m->resident.test(page + skip) || m->removed.test(page + skip))) ++skip;
    uint64_t len = 0;
    while (skip + len < n && !m->resident.test(page + skip + len) &&
           !m->removed.test(page + skip + len)) {
      ++len;
    }
    if (len == 0) {
      i += n;
      continue;
    }
    while (demand_waiting()) {
      if (stopping_.load(std::memory_order_relaxed)) return false;
      std::this_thread::yield();
    }
    const uint64_t start = host + skip * page_size;
    auto chunk = buffer.first(len * page_size);
    Result<PageKind> fetched = pager_->fetch_ahead(m->guest_address(start), chunk);
    if (!fetched.is_ok()) {
      log().warn("{}: working-set replay stops: {}", options_.name, fetched.status().to_string());
      return false;
    }
    uint64_t installed_bytes = 0;
    Result<Installed> installed =
        install_range(*m, start, chunk.size(), *fetched == PageKind::kData ? chunk.data() : nullptr,
                      buffer, &installed_bytes);
    pager_->count_installed_ahead(installed_bytes);
    if (!installed.is_ok() || *installed == Installed::kGone) return false;
    if (*installed == Installed::kAgain) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      continue;  // look at the same run again
    }
    replayed_pages_.fetch_add(installed_bytes / page_size, std::memory_order_relaxed);
    // The rest of this run (after a page someone else installed) next time round.
    if (skip + len >= n) i += n;
  }
  log().debug("{}: working set replayed", options_.name);
  return true;
}

}  // namespace faultline
