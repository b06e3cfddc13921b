// Reading userfaultfd events and serving the faults among them.
#include <fmt/format.h>
#include <poll.h>

#include <cerrno>

#include "core/log.h"
#include "os_linux/fault_server_impl.h"

namespace faultline {
namespace {

constexpr int kEventsPerRead = 16;
constexpr size_t kDeferredReserve = 256;

void cpu_relax() {
  __builtin_ia32_pause();
}

}  // namespace

void FaultServer::Impl::serve_loop() {
  auto buffer = AnonymousMemory::map(max_window_bytes(), "fault server page buffer");
  if (!buffer.is_ok()) {
    stop_with(buffer.status());
    return;
  }
  ThreadState t{buffer->bytes(), {}, FaultStreams(options_.prefetch.max_window / kMinPageSize)};
  // Faults whose install met EAGAIN: the address space is changing and a
  // non-fault event is waiting to be read. Read it, then retry these.
  t.deferred.reserve(kDeferredReserve);
  const int poll_ms = static_cast<int>(options_.poll_interval.count());
  pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
  while (!stopping_.load(std::memory_order_acquire)) {
    const int timeout = !t.deferred.empty() ? 1 : (poll_ms > 0 ? poll_ms : 100);
    int ready = ::poll(fds, 2, timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      stop_with(io_error("poll on the userfaultfd", errno));
      return;
    }
    if ((fds[0].revents & (POLLERR | POLLHUP)) != 0) {
      // The process whose memory this is has gone (its mm was torn down).
      log().info("{}: userfaultfd hung up: the faulting process has exited", options_.name);
      stop_with(Status(ErrorCode::kUnavailable, "the faulting process has exited"));
      return;
    }
    if ((fds[0].revents & POLLIN) != 0) {
      if (!read_and_serve(t)) {
        if (stopping_.load()) break;
      } else if (!spin_for_more(t)) {
        break;
      }
    }
    if (!retry_deferred(t)) return;
  }
  // Serve what was already queued when shutdown came, so no fault that was
  // in flight is left behind; a stop caused by failure skips this.
  if (stopped_by_failure()) return;
  for (int round = 0; round < 1000; ++round) {
    const bool read_more = read_and_serve(t);
    if (!retry_deferred(t)) return;
    if (!read_more && t.deferred.empty()) return;
    if (!t.deferred.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Faults come in bursts: for a while after serving some, look for the next
// without paying for a sleep and a wake-up.
bool FaultServer::Impl::spin_for_more(ThreadState& t) {
  if (options_.spin.count() <= 0) return true;
  auto until = std::chrono::steady_clock::now() + options_.spin;
  while (std::chrono::steady_clock::now() < until) {
    if (stopping_.load(std::memory_order_relaxed)) return false;
    if (read_and_serve(t)) {
      until = std::chrono::steady_clock::now() + options_.spin;
    } else {
      for (int i = 0; i < 64; ++i) cpu_relax();
    }
  }
  return true;
}

// Reads one batch of events: non-fault events are applied first, under the
// exclusive side of events_mu_, so that no install can slip in between the
// kernel learning that the event was read and our bookkeeping of it. Then the
// faults are served. False when there was nothing to read or we must stop.
bool FaultServer::Impl::read_and_serve(ThreadState& t) {
  uffd_msg msgs[kEventsPerRead];
  ssize_t n = 0;
  {
    std::unique_lock lock(events_mu_);
    n = ::read(uffd_.get(), msgs, sizeof msgs);
    if (n > 0) {
      for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT) apply_event(msgs[i]);
      }
    }
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return false;
    stop_with(io_error("read from the userfaultfd", errno));
    return false;
  }
  if (n == 0) return false;
  const auto count = static_cast<size_t>(n) / sizeof(uffd_msg);
  for (size_t i = 0; i < count; ++i) {
    if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
    events_.fetch_add(1, std::memory_order_relaxed);
    const Fault fault{msgs[i].arg.pagefault.address,
                      (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0};
    Served served = serve_fault_at(fault, t);
    if (served == Served::kStop) return false;
    if (served == Served::kRetryLater) t.deferred.push_back(fault);
  }
  return true;
}

bool FaultServer::Impl::retry_deferred(ThreadState& t) {
  size_t kept = 0;
  for (const Fault& fault : t.deferred) {
    Served served = serve_fault_at(fault, t);
    if (served == Served::kStop) return false;
    if (served == Served::kRetryLater) t.deferred[kept++] = fault;
  }
  t.deferred.resize(kept);
  return true;
}

Served FaultServer::Impl::serve_fault_at(const Fault& fault, ThreadState& t) {
  const uint64_t address = fault.address;
  struct InService {
    explicit InService(std::atomic<int>& n) : n(n) { n.fetch_add(1, std::memory_order_relaxed); }
    ~InService() { n.fetch_sub(1, std::memory_order_relaxed); }
    std::atomic<int>& n;
  } in_service(faults_in_service_);

  Mapping* m = mappings_.find_host(address);
  if (m == nullptr) {
    // Registered memory we were never told about: nobody can serve it.
    return fail_fault(
        nullptr, address & ~(kMinPageSize - 1), kMinPageSize,
        Status(ErrorCode::kOutOfRegion,
               fmt::format("fault at host address {:#x} outside every mapping", address)));
  }
  const uint64_t page_size = m->layout.page_size;
  const uint64_t host_page = address & ~(page_size - 1);
  const uint64_t page = m->page_index(host_page);
  if (m->removed.test(page)) {
    removed_zero_installs_.fetch_add(1, std::memory_order_relaxed);
    Result<Installed> installed = install_range(*m, host_page, page_size, nullptr, t.buffer);
    if (!installed.is_ok()) return fail_fault(m, host_page, page_size, installed.status());
    if (*installed == Installed::kGone) {
      stop_with(Status(ErrorCode::kUnavailable, "the faulting process has exited"));
      return Served::kStop;
    }
    return *installed == Installed::kAgain ? Served::kRetryLater : Served::kDone;
  }
  if (m->resident.test(page)) {
    // Installed since the fault was raised (pushed, or by another thread):
    // never fetched twice; the install woke the faulting thread, but be sure.
    woken_present_.fetch_add(1, std::memory_order_relaxed);
    linux_uffd::wake(uffd_.get(), host_page, page_size);
    return Served::kDone;
  }
  if (options_.prefetch.record) {
    options_.prefetch.record->note_first_touch(m->guest_address(host_page), page_size, fault.write);
  }
  // Fault-around: the window the scheduler chooses, cut short at the first
  // page that is already there or was removed, or at the end of the mapping.
  const uint64_t wanted = demand_window_pages(host_page, page_size, t);
  const uint64_t max_pages = std::min(wanted, t.buffer.size() / page_size);
  uint64_t pages = 1;
  while (pages < max_pages && page + pages < m->pages() && !m->resident.test(page + pages) &&
         !m->removed.test(page + pages)) {
    ++pages;
  }
  Result<ServedPage> served =
      pager_->serve_fault(m->guest_address(host_page), page_size, t.buffer, pages * page_size);
  if (!served.is_ok()) return fail_fault(m, host_page, page_size, served.status());
  t.streams.served_until(host_page + served->length);
  const std::byte* src = served->kind == PageKind::kData ? t.buffer.data() : nullptr;
  Result<Installed> installed = install_range(*m, host_page, served->length, src, t.buffer);
  if (!installed.is_ok()) return fail_fault(m, host_page, page_size, installed.status());
  if (*installed == Installed::kGone) {
    stop_with(Status(ErrorCode::kUnavailable, "the faulting process has exited"));
    return Served::kStop;
  }
  return *installed == Installed::kAgain ? Served::kRetryLater : Served::kDone;
}

// How many pages a demand fault at `host_page` installs.
uint64_t FaultServer::Impl::demand_window_pages(uint64_t host_page, uint64_t page_size,
                                                ThreadState& t) {
  const PrefetchOptions& p = options_.prefetch;
  // Recording sees every first touch only if nothing arrives untouched.
  if (p.record || p.policy != PrefetchPolicy::kFull) return 1;
  if (p.fixed_window != 0) return std::max<uint64_t>(1, p.fixed_window / page_size);
  return std::max<uint64_t>(1,
                            t.streams.window_for(host_page, page_size) * kMinPageSize / page_size);
}

}  // namespace faultline
