// The Linux fault backend: a userfaultfd and the thread(s) that serve it.
//
// The server owns a userfaultfd, the mapping from host memory to guest-physical
// ranges, and the threads that read fault events, ask the Pager for the page and
// install it (UFFDIO_COPY, or UFFDIO_ZEROPAGE for zero pages), waking the
// faulting thread.
//
// When the source fails for good (the Pager's retry deadline has passed), the
// faulting access must neither see wrong bytes nor hang silently. What happens
// is chosen by FaultServerOptions::on_source_failure:
//   kPoisonPage (default): the page is marked poisoned (UFFDIO_POISON, Linux
//     6.6+), so the faulting access gets SIGBUS (BUS_MCEERR_AR), the way a VMM
//     sees a hardware memory error; the server keeps serving other pages.
//   kStopServer: the server stops; wait() returns the source's error. The
//     faulting thread stays blocked until the server is destroyed.
// Either way the failure is counted, logged and handed to on_failure.
//
// Non-fault events are handled when the VMM enabled them on the userfaultfd:
// REMOVE (balloon, MADV_DONTNEED) makes the range read as zeros from then on;
// UNMAP forgets the range; REMAP follows it to its new address; FORK serves the
// child's copy of guest memory too. A removal and an install of the same page
// exclude each other, so source bytes never land where zeros are due.
//
// Destroying the server closes the userfaultfd. Pages not installed by then
// are poisoned first where the kernel allows it, so a late access gets SIGBUS
// rather than the zero page the kernel would otherwise supply.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "faultline/page_sink.h"
#include "faultline/pager.h"
#include "faultline/prefetch.h"
#include "faultline/stats.h"
#include "faultline/status.h"
#include "faultline/unique_fd.h"

namespace faultline {

// Host memory at [host_addr, host_addr + size) backs guest-physical
// [gpa, gpa + size), in pages of page_size bytes.
struct GuestMapping {
  Gpa gpa = 0;
  void* host_addr = nullptr;
  uint64_t size = 0;
  uint64_t page_size = kMinPageSize;
};

enum class SourceFailurePolicy { kPoisonPage, kStopServer };

struct FaultServerOptions {
  SourceFailurePolicy on_source_failure = SourceFailurePolicy::kPoisonPage;
  // Threads reading and serving fault events.
  int threads = 1;
  // Largest page size any mapping will use (buffer size per thread).
  uint64_t max_page_size = 2ull << 20;
  // Called (from a server thread) for every fault given up on.
  std::function<void(const Status&)> on_failure;
  // Name used in log lines.
  std::string name = "fault-server";
  // Poison pages never installed before the userfaultfd closes (see above).
  bool poison_on_destroy = true;
  // What to install besides the page a fault asks for (see prefetch.h): by
  // default adaptive fault-around and background fill until all is resident.
  PrefetchOptions prefetch;
  // After serving a batch of faults, keep looking for the next fault this long
  // before sleeping in poll() (a burst then costs no wake-up per fault).
  std::chrono::microseconds spin{0};
  // How often a thread with nothing to do re-checks for shutdown. Shutdown is
  // also signalled at once; this is only the backstop.
  std::chrono::milliseconds poll_interval{100};
};

// Counters of the backend itself (the Pager counts faults and bytes), each
// named once here: FaultServerStats holds them as plain fields, and the server
// keeps atomics made from the same list.
#define FAULTLINE_FAULT_SERVER_COUNTERS(X)                                               \
  X(events)                /* fault events read from the userfaultfd */                  \
  X(copies)                /* UFFDIO_COPY calls that installed bytes */                  \
  X(zero_installs)         /* UFFDIO_ZEROPAGE calls */                                   \
  X(already_present)       /* EEXIST: someone installed the page first */                \
  X(woken_present)         /* faults on pages installed meanwhile: woken, not fetched */ \
  X(retried_installs)      /* EAGAIN: install retried */                                 \
  X(poisoned)              /* pages poisoned after a source failure */                   \
  X(failed_faults)         /* faults given up on */                                      \
  X(removed_ranges)        /* UFFD_EVENT_REMOVE: ranges dropped by the VMM (balloon) */  \
  X(removed_pages)         /* pages in them; they read as zeros from then on */          \
  X(removed_zero_installs) /* faults in removed pages, answered with zeros */            \
  X(unmapped_ranges)       /* UFFD_EVENT_UNMAP */                                        \
  X(remaps)                /* UFFD_EVENT_REMAP: a range moved by mremap */               \
  X(forks)                 /* UFFD_EVENT_FORK: a child process now served too */         \
  X(demand_pages)          /* faulting pages installed for their fault */                \
  X(around_pages)          /* pages installed with a fault, around its page */           \
  X(already_coming)        /* faults on a page another install was bringing */           \
  X(filled_pages)          /* pages installed by background fill */                      \
  X(pushed_pages)          /* pages installed as a network source pushed them */         \
  X(replayed_pages)        /* pages installed ahead of the guest from a working set */   \
  /* The window the cost model gives a fault that follows no stream (bytes).   */         \
  X(window_bytes)                                                                         \
  /* Nanoseconds from start() until every page was resident (background fill  */         \
  /* finished); 0 while some page is still missing. */                                   \
  X(fully_resident_ns)

struct FaultServerStats {
  FAULTLINE_FAULT_SERVER_COUNTERS(FAULTLINE_COUNTER_FIELD)
};

class FaultServer : public PageSink {
 public:
  // Opens a fresh userfaultfd (/dev/userfaultfd, else the syscall).
  static Result<std::unique_ptr<FaultServer>> create(PagerHandle pager,
                                                     FaultServerOptions options = {});
  // Serves a userfaultfd made elsewhere (e.g. received from a VMM) on which
  // UFFDIO_API has already been done; its ranges must then be added with
  // adopt_mapping() (already registered) rather than map().
  static Result<std::unique_ptr<FaultServer>> adopt(PagerHandle pager, UniqueFd uffd,
                                                    FaultServerOptions options = {});

