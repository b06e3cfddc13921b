// The Pager: the portable core. It knows which guest-physical ranges are served
// lazily, turns "a fault at address A" into "these bytes for page P", and keeps
// the books. It never touches the OS; a fault backend (see fault_server.h)
// receives faults and installs what the Pager returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "faultline/page_sink.h"
#include "faultline/page_source.h"
#include "faultline/stats.h"
#include "faultline/status.h"

namespace faultline {

// [base, base + size) in guest-physical address space.
struct GuestRange {
  uint64_t base = 0;
  uint64_t size = 0;
};

// Pages to fault in before vCPU 0 runs.
class PrewarmList {
 public:
  PrewarmList() = default;
  // The pages a booting guest touches first: its kernel text, vCPU 0's stack
  // and the device tree (or boot parameters).
  static PrewarmList from_boot_critical(GuestRange kernel_text, GuestRange vcpu0_stack,
                                        GuestRange fdt);

  void add(GuestRange range) { ranges_.push_back(range); }
  const std::vector<GuestRange>& ranges() const { return ranges_; }
  bool empty() const { return ranges_.empty(); }

 private:
  std::vector<GuestRange> ranges_;
};

// How long a failing source is retried before the fault is given up on.
struct RetryPolicy {
  std::chrono::milliseconds initial_backoff{1};
  std::chrono::milliseconds max_backoff{200};
  // Total time one fault may spend retrying; zero means no retries.
  std::chrono::milliseconds deadline{5000};
};

struct PagerConfig {
  PrewarmList prewarm;
  // The page size prewarm() serves in.
  uint64_t prewarm_page_size = kMinPageSize;
  RetryPolicy source_retry;
};

// The outcome of one served fault.
struct ServedPage {
  Gpa page_gpa = 0;  // the faulting address aligned down to the page
  PageKind kind = PageKind::kData;
  uint64_t length = 0;  // bytes fetched from `first` on: the page, or a window
  Gpa first = 0;        // where the fetched bytes begin: page_gpa, or before it
};

class Pager;
// Shared ownership of a Pager: the fault-server thread holds one for its run.
using PagerHandle = std::shared_ptr<Pager>;

class Pager {
 public:
  static constexpr size_t kMaxRegions = 64;

  // A pager around one page source. Regions are added afterwards.
  static PagerHandle create(std::unique_ptr<PageSource> source, PagerConfig config = {});

  Pager(const Pager&) = delete;
  Pager& operator=(const Pager&) = delete;
  ~Pager();

  // Serve [base, base + size) lazily. Rejects empty, wrapping, unaligned
  // (to 4 KiB) and overlapping ranges, and more than kMaxRegions regions.
  Status register_region(uint64_t base, uint64_t size);

  // Fault in every page of the config's prewarm list, first error wins.
  // Without a sink the pages are only fetched (warming the source); with one
  // they are installed through it.
  Status prewarm();
  Status prewarm(PageSink& sink);

  // Serve one fault: align `gpa` down to `page_size` (a power of two, at least
  // 4 KiB), fetch the page into `dest` (at least page_size bytes) and count it.
  // When the result is kZero, `dest` may not have been written. kOutOfRegion
  // outside every region; kSource (with the source's message) when the source
  // failed after every retry; kShutdown if shutdown came during retries.
  // No allocation and no exception on success.
  // Fault-around: with a `window` (a multiple of page_size; clipped to the
  // region and to `dest`) the pages after the faulting one are fetched with it,
  // up to `window` bytes from the page, in one fetch; 0 means the page alone.
  // `before` (a multiple of page_size) starts the window that many bytes
  // before the page instead (window then counts from there); if that range
  // is not inside one region or cannot be fetched, the page alone is.
  // Counts one fault and length / page_size - 1 pages around it. kZero only
  // when the whole length is zero.
  Result<ServedPage> serve_fault(Gpa gpa, uint64_t page_size, std::span<std::byte> dest,
                                 uint64_t window = 0, uint64_t before = 0);
  // Fault-around fetched apart from the faulting page (which was served
  // first): one try, no retries (the pages are a bonus; they fault later if
  // this fails). Counted as fault-around pages and served bytes.
  Result<PageKind> fetch_around(Gpa gpa, uint64_t page_size, std::span<std::byte> dest);
  // Background fill: fetch [gpa, gpa + dest.size()) (inside one region) for a
  // backend installing pages nobody has asked for yet.
  // Counted apart from faults; bytes_served counts only what the backend then
  // reports installed with count_installed_ahead (not pages another install
  // got to first, nor an install that failed).
  Result<PageKind> fetch_ahead(Gpa gpa, std::span<std::byte> dest);
  void count_installed_ahead(uint64_t bytes);

  bool contains_gpa(Gpa gpa) const;
  // True if the whole of [base, base + size) lies inside one region.
  bool contains_range(uint64_t base, uint64_t size) const;

  PagerStats stats() const;

  // Ask every fault server of this pager to stop. Prompt: listeners are called
  // at once. Idempotent.
  void request_shutdown();
  bool shutdown_requested() const;
  // Called once on request_shutdown() (or at once if it already happened).
  // Returns an id for remove_shutdown_listener.
  uint64_t add_shutdown_listener(std::function<void()> listener);
  void remove_shutdown_listener(uint64_t id);

  // A reference-counted handle to this pager.
  PagerHandle handle();

  const PagerConfig& config() const;
  const PageSource& source() const;

 private:
  class Impl;
  explicit Pager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace faultline
