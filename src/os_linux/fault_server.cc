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
      ioctls |= uint64_t{1} << _UFFDIO_ZEROPAGE;  // anonymous memory allows it
    }
    return mappings_.add(m, ioctls);
  }

  Status start() {
    std::lock_guard lock(threads_mu_);
    if (!threads_.empty()) return invalid_argument("fault server already started");
    if (stopping_.load()) return Status(ErrorCode::kShutdown, "fault server was shut down");
    for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { serve_loop(); });
    log().debug("{}: serving with {} thread(s)", options_.name, options_.threads);
    return Status::ok();
  }

  Status prewarm(PageSink& sink) { return pager_->prewarm(sink); }

  Status install_guest_page(uint64_t page_ipa, uint64_t page_size,
                            std::span<const std::byte> bytes) {
    Mapping* m = mappings_.find_guest(page_ipa, page_size);
    if (m == nullptr || page_size != m->layout.page_size) {
      return invalid_argument(fmt::format(
          "no mapping holds guest page [{:#x}, +{:#x}) with that page size", page_ipa, page_size));
    }
    const uint64_t host = m->host_begin() + (page_ipa - m->layout.guest_base);
    if (bytes.empty()) {
      std::vector<std::byte> zeros(page_size);  // used only where ZEROPAGE is not allowed
      return install(*m, host, page_size, nullptr, zeros);
    }
    if (bytes.size() < page_size) {
      return invalid_argument(
          fmt::format("{} bytes given for a page of {}", bytes.size(), page_size));
    }
    return install(*m, host, page_size, bytes.data(), {});
  }

  void request_shutdown() {
    if (stopping_.exchange(true)) return;
    const uint64_t one = 1;
    // The eventfd stays readable from here on, so every thread sees it.
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  }

  Status wait() {
    join();
    std::lock_guard lock(status_mu_);
    return stop_status_;
  }

  FaultServerStats stats() const {
    FaultServerStats s;
    s.events = events_.load(std::memory_order_relaxed);
    s.copies = copies_.load(std::memory_order_relaxed);
    s.zero_installs = zero_installs_.load(std::memory_order_relaxed);
    s.already_present = already_present_.load(std::memory_order_relaxed);
    s.retried_installs = retried_installs_.load(std::memory_order_relaxed);
    s.poisoned = poisoned_.load(std::memory_order_relaxed);
    s.failed_faults = failed_faults_.load(std::memory_order_relaxed);
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

  void serve_loop() {
    PageBuffer buffer(options_.max_page_size);
    if (!buffer.ok()) {
      stop_with(io_error("fault server page buffer", errno));
      return;
    }
    const int poll_ms = static_cast<int>(pager_->config().poll_interval.count());
    pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    while (!stopping_.load(std::memory_order_acquire)) {
      int ready = ::poll(fds, 2, poll_ms > 0 ? poll_ms : 100);
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
      if ((fds[0].revents & POLLIN) != 0 && !read_and_serve(buffer.span())) return;
    }
    // Serve what was already queued when shutdown came, so no fault that was
    // in flight is left behind; a stop caused by failure skips this.
    if (stop_status_ok()) {
      while (read_and_serve(buffer.span())) {
      }
    }
  }

  bool stop_status_ok() {
    std::lock_guard lock(status_mu_);
    return stop_status_.is_ok();
  }

  // Reads one batch of events and serves it. False when there was nothing to
  // read or the server must stop.
  bool read_and_serve(std::span<std::byte> buffer) {
    uffd_msg msgs[kEventsPerRead];
    ssize_t n = ::read(uffd_.get(), msgs, sizeof msgs);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return !stopping_.load();
      stop_with(io_error("read from the userfaultfd", errno));
      return false;
    }
    const auto count = static_cast<size_t>(n) / sizeof(uffd_msg);
    for (size_t i = 0; i < count; ++i) {
      if (!handle_event(msgs[i], buffer)) return false;
    }
    return true;
  }

  bool handle_event(const uffd_msg& msg, std::span<std::byte> buffer) {
    if (msg.event != UFFD_EVENT_PAGEFAULT) {
      log().debug("{}: ignoring userfaultfd event {:#x}", options_.name,
                  static_cast<unsigned>(msg.event));
      return true;
    }
    events_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t address = msg.arg.pagefault.address;
    Mapping* m = mappings_.find_host(address);
    if (m == nullptr) {
      // Registered memory we were never told about: nobody can serve it.
      const uint64_t page = address & ~(kMinPageSize - 1);
      return fail_fault(
          nullptr, page, kMinPageSize,
          Status(ErrorCode::kOutOfRegion,
                 fmt::format("fault at host address {:#x} outside every mapping", address)));
    }
    const uint64_t page_size = m->layout.page_size;
    const uint64_t host_page = address & ~(page_size - 1);
    Result<ServedPage> served = pager_->serve_fault(m->guest_address(host_page), page_size, buffer);
    if (!served.is_ok()) return fail_fault(m, host_page, page_size, served.status());
    const bool zero = served->kind == PageKind::kZero;
    Status installed = install(*m, host_page, page_size, zero ? nullptr : buffer.data(), buffer);
    if (!installed.is_ok()) {
      if (installed.code() == ErrorCode::kUnavailable) {
        stop_with(installed);  // the faulting process is gone
        return false;
      }
      return fail_fault(m, host_page, page_size, installed);
    }
    return true;
  }

  // Installs one page and wakes its waiters: the bytes at `src`, or zeros when
  // `src` is null (through `scratch` where UFFDIO_ZEROPAGE is not allowed, as
  // on hugetlbfs).
  Status install(Mapping& m, uint64_t host_page, uint64_t page_size, const std::byte* src,
                 std::span<std::byte> scratch) {
    const bool zeropage_allowed = (m.allowed_ioctls & (uint64_t{1} << _UFFDIO_ZEROPAGE)) != 0;
    const bool use_zeropage = src == nullptr && zeropage_allowed;
    if (src == nullptr && !zeropage_allowed) {
      std::memset(scratch.data(), 0, page_size);
      src = scratch.data();
    }
    uint64_t done = 0;
    int again = 0;
    while (done < page_size) {
      const uint64_t dst = host_page + done;
      const uint64_t len = page_size - done;
      linux_uffd::InstallOutcome r = use_zeropage
                                         ? linux_uffd::zeropage(uffd_.get(), dst, len)
                                         : linux_uffd::copy(uffd_.get(), dst, src + done, len);
      done += r.done;
      if (r.error == 0) break;
      if (r.error == EEXIST) {
        // Someone installed it first; make sure nobody waits on it.
        already_present_.fetch_add(1, std::memory_order_relaxed);
        linux_uffd::wake(uffd_.get(), host_page, page_size);
        break;
      }
      if (r.error == EAGAIN) {
        // The address space is changing (a non-cooperative event is queued).
        retried_installs_.fetch_add(1, std::memory_order_relaxed);
        if (++again > 1000) std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      if (r.error == ESRCH) {
        return Status(
            ErrorCode::kUnavailable,
            fmt::format("installing page at {:#x}: the faulting process has exited", host_page));
      }
      if (r.error == ENOENT) {
        // The range was unmapped under us; nobody is waiting for it any more.
        return Status::ok();
      }
      return io_error(
          fmt::format("{} of page at host {:#x} (+{:#x})",
                      use_zeropage ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY", host_page, page_size),
          r.error);
    }
    (use_zeropage ? zero_installs_ : copies_).fetch_add(1, std::memory_order_relaxed);
    m.mark_resident(host_page, page_size);
    return Status::ok();
  }

  // A fault that cannot be served: never install guessed bytes. Poison the
  // page so the faulting access gets SIGBUS, or stop the server.
  bool fail_fault(Mapping* m, uint64_t host_page, uint64_t page_size, const Status& why) {
    if (why.code() == ErrorCode::kShutdown) {
      stop_with(Status::ok());
      return false;
    }
    failed_faults_.fetch_add(1, std::memory_order_relaxed);
    log().error("{}: fault at host {:#x} cannot be served: {}", options_.name, host_page,
                why.to_string());
    if (options_.on_failure) options_.on_failure(why);
    if (options_.on_source_failure == SourceFailurePolicy::kPoisonPage &&
        poison_page(host_page, page_size)) {
      if (m != nullptr) m->mark_resident(host_page, page_size);  // poisoned counts as settled
      return true;
    }
    stop_with(why);
    return false;
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
      const uint64_t pages = m.pages();
      uint64_t page = 0;
      while (page < pages) {
        if (m.is_resident(page)) {
          ++page;
          continue;
        }
        uint64_t end = page + 1;
        while (end < pages && !m.is_resident(end)) ++end;
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

  std::mutex threads_mu_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::mutex status_mu_;
  Status stop_status_;

  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> copies_{0};
  std::atomic<uint64_t> zero_installs_{0};
  std::atomic<uint64_t> already_present_{0};
  std::atomic<uint64_t> retried_installs_{0};
  std::atomic<uint64_t> poisoned_{0};
  std::atomic<uint64_t> failed_faults_{0};
};

FaultServer::FaultServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FaultServer::~FaultServer() = default;

Result<std::unique_ptr<FaultServer>> FaultServer::create(PagerHandle pager,
                                                         FaultServerOptions options) {
  Result<uint64_t> supported = linux_uffd::supported_features();
  if (!supported.is_ok()) return supported.status();
  const uint64_t wanted = *supported & (UFFD_FEATURE_POISON | UFFD_FEATURE_MISSING_HUGETLBFS |
                                        UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_THREAD_ID);
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
  auto impl = std::make_unique<Impl>(std::move(pager), std::move(uffd), options.adopted_features,
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
  return impl_->prewarm(*this);
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