  ~FaultServer() override;
  FaultServer(const FaultServer&) = delete;
  FaultServer& operator=(const FaultServer&) = delete;

  // Registers the host range with the userfaultfd (missing-page mode) and serves
  // its faults. The guest range must lie inside one of the Pager's regions;
  // addresses and size must be aligned to page_size. The host memory must be
  // mapped and not yet touched.
  Status map(const GuestMapping& mapping);
  // Like map() for a range someone else already registered on the adopted fd.
  Status adopt_mapping(const GuestMapping& mapping);

  // Starts the server threads. Faults before start() wait until it.
  Status start();

  // Fetches and installs the Pager's prewarm list. Call before vCPUs run.
  Status prewarm();

  // PageSink, for pages that arrive unasked (a network source's push, see
  // NetworkPageSource::start_push): installs whole pages of the mappings,
  // leaving present ones alone, counted in stats().pushed_pages; whether a
  // page is present (installed or removed).
  Status install(Gpa gpa, uint64_t length, std::span<const std::byte> bytes) override;
  bool holds_page(Gpa gpa) const override;
  // Whether every page of every mapping is present (installed or removed);
  // the first time it is, stats().fully_resident_ns is set. O(pages).
  bool everything_resident();

  // Stops the threads promptly, after serving the fault events already queued.
  void request_shutdown();
  // Waits for the threads to stop. OK after a requested shutdown; the source's
  // error when the server stopped itself (kStopServer).
  Status wait();

  FaultServerStats stats() const;
  // False once the threads have stopped (requested, failed, or the process
  // whose memory this is went away).
  bool running() const;
  const Pager& pager() const;
  // Whether this kernel can poison pages (UFFDIO_POISON) on this server's
  // userfaultfd, adopted ones included.
  bool can_poison() const;

 private:
  class Impl;
  explicit FaultServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace faultline
