// The userfaultfd fault server: the seed's Mach exception-port thread, on Linux.
#include "faultline/fault_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "core/log.h"
#include "os_linux/mapping_table.h"
#include "os_linux/uffd.h"

namespace faultline {
namespace {

// An anonymous, page-aligned buffer that UFFDIO_COPY reads from.
class PageBuffer {
 public:
  explicit PageBuffer(uint64_t size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~PageBuffer() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  bool ok() const { return data_ != nullptr; }
  std::span<std::byte> span() { return {data_, size_}; }

 private:
  std::byte* data_ = nullptr;
  uint64_t size_;
};

constexpr int kEventsPerRead = 16;
constexpr size_t kDeferredReserve = 256;

// What became of one fault event.
enum class Served { kDone, kRetryLater, kStop };

// The outcome of one install attempt.
enum class Installed { kDone, kAgain, kGone };

}  // namespace

class FaultServer::Impl {
 public:
  Impl(PagerHandle pager, UniqueFd uffd, uint64_t features, bool owns_registration,
       FaultServerOptions options)
      : pager_(std::move(pager)),
        options_(std::move(options)),
        uffd_(std::move(uffd)),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        features_(features),
        owns_registration_(owns_registration) {}

  Status init() {
    if (!wake_) return io_error("eventfd for the fault server's shutdown signal", errno);
    if (options_.threads < 1) {
      return invalid_argument(
          fmt::format("fault server needs at least one thread, got {}", options_.threads));
    }
    if (options_.max_page_size < kMinPageSize || !std::has_single_bit(options_.max_page_size)) {
      return invalid_argument(fmt::format("max page size {} is not a power of two of at least {}",
                                          options_.max_page_size, kMinPageSize));
    }
    listener_id_ = pager_->add_shutdown_listener([this] { request_shutdown(); });
    return Status::ok();
  }

  ~Impl() {
    request_shutdown();
    join();
    children_.clear();
    pager_->remove_shutdown_listener(listener_id_);
    if (owns_registration_) poison_unresident();
  }

  Status map(const GuestMapping& m, bool register_with_uffd) {
    const auto host = reinterpret_cast<uint64_t>(m.host_addr);
    if (m.page_size < kMinPageSize || !std::has_single_bit(m.page_size) ||
        m.page_size > options_.max_page_size) {
      return invalid_argument(fmt::format("mapping page size {} must be a power of two in [{}, {}]",
                                          m.page_size, kMinPageSize, options_.max_page_size));
    }
    if (m.size == 0 || m.size % m.page_size != 0 || host % m.page_size != 0 ||
        m.guest_base % m.page_size != 0) {
      return invalid_argument(fmt::format(
          "mapping guest [{:#x}, +{:#x}) at host {:#x} is empty or not aligned to its page size "
          "{:#x}",
          m.guest_base, m.size, host, m.page_size));
    }
    if (host + m.size < host || m.guest_base + m.size < m.guest_base) {
      return invalid_argument(
          fmt::format("mapping guest [{:#x}, +{:#x}) wraps", m.guest_base, m.size));
    }
    if (!pager_->contains_range(m.guest_base, m.size)) {
      return invalid_argument(
          fmt::format("mapping guest [{:#x}, +{:#x}) is not inside one of the pager's regions",
                      m.guest_base, m.size));
    }
    uint64_t ioctls = (uint64_t{1} << _UFFDIO_COPY) | (uint64_t{1} << _UFFDIO_WAKE);
    if (register_with_uffd) {
      Result<uint64_t> registered = linux_uffd::register_missing(uffd_.get(), m.host_addr, m.size);
      if (!registered.is_ok()) return registered.status();
      ioctls = *registered;
    } else if (m.page_size == kMinPageSize) {
      ioctls |= uint64_t{1} << _UFFDIO_ZEROPAGE;  // anonymous memory allows it; hugetlbfs not
    }
    return mappings_.add(m, ioctls);
  }

  Status start() {
    std::lock_guard lock(threads_mu_);
    if (!threads_.empty()) return invalid_argument("fault server already started");
    if (stopping_.load()) return Status(ErrorCode::kShutdown, "fault server was shut down");
    running_threads_.store(options_.threads);
    for (int i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([this] {
        serve_loop();
        running_threads_.fetch_sub(1);
      });
    }
    log().debug("{}: serving with {} thread(s)", options_.name, options_.threads);
    return Status::ok();
  }

