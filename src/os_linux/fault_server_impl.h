// The fault server's insides, shared by the files that hold its parts:
//   fault_server.cc          life cycle: create, map, start, stop, stats
//   fault_loop.cc            reading events and serving faults (fault-around, spin)
//   page_installer.cc        UFFDIO_COPY / ZEROPAGE / POISON, and failed faults
//   address_space_events.cc  REMOVE, UNMAP, REMAP, FORK
//   background_fill.cc       installing what nobody has asked for yet
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <thread>
#include <vector>

#include "core/fetch_cost_model.h"
#include "faultline/fault_server.h"
#include "os_linux/anonymous_memory.h"
#include "os_linux/fault_streams.h"
#include "os_linux/mapping_table.h"
#include "os_linux/uffd.h"

namespace faultline {

// What became of one fault event.
enum class Served { kDone, kRetryLater, kStop };

// The outcome of installing a range.
enum class Installed { kDone, kAgain, kGone };

class FaultServer::Impl {
 public:
  Impl(PagerHandle pager, UniqueFd uffd, uint64_t features, bool owns_registration,
       FaultServerOptions options);
  ~Impl();

  Status init();
  Status map(const GuestMapping& m, bool register_with_uffd);
  Status start();
  // The Pager's prewarm list, installed page by page (not counted as pushed).
  Status prewarm();
  Status install_guest_page(Gpa page_gpa, uint64_t page_size, std::span<const std::byte> bytes);
  Status install_pushed(Gpa gpa, uint64_t length, std::span<const std::byte> bytes);
  bool holds_page(Gpa gpa);
  bool everything_resident();
  void request_shutdown();
  Status wait();
  bool running() const { return running_threads_.load() > 0; }
  FaultServerStats stats() const;
  const Pager& pager() const { return *pager_; }
  bool can_poison() const { return (features_ & UFFD_FEATURE_POISON) != 0; }

 private:
  class PrewarmSink;

  // A fault event: where, and whether the access wrote.
  struct Fault {
    uint64_t address = 0;
    bool write = false;
    bool parked = false;  // left to another install of its page (counted once)
  };

  // Per serving thread: its buffer, its faults waiting on EAGAIN, its streams.
  struct ThreadState {
    std::span<std::byte> buffer;
    std::vector<Fault> deferred;
    FaultStreams streams;
    bool draining = false;  // shutting down: serve what is queued, claimed or not
  };

  // fault_loop.cc
  void serve_loop();
  bool read_and_serve(ThreadState& t);
  bool retry_deferred(ThreadState& t);
  bool spin_for_more(ThreadState& t);
  Served serve_fault_at(Fault& fault, ThreadState& t);
  // Pages [lo, hi) of a mapping a demand fault may bring with it.
  struct Window {
    uint64_t lo = 0;
    uint64_t hi = 0;
  };
  Window demand_window(const Mapping& m, uint64_t page, ThreadState& t);
  Served leave_to_claimer(Mapping& m, uint64_t host_page, Fault& fault);
  Served serve_window(Mapping& m, uint64_t page, uint64_t first, uint64_t count, ThreadState& t);
  Served serve_page_then_around(Mapping& m, uint64_t page, uint64_t first, uint64_t count,
                                ThreadState& t);
  Served install_demand(Mapping& m, uint64_t host_page, uint64_t page_size, const std::byte* bytes);

  // page_installer.cc
  // `installed_bytes` (if given) grows by what this call itself installed.
  Result<Installed> install_range(Mapping& m, uint64_t host, uint64_t len, const std::byte* src,
                                  uint64_t* installed_bytes = nullptr);
  Served fail_fault(Mapping* m, uint64_t host_page, uint64_t page_size, const Status& why);
  bool poison_page(uint64_t host_page, uint64_t page_size);
  void poison_unresident();

  // address_space_events.cc
  void apply_event(const uffd_msg& msg);
  void apply_remap(uint64_t from, uint64_t to, uint64_t len);
  void adopt_child(UniqueFd child_uffd);

  // background_fill.cc
  void fill_loop();
  bool fill_everything(std::span<std::byte> buffer);
  bool fill_run(Mapping& m, uint64_t page, uint64_t pages, std::span<std::byte> buffer,
                std::atomic<uint64_t>& counter);
  bool replay_working_set(const WorkingSet& ws, std::span<std::byte> buffer);
  bool demand_waiting() const;
  bool give_way_to_demand();
  void note_fully_resident();

  void join();
  void stop_with(const Status& why);
  bool stopped_by_failure();
  uint64_t max_window_bytes() const;
  // Whether a fill thread runs: replaying a working set, or filling (kFull).
  bool fills_in_background() const;

  PagerHandle pager_;
  FaultServerOptions options_;
  UniqueFd uffd_;
  UniqueFd wake_;
  uint64_t features_;
  bool owns_registration_;
  uint64_t listener_id_ = 0;
  MappingTable mappings_;
  // The source's measured costs, shared by demand and fill.
  FetchCostModel cost_;
  // Host address just past the last demand window: the fill works from here.
  std::atomic<uint64_t> fill_hint_{0};
  // More cores than serving threads: the fill runs beside them.
  bool spare_core_ = false;
  // Shared by installs, exclusive while reading events and applying the
  // non-fault ones: no install can slip in between the kernel learning that
  // a removal was read and our marking of it (see read_and_serve).
  std::shared_mutex events_mu_;

  std::mutex threads_mu_;
  std::vector<std::thread> threads_;
  std::atomic<int> running_threads_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<int> faults_in_service_{0};
  std::chrono::steady_clock::time_point started_at_;
  std::mutex status_mu_;
  Status stop_status_;
  std::mutex children_mu_;
  std::vector<std::unique_ptr<Impl>> children_;  // servers of forked children

  // One atomic per counter of FaultServerStats, named as the field plus `_`.
#define FAULTLINE_ATOMIC_COUNTER(name) std::atomic<uint64_t> name##_{0};
  FAULTLINE_FAULT_SERVER_COUNTERS(FAULTLINE_ATOMIC_COUNTER)
#undef FAULTLINE_ATOMIC_COUNTER
  std::mutex push_mu_;  // one pushed range at a time
  // Never written: zeros to copy where UFFDIO_ZEROPAGE is not allowed.
  AnonymousMemory zeros_;
};

}  // namespace faultline
