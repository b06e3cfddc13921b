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

uint64_t nanos_since(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count());
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
  // Draining, a fault on a page someone else is bringing is served here too
  // (a second fetch at worst): the claimer may be retrying a failing source.
  t.draining = true;
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
      // Faults left to another install are looked at again here too, or a
      // steady stream of new faults would keep them waiting.
      if (!t.deferred.empty() && !retry_deferred(t)) return false;
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
    Fault fault{msgs[i].arg.pagefault.address,
                (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0};
    Served served = serve_fault_at(fault, t);
    if (served == Served::kStop) return false;
    if (served == Served::kRetryLater) t.deferred.push_back(fault);
  }
  return true;
}

bool FaultServer::Impl::retry_deferred(ThreadState& t) {
  size_t kept = 0;
  for (Fault& fault : t.deferred) {
    Served served = serve_fault_at(fault, t);
    if (served == Served::kStop) return false;
    if (served == Served::kRetryLater) t.deferred[kept++] = fault;
  }
  t.deferred.resize(kept);
  return true;
}

Served FaultServer::Impl::serve_fault_at(Fault& fault, ThreadState& t) {
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
    Result<Installed> installed = install_range(*m, host_page, page_size, nullptr);
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
    if (!fault.parked) woken_present_.fetch_add(1, std::memory_order_relaxed);
    linux_uffd::wake(uffd_.get(), host_page, page_size);
    return Served::kDone;
  }
  if (m->claimed.test(page)) {
    if (!t.draining) return leave_to_claimer(*m, host_page, fault);
    return serve_page_then_around(*m, page, page, 1, t);  // the page alone, unclaimed
  }
  if (options_.prefetch.record) {
    options_.prefetch.record->note_first_touch(m->guest_address(host_page), page_size, fault.write);
  }
  // The window the scheduler chooses: [lo, hi) around the page, of which
  // the run of pages nobody has or is fetching is claimed.
  const Window w = demand_window(*m, page, t);
  const uint64_t after = m->claim_run(page, w.hi - page);
  if (after == 0) return leave_to_claimer(*m, host_page, fault);
  uint64_t before = 0;
  while (page - before > w.lo && m->claim_run(page - before - 1, 1) == 1) ++before;
  const uint64_t first = page - before;
  const uint64_t count = before + after;
  // The fill goes on from here (told now, before the fetch, so it does not
  // start elsewhere meanwhile).
  fill_hint_.store(m->host_begin() + (first + count) * page_size, std::memory_order_relaxed);
  struct Release {
    Mapping& m;
    uint64_t first, count;
    ~Release() { m.release(first, count); }
  } release{*m, first, count};
  const Served served = count > 1 && cost_.split_pays(count * page_size)
                            ? serve_page_then_around(*m, page, first, count, t)
                            : serve_window(*m, page, first, count, t);
  if (served == Served::kDone)
    t.streams.served_until(m->host_begin() + (first + count) * page_size);
  return served;
}

// The page is being fetched by someone else (the fill, a replay, another
// thread's window): their install wakes the faulting thread (UFFDIO_COPY
// wakes whoever waits on the range), so this thread neither fetches it again
// nor waits for it. The fault is kept and looked at again shortly: if the
// claim went without the page (a failed fetch, an install cut short), it is
// served then.
Served FaultServer::Impl::leave_to_claimer(Mapping& m, uint64_t host_page, Fault& fault) {
  if (m.resident.test(m.page_index(host_page))) {
    if (!fault.parked) woken_present_.fetch_add(1, std::memory_order_relaxed);
    linux_uffd::wake(uffd_.get(), host_page, m.layout.page_size);
    return Served::kDone;
  }
  if (!fault.parked) {
    fault.parked = true;
    already_coming_.fetch_add(1, std::memory_order_relaxed);
  }
  return Served::kRetryLater;
}

// One fetch for the whole claimed run [first, first + count); the faulting
// page is installed first, so its thread runs on while the rest goes in.
Served FaultServer::Impl::serve_window(Mapping& m, uint64_t page, uint64_t first, uint64_t count,
                                       ThreadState& t) {
  const uint64_t page_size = m.layout.page_size;
  const uint64_t host_page = m.host_begin() + page * page_size;
  const uint64_t host_first = m.host_begin() + first * page_size;
  const auto start = std::chrono::steady_clock::now();
  Result<ServedPage> served = pager_->serve_fault(m.guest_address(host_page), page_size, t.buffer,
                                                  count * page_size, host_page - host_first);
  if (!served.is_ok()) return fail_fault(&m, host_page, page_size, served.status());
  const bool data = served->kind == PageKind::kData;
  const uint64_t fetched_from = m.host_address(served->first);
  const std::byte* bytes = t.buffer.data();
  // The faulting page first.
  const uint64_t offset = host_page - fetched_from;
  Served result = install_demand(m, host_page, page_size, data ? bytes + offset : nullptr);
  if (result != Served::kDone) return result;
  // Then the rest of what was fetched, before and after it.
  uint64_t around = 0;
  if (offset > 0) {
    (void)install_range(m, fetched_from, offset, data ? bytes : nullptr, &around);
  }
  const uint64_t tail = served->length - offset - page_size;
  if (tail > 0) {
    (void)install_range(m, host_page + page_size, tail, data ? bytes + offset + page_size : nullptr,
                        &around);
  }
  around_pages_.fetch_add(around / page_size, std::memory_order_relaxed);
  // A window that fell back to the page alone times two fetches: no sample.
  if (served->length == count * page_size) cost_.record(served->length, nanos_since(start));
  return Served::kDone;
}

