// Installing pages with UFFDIO_COPY / UFFDIO_ZEROPAGE, and what happens to a
// fault that cannot be served (UFFDIO_POISON, or stopping).
#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "os_linux/fault_server_impl.h"

namespace faultline {

// Installs [host, host + len) of mapping `m` and wakes its waiters: the bytes
// at `src`, or zeros when `src` is null (copied from a mapping of zeros where
// UFFDIO_ZEROPAGE is not allowed, as on hugetlbfs: never through a caller's
// buffer, which may hold the bytes of the next install). Pages already there
// are skipped. A page removed meanwhile never receives `src` bytes: the range
// is cut short before it, and a removed first page gets zeros. A range that
// is no longer mapped (ENOENT: unmapped or moved with no event to say so) is
// settled, so nobody fetches it again. Pages skipped (there already) or left
// (an error, kAgain) are not in `installed_bytes`.
Result<Installed> FaultServer::Impl::install_range(Mapping& m, uint64_t host, uint64_t len,
                                                   const std::byte* src,
                                                   uint64_t* installed_bytes) {
  std::shared_lock lock(events_mu_);
  const uint64_t page_size = m.layout.page_size;
  if (src != nullptr) {
    const uint64_t first = m.page_index(host);
    uint64_t clean = 0;
    while (clean < len / page_size && !m.removed.test(first + clean)) ++clean;
    if (clean == 0) {
      src = nullptr;
      len = page_size;
    } else {
      len = clean * page_size;
    }
  }
  const bool zeropage_allowed = (m.allowed_ioctls & (uint64_t{1} << _UFFDIO_ZEROPAGE)) != 0;
  const bool use_zeropage = src == nullptr && zeropage_allowed;
  const bool copy_zeros = src == nullptr && !zeropage_allowed;
  uint64_t done = 0;
  while (done < len) {
    const uint64_t step = copy_zeros ? std::min(len - done, zeros_.size()) : len - done;
    const linux_uffd::InstallOutcome r =
        use_zeropage ? linux_uffd::zeropage(uffd_.get(), host + done, step)
                     : linux_uffd::copy(uffd_.get(), host + done,
                                        copy_zeros ? zeros_.data() : src + done, step);
    if (r.done > 0) m.mark_resident(host + done, r.done);
    if (installed_bytes != nullptr) *installed_bytes += r.done;
    done += r.done;
    switch (r.error) {
      case 0:
        (use_zeropage ? zero_installs_ : copies_).fetch_add(1, std::memory_order_relaxed);
        if (done < len) continue;  // the zeros come in steps
        return Installed::kDone;
      case EEXIST:
        // Someone installed this page first: make sure nobody waits on it, and
        // go on after it.
        already_present_.fetch_add(1, std::memory_order_relaxed);
        linux_uffd::wake(uffd_.get(), host + done, page_size);
        m.mark_resident(host + done, page_size);
        done += page_size;
        continue;
      case EAGAIN:
        retried_installs_.fetch_add(1, std::memory_order_relaxed);
        return Installed::kAgain;
      case ESRCH:
        return Installed::kGone;
      case ENOENT:
        // The range was unmapped or moved under us; a waiter faults again at
        // the new address. Settled here, or the fill would fetch it for ever.
        m.mark_resident(host + done, len - done);
        return Installed::kDone;
      default:
        return io_error(
            fmt::format("{} of [{:#x}, +{:#x})", use_zeropage ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY",
                        host + done, len - done),
            r.error);
    }
  }
  return Installed::kDone;
}

// A fault that cannot be served: never install guessed bytes. Poison the
// page so the faulting access gets SIGBUS, or stop the server.
Served FaultServer::Impl::fail_fault(Mapping* m, uint64_t host_page, uint64_t page_size,
                                     const Status& why) {
  if (why.code() == ErrorCode::kShutdown) {
    stop_with(Status::ok());
    return Served::kStop;
  }
  failed_faults_.fetch_add(1, std::memory_order_relaxed);
  log().error("{}: fault at host {:#x} cannot be served: {}", options_.name, host_page,
              why.to_string());
  if (options_.on_failure) options_.on_failure(why);
  if (options_.on_source_failure == SourceFailurePolicy::kPoisonPage &&
      poison_page(host_page, page_size)) {
    if (m != nullptr) m->mark_resident(host_page, page_size);  // poisoned counts as settled
    return Served::kDone;
  }
  stop_with(why);
  return Served::kStop;
}

bool FaultServer::Impl::poison_page(uint64_t host_page, uint64_t page_size) {
  const linux_uffd::InstallOutcome r = linux_uffd::poison(uffd_.get(), host_page, page_size);
  if (r.error == 0 || r.error == EEXIST) {
    poisoned_.fetch_add(1, std::memory_order_relaxed);
    log().error("{}: page at host {:#x} poisoned: the faulting access gets SIGBUS", options_.name,
                host_page);
    return true;
  }
  log().error("{}: cannot poison page at host {:#x}: {}; stopping the server", options_.name,
              host_page, std::strerror(r.error));
  return false;
}

// Before the userfaultfd closes, poison every page never installed, so a
// late access gets SIGBUS instead of the kernel's zero page.
void FaultServer::Impl::poison_unresident() {
  if (!can_poison() || !options_.poison_on_destroy) return;
  for (size_t i = 0; i < mappings_.size(); ++i) {
    Mapping& m = mappings_.at(i);
    if (m.retired.load()) continue;
    const uint64_t pages = m.pages();
    uint64_t page = 0;
    while (page < pages) {
      if (m.resident.test(page)) {
        ++page;
        continue;
      }
      uint64_t end = page + 1;
      while (end < pages && !m.resident.test(end)) ++end;
      const uint64_t start = m.host_begin() + page * m.layout.page_size;
      linux_uffd::poison(uffd_.get(), start, (end - page) * m.layout.page_size);
      page = end;
    }
  }
}

}  // namespace faultline