  Status install_guest_page(uint64_t page_ipa, uint64_t page_size,
                            std::span<const std::byte> bytes) {
    Mapping* m = mappings_.find_guest(page_ipa, page_size);
    if (m == nullptr || page_size != m->layout.page_size) {
      return invalid_argument(fmt::format(
          "no mapping holds guest page [{:#x}, +{:#x}) with that page size", page_ipa, page_size));
    }
    if (!bytes.empty() && bytes.size() < page_size) {
      return invalid_argument(
          fmt::format("{} bytes given for a page of {}", bytes.size(), page_size));
    }
    const uint64_t host = m->host_begin() + (page_ipa - m->layout.guest_base);
    std::vector<std::byte> zeros(bytes.empty() ? page_size : 0);  // where ZEROPAGE is not allowed
    for (int attempt = 0;; ++attempt) {
      Result<Installed> r =
          install(*m, host, page_size, bytes.empty() ? nullptr : bytes.data(), zeros);
      if (!r.is_ok()) return r.status();
      if (*r != Installed::kAgain) return Status::ok();
      if (attempt > 10000) {
        return Status(
            ErrorCode::kTimeout,
            fmt::format("installing guest page {:#x}: the address space kept changing", page_ipa));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  Status pager_prewarm(PageSink& sink) { return pager_->prewarm(sink); }

  void request_shutdown() {
    if (stopping_.exchange(true)) return;
    const uint64_t one = 1;
    // The eventfd stays readable from here on, so every thread sees it.
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
    std::lock_guard lock(children_mu_);
    for (auto& child : children_) child->request_shutdown();
  }

  Status wait() {
    join();
    std::lock_guard lock(status_mu_);
    return stop_status_;
  }

  bool running() const { return running_threads_.load() > 0; }

  FaultServerStats stats() const {
    FaultServerStats s;
    s.events = events_.load(std::memory_order_relaxed);
    s.copies = copies_.load(std::memory_order_relaxed);
    s.zero_installs = zero_installs_.load(std::memory_order_relaxed);
    s.already_present = already_present_.load(std::memory_order_relaxed);
    s.retried_installs = retried_installs_.load(std::memory_order_relaxed);
    s.poisoned = poisoned_.load(std::memory_order_relaxed);
    s.failed_faults = failed_faults_.load(std::memory_order_relaxed);
    s.removed_ranges = removed_ranges_.load(std::memory_order_relaxed);
    s.removed_pages = removed_pages_.load(std::memory_order_relaxed);
    s.removed_zero_installs = removed_zero_installs_.load(std::memory_order_relaxed);
    s.unmapped_ranges = unmapped_ranges_.load(std::memory_order_relaxed);
    s.remaps = remaps_.load(std::memory_order_relaxed);
    s.forks = forks_.load(std::memory_order_relaxed);
    return s;
  }

  const Pager& pager() const { return *pager_; }
  int uffd() const { return uffd_.get(); }
  bool can_poison() const { return (features_ & UFFD_FEATURE_POISON) != 0; }

 private:
  void join() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(threads_mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  void stop_with(const Status& why) {
    {
      std::lock_guard lock(status_mu_);
      if (stop_status_.is_ok()) stop_status_ = why;
    }
    request_shutdown();
  }

  bool stopped_by_failure() {
    std::lock_guard lock(status_mu_);
    return !stop_status_.is_ok();
  }

  void serve_loop() {
    PageBuffer buffer(options_.max_page_size);
    if (!buffer.ok()) {
      stop_with(io_error("fault server page buffer", errno));
      return;
    }
    // Faults whose install met EAGAIN: the address space is changing and a
    // non-fault event is waiting to be read. Read it, then retry these.
    std::vector<uint64_t> deferred;
    deferred.reserve(kDeferredReserve);
    const int poll_ms = static_cast<int>(pager_->config().poll_interval.count());
    pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    while (!stopping_.load(std::memory_order_acquire)) {
      const int timeout = !deferred.empty() ? 1 : (poll_ms > 0 ? poll_ms : 100);
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
      if ((fds[0].revents & POLLIN) != 0 && !read_and_serve(buffer.span(), deferred)) return;
      if (!retry_deferred(buffer.span(), deferred)) return;
    }
    // Serve what was already queued when shutdown came, so no fault that was
    // in flight is left behind; a stop caused by failure skips this.
    if (stopped_by_failure()) return;
    for (int round = 0; round < 1000; ++round) {
      const bool read_more = read_and_serve(buffer.span(), deferred);
      if (!retry_deferred(buffer.span(), deferred)) return;
      if (!read_more && deferred.empty()) return;
      if (!deferred.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Reads one batch of events: non-fault events are applied first, under the
  // exclusive side of events_mu_, so that no install can slip in between the
  // kernel learning that the event was read and our bookkeeping of it. Then the
  // faults are served. False when there was nothing to read or we must stop.
  bool read_and_serve(std::span<std::byte> buffer, std::vector<uint64_t>& deferred) {
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
      const uint64_t address = msgs[i].arg.pagefault.address;
      Served served = serve_fault_at(address, buffer);
      if (served == Served::kStop) return false;
      if (served == Served::kRetryLater) deferred.push_back(address);
    }
    return true;
  }

  bool retry_deferred(std::span<std::byte> buffer, std::vector<uint64_t>& deferred) {
    size_t kept = 0;
    for (uint64_t address : deferred) {
      Served served = serve_fault_at(address, buffer);
      if (served == Served::kStop) return false;
      if (served == Served::kRetryLater) deferred[kept++] = address;
    }
    deferred.resize(kept);
    return true;
  }

  // Non-fault events; called with events_mu_ held exclusively.
  void apply_event(const uffd_msg& msg) {
    switch (msg.event) {
      case UFFD_EVENT_REMOVE: {
        const uint64_t start = msg.arg.remove.start;
        const uint64_t end = msg.arg.remove.end;
        uint64_t pages = 0;
        for_each_mapping_overlapping(
            start, end, [&](Mapping& m) { pages += m.mark_removed(start, end - start); });
        removed_ranges_.fetch_add(1, std::memory_order_relaxed);
        removed_pages_.fetch_add(pages, std::memory_order_relaxed);
        log().debug("{}: range [{:#x}, {:#x}) removed: {} pages read as zeros from now on",
                    options_.name, start, end, pages);
        return;
      }
      case UFFD_EVENT_UNMAP: {
        const uint64_t start = msg.arg.remove.start;
        const uint64_t end = msg.arg.remove.end;
        for_each_mapping_overlapping(start, end, [&](Mapping& m) {
          if (start <= m.host_begin() && end >= m.host_end()) {
            m.retired.store(true);
          } else {
            m.mark_removed(start, end - start);  // cannot fault again; nothing to poison
          }
        });
        unmapped_ranges_.fetch_add(1, std::memory_order_relaxed);
        log().debug("{}: range [{:#x}, {:#x}) unmapped", options_.name, start, end);
        return;
      }
      case UFFD_EVENT_REMAP:
        apply_remap(msg.arg.remap.from, msg.arg.remap.to, msg.arg.remap.len);
        return;
      case UFFD_EVENT_FORK:
        adopt_child(UniqueFd(static_cast<int>(msg.arg.fork.ufd)));
        return;
      default:
        log().warn("{}: ignoring unknown userfaultfd event {:#x}", options_.name,
                   static_cast<unsigned>(msg.event));
    }
  }

  template <typename F>
  void for_each_mapping_overlapping(uint64_t start, uint64_t end, F&& f) {
    for (size_t i = 0; i < mappings_.size(); ++i) {
      Mapping& m = mappings_.at(i);
      if (!m.retired.load() && start < m.host_end() && m.host_begin() < end) f(m);
    }
  }

  // mremap moved [from, from + len) to [to, to + len): the pages, their
  // registration and our knowledge of them move along.
  void apply_remap(uint64_t from, uint64_t to, uint64_t len) {
    remaps_.fetch_add(1, std::memory_order_relaxed);
    Mapping* m = mappings_.find_host(from);
    if (m == nullptr) {
      log().warn("{}: remap of [{:#x}, +{:#x}) that no mapping holds", options_.name, from, len);
      return;
    }
    const uint64_t moved = std::min(len, m->host_end() - from);
    GuestMapping layout = m->layout;
    layout.guest_base = m->guest_address(from);
    layout.host_addr = reinterpret_cast<void*>(to);
    layout.size = moved;
    Result<Mapping*> alias = mappings_.add_alias(layout, m->allowed_ioctls);
    if (!alias.is_ok()) {
      log().error("{}: cannot follow the remap of [{:#x}, +{:#x}) to {:#x}: {}", options_.name,
                  from, len, to, alias.status().to_string());
      return;
    }
    const uint64_t first = m->page_index(from);
    const uint64_t count = moved / m->layout.page_size;
    (*alias)->resident.copy_range(m->resident, first, count);
    (*alias)->removed.copy_range(m->removed, first, count);
    if (from <= m->host_begin() && moved == m->layout.size) {
      m->retired.store(true);
    } else {
      m->mark_removed(from, moved);  // the old range is gone: settled, never poisoned
    }
    log().debug("{}: followed the remap of [{:#x}, +{:#x}) to {:#x}", options_.name, from, moved,
                to);
  }

  // The faulting process forked: its child's copy of guest memory is registered
  // on a new userfaultfd. Serve it with the same pager and what we know so far.
  void adopt_child(UniqueFd child_uffd) {
    forks_.fetch_add(1, std::memory_order_relaxed);
    FaultServerOptions options = options_;
    options.name = options_.name + "/child";
    options.adopted_features = features_;
    auto child = std::make_unique<Impl>(pager_, std::move(child_uffd), features_,
                                        /*owns_registration=*/false, options);
    Status s = child->init();
    for (size_t i = 0; s.is_ok() && i < mappings_.size(); ++i) {
      Mapping& m = mappings_.at(i);
      if (m.retired.load()) continue;
      Result<Mapping*> copy = child->mappings_.add_alias(m.layout, m.allowed_ioctls);
      if (!copy.is_ok()) {
        s = copy.status();
        break;
      }
      (*copy)->resident.copy_range(m.resident, 0, m.pages());
      (*copy)->removed.copy_range(m.removed, 0, m.pages());
    }
    if (s.is_ok()) s = child->start();
    if (!s.is_ok()) {
      log().error("{}: cannot serve the forked child's memory: {}", options_.name, s.to_string());
      return;
    }
    std::lock_guard lock(children_mu_);
    children_.push_back(std::move(child));
  }

  Served serve_fault_at(uint64_t address, std::span<std::byte> buffer) {
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
    const std::byte* src = nullptr;  // zeros
    if (m->removed.test(m->page_index(host_page))) {
      removed_zero_installs_.fetch_add(1, std::memory_order_relaxed);
    } else {
      Result<ServedPage> served =
          pager_->serve_fault(m->guest_address(host_page), page_size, buffer);
      if (!served.is_ok()) return fail_fault(m, host_page, page_size, served.status());
      if (served->kind == PageKind::kData) src = buffer.data();
    }
    Result<Installed> installed = install(*m, host_page, page_size, src, buffer);
    if (!installed.is_ok()) return fail_fault(m, host_page, page_size, installed.status());
    if (*installed == Installed::kGone) {
      stop_with(Status(ErrorCode::kUnavailable, "the faulting process has exited"));
      return Served::kStop;
    }
    return *installed == Installed::kAgain ? Served::kRetryLater : Served::kDone;
  }

  // Installs one page and wakes its waiters: the bytes at `src`, or zeros when
  // `src` is null (through `scratch` where UFFDIO_ZEROPAGE is not allowed, as
  // on hugetlbfs). A page removed meanwhile gets zeros whatever `src` says.
  Result<Installed> install(Mapping& m, uint64_t host_page, uint64_t page_size,
                            const std::byte* src, std::span<std::byte> scratch) {
    std::shared_lock lock(events_mu_);
    if (src != nullptr && m.removed.test(m.page_index(host_page))) src = nullptr;
    const bool zeropage_allowed = (m.allowed_ioctls & (uint64_t{1} << _UFFDIO_ZEROPAGE)) != 0;
    const bool use_zeropage = src == nullptr && zeropage_allowed;
    if (src == nullptr && !zeropage_allowed) {
      std::memset(scratch.data(), 0, page_size);
      src = scratch.data();
    }
    linux_uffd::InstallOutcome r = use_zeropage
                                       ? linux_uffd::zeropage(uffd_.get(), host_page, page_size)
                                       : linux_uffd::copy(uffd_.get(), host_page, src, page_size);
    switch (r.error) {
      case 0:
        (use_zeropage ? zero_installs_ : copies_).fetch_add(1, std::memory_order_relaxed);
        m.mark_resident(host_page, page_size);
        return Installed::kDone;
      case EEXIST:
        // Someone installed it first; make sure nobody waits on it.
        already_present_.fetch_add(1, std::memory_order_relaxed);
        linux_uffd::wake(uffd_.get(), host_page, page_size);
        m.mark_resident(host_page, page_size);
        return Installed::kDone;
      case EAGAIN:
        retried_installs_.fetch_add(1, std::memory_order_relaxed);
        return Installed::kAgain;
      case ESRCH:
        return Installed::kGone;
      case ENOENT:
        // The range was unmapped or moved under us; a waiter faults again at
        // the new address.
        return Installed::kDone;
      default:
        return io_error(
            fmt::format("{} of page at host {:#x} (+{:#x})",
                        use_zeropage ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY", host_page, page_size),
            r.error);
    }
  }

  // A fault that cannot be served: never install guessed bytes. Poison the
  // page so the faulting access gets SIGBUS, or stop the server.
  Served fail_fault(Mapping* m, uint64_t host_page, uint64_t page_size, const Status& why) {
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

  bool poison_page(uint64_t host_page, uint64_t page_size) {
    linux_uffd::InstallOutcome r = linux_uffd::poison(uffd_.get(), host_page, page_size);
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
  void poison_unresident() {
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

  PagerHandle pager_;
  FaultServerOptions options_;
  UniqueFd uffd_;
  UniqueFd wake_;
  uint64_t features_;
  bool owns_registration_;
  uint64_t listener_id_ = 0;
  MappingTable mappings_;
  // Shared by installs, exclusive while reading events and applying the
  // non-fault ones (see read_and_serve).
  std::shared_mutex events_mu_;

  std::mutex threads_mu_;
  std::vector<std::thread> threads_;
  std::atomic<int> running_threads_{0};
  std::atomic<bool> stopping_{false};
  std::mutex status_mu_;
  Status stop_status_;
  std::mutex children_mu_;
  std::vector<std::unique_ptr<Impl>> children_;  // servers of forked children

  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> copies_{0};
  std::atomic<uint64_t> zero_installs_{0};
  std::atomic<uint64_t> already_present_{0};
  std::atomic<uint64_t> retried_installs_{0};
  std::atomic<uint64_t> poisoned_{0};
  std::atomic<uint64_t> failed_faults_{0};
  std::atomic<uint64_t> removed_ranges_{0};
  std::atomic<uint64_t> removed_pages_{0};
  std::atomic<uint64_t> removed_zero_installs_{0};
  std::atomic<uint64_t> unmapped_ranges_{0};
  std::atomic<uint64_t> remaps_{0};
  std::atomic<uint64_t> forks_{0};
};

FaultServer::FaultServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FaultServer::~FaultServer() = default;

Result<std::unique_ptr<FaultServer>> FaultServer::create(PagerHandle pager,
                                                         FaultServerOptions options) {
  Result<uint64_t> supported = linux_uffd::supported_features();
  if (!supported.is_ok()) return supported.status();
  const uint64_t wanted = *supported & (UFFD_FEATURE_POISON | UFFD_FEATURE_MISSING_HUGETLBFS |
                                        UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_THREAD_ID |
                                        UFFD_FEATURE_EVENT_REMOVE);
  Result<UniqueFd> uffd = linux_uffd::open(wanted);
  if (!uffd.is_ok()) return uffd.status();
  auto impl = std::make_unique<Impl>(std::move(pager), std::move(uffd).value(), wanted,
                                     /*owns_registration=*/true, std::move(options));
  Status s = impl->init();
  if (!s.is_ok()) return s;
  return std::unique_ptr<FaultServer>(new FaultServer(std::move(impl)));
}

Result<std::unique_ptr<FaultServer>> FaultServer::adopt(PagerHandle pager, UniqueFd uffd,
                                                        FaultServerOptions options) {
  if (!uffd) return invalid_argument("adopted userfaultfd is not a valid descriptor");
  int flags = ::fcntl(uffd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(uffd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return io_error("making the adopted userfaultfd non-blocking", errno);
  }
  const uint64_t features = options.adopted_features;
  auto impl = std::make_unique<Impl>(std::move(pager), std::move(uffd), features,
                                     /*owns_registration=*/false, std::move(options));
  Status s = impl->init();
  if (!s.is_ok()) return s;
  return std::unique_ptr<FaultServer>(new FaultServer(std::move(impl)));
}

Status FaultServer::map(const GuestMapping& mapping) {
  return impl_->map(mapping, true);
}
Status FaultServer::adopt_mapping(const GuestMapping& mapping) {
  return impl_->map(mapping, false);
}
Status FaultServer::start() {
  return impl_->start();
}
Status FaultServer::prewarm() {
  return impl_->pager_prewarm(*this);
}
Status FaultServer::install(uint64_t page_ipa, uint64_t page_size,
                            std::span<const std::byte> bytes) {
  return impl_->install_guest_page(page_ipa, page_size, bytes);
}
void FaultServer::request_shutdown() {
  impl_->request_shutdown();
}
Status FaultServer::wait() {
  return impl_->wait();
}
bool FaultServer::running() const {
  return impl_->running();
}
FaultServerStats FaultServer::stats() const {
  return impl_->stats();
}
const Pager& FaultServer::pager() const {
  return impl_->pager();
}
int FaultServer::userfaultfd() const {
  return impl_->uffd();
}
bool FaultServer::can_poison() const {
  return impl_->can_poison();
}

}  // namespace faultline