// The faulting page alone first (its thread waits only for it), then the
// rest of the claimed run, fetched apart: for a source whose calls cost
// little next to moving the bytes.
Served FaultServer::Impl::serve_page_then_around(Mapping& m, uint64_t page, uint64_t first,
                                                 uint64_t count, ThreadState& t) {
  const uint64_t page_size = m.layout.page_size;
  const uint64_t host_page = m.host_begin() + page * page_size;
  auto start = std::chrono::steady_clock::now();
  Result<ServedPage> served =
      pager_->serve_fault(m.guest_address(host_page), page_size, t.buffer, page_size);
  if (!served.is_ok()) return fail_fault(&m, host_page, page_size, served.status());
  Served result = install_demand(m, host_page, page_size,
                                 served->kind == PageKind::kData ? t.buffer.data() : nullptr);
  if (result != Served::kDone) return result;
  cost_.record(page_size, nanos_since(start));
  const std::pair<uint64_t, uint64_t> pieces[] = {{first, page - first},
                                                  {page + 1, first + count - page - 1}};
  for (const auto& [from, pages] : pieces) {
    if (pages == 0) continue;
    const uint64_t host = m.host_begin() + from * page_size;
    auto chunk = t.buffer.first(pages * page_size);
    start = std::chrono::steady_clock::now();
    Result<PageKind> fetched = pager_->fetch_around(m.guest_address(host), page_size, chunk);
    if (!fetched.is_ok()) continue;  // a bonus: these pages fault later
    uint64_t around = 0;
    (void)install_range(m, host, chunk.size(), *fetched == PageKind::kData ? chunk.data() : nullptr,
                        &around);
    around_pages_.fetch_add(around / page_size, std::memory_order_relaxed);
    cost_.record(chunk.size(), nanos_since(start));
  }
  return Served::kDone;
}

// Installs the faulting page (its bytes, or zeros when null).
Served FaultServer::Impl::install_demand(Mapping& m, uint64_t host_page, uint64_t page_size,
                                         const std::byte* bytes) {
  uint64_t installed_bytes = 0;
  Result<Installed> installed = install_range(m, host_page, page_size, bytes, &installed_bytes);
  if (!installed.is_ok()) return fail_fault(&m, host_page, page_size, installed.status());
  if (*installed == Installed::kGone) {
    stop_with(Status(ErrorCode::kUnavailable, "the faulting process has exited"));
    return Served::kStop;
  }
  if (*installed == Installed::kAgain) return Served::kRetryLater;
  demand_pages_.fetch_add(installed_bytes / page_size, std::memory_order_relaxed);
  return Served::kDone;
}

// Which pages a demand fault on `page` may bring with it: [lo, hi).
FaultServer::Impl::Window FaultServer::Impl::demand_window(const Mapping& m, uint64_t page,
                                                           ThreadState& t) {
  const PrefetchOptions& p = options_.prefetch;
  const uint64_t page_size = m.layout.page_size;
  const uint64_t limit = std::max<uint64_t>(1, t.buffer.size() / page_size);
  // Recording sees every first touch only if nothing arrives untouched.
  if (p.record || p.policy != PrefetchPolicy::kFull) return {page, page + 1};
  uint64_t pages = 0;
  bool forward = false;
  if (p.fixed_window != 0) {
    pages = std::max<uint64_t>(1, p.fixed_window / page_size);
  } else {
    // A fault that continues a sequential stream gets the stream's growing
    // window ahead of it; any other gets the cost model's window, aligned,
    // so that neighbours on either side come with it.
    const uint64_t base = cost_.window_for(page_size, p.max_window);
    window_bytes_.store(base, std::memory_order_relaxed);
    const uint64_t host_page = m.host_begin() + page * page_size;
    const uint64_t stream = t.streams.window_for(host_page, page_size, base / kMinPageSize);
    forward = t.streams.continued();
    pages = std::max<uint64_t>(1, (forward ? stream * kMinPageSize : base) / page_size);
  }
  pages = std::min(pages, limit);
  uint64_t lo = page;
  if (!forward && std::has_single_bit(pages)) lo = page & ~(pages - 1);
  return {lo, std::min(lo + pages, m.pages())};
}

}  // namespace faultline
