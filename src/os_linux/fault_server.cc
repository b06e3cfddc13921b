// The userfaultfd fault server: reads faults, asks the Pager, installs pages.
// This file: its life cycle and the public API.
#include "faultline/fault_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/eventfd.h>

#include <bit>
#include <cerrno>

#include "core/log.h"
#include "os_linux/fault_server_impl.h"
#include "os_linux/wake_round_trip.h"

namespace faultline {

FaultServer::Impl::Impl(PagerHandle pager, UniqueFd uffd, uint64_t features, bool owns_registration,
                        FaultServerOptions options)
    : pager_(std::move(pager)),
      options_(std::move(options)),
      uffd_(std::move(uffd)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      features_(features),
      owns_registration_(owns_registration) {}

namespace {

// At least the largest fill chunk: zeros are copied in steps of this.
constexpr uint64_t kZeroSourceBytes = 2ull << 20;

}  // namespace

Status FaultServer::Impl::init() {
  if (!wake_) return io_error("eventfd for the fault server's shutdown signal", errno);
  if (options_.threads < 1) {
    return invalid_argument(
        fmt::format("fault server needs at least one thread, got {}", options_.threads));
  }
  if (options_.max_page_size < kMinPageSize || !std::has_single_bit(options_.max_page_size)) {
    return invalid_argument(fmt::format("max page size {} is not a power of two of at least {}",
                                        options_.max_page_size, kMinPageSize));
  }
  const PrefetchOptions& p = options_.prefetch;
  if (p.max_window < kMinPageSize || !std::has_single_bit(p.max_window)) {
    return invalid_argument(
        fmt::format("the largest fault-around window {} is not a power of two of at least {}",
                    p.max_window, kMinPageSize));
  }
  if (p.fixed_window != 0 && (p.fixed_window % kMinPageSize != 0)) {
    return invalid_argument(
        fmt::format("the fixed window {} is not a multiple of {}", p.fixed_window, kMinPageSize));
  }
  spare_core_ = std::thread::hardware_concurrency() > static_cast<unsigned>(options_.threads);
  // Zeros to copy where UFFDIO_ZEROPAGE is not allowed: never written, so
  // never backed by more than the kernel's zero page.
  auto zeros = AnonymousMemory::map(std::max(max_window_bytes(), kZeroSourceBytes),
                                    "zeros for UFFDIO_COPY", {.no_reserve = true});
  if (!zeros.is_ok()) return zeros.status();
  zeros_ = std::move(zeros).value();
  listener_id_ = pager_->add_shutdown_listener([this] { request_shutdown(); });
  return Status::ok();
}

FaultServer::Impl::~Impl() {
  request_shutdown();
  join();
  children_.clear();
  pager_->remove_shutdown_listener(listener_id_);
  if (owns_registration_) poison_unresident();
}

uint64_t FaultServer::Impl::max_window_bytes() const {
  return std::max(
      {options_.max_page_size, options_.prefetch.max_window, options_.prefetch.fixed_window});
}

bool FaultServer::Impl::fills_in_background() const {
  const PrefetchOptions& p = options_.prefetch;
  if (p.record) return false;
  const bool replays = p.working_set != nullptr && p.policy != PrefetchPolicy::kDemand;
  return replays || (p.policy == PrefetchPolicy::kFull && p.fill);
}

Status FaultServer::Impl::map(const GuestMapping& m, bool register_with_uffd) {
  const auto host = reinterpret_cast<uint64_t>(m.host_addr);
  if (m.page_size < kMinPageSize || !std::has_single_bit(m.page_size) ||
      m.page_size > options_.max_page_size) {
    return invalid_argument(fmt::format("mapping page size {} must be a power of two in [{}, {}]",
                                        m.page_size, kMinPageSize, options_.max_page_size));
  }
  if (m.size == 0 || m.size % m.page_size != 0 || host % m.page_size != 0 ||
      m.gpa % m.page_size != 0) {
    return invalid_argument(fmt::format(
        "mapping guest [{:#x}, +{:#x}) at host {:#x} is empty or not aligned to its page size "
        "{:#x}",
        m.gpa, m.size, host, m.page_size));
  }
  if (host + m.size < host || m.gpa + m.size < m.gpa) {
    return invalid_argument(fmt::format("mapping guest [{:#x}, +{:#x}) wraps", m.gpa, m.size));
  }
  if (!pager_->contains_range(m.gpa, m.size)) {
    return invalid_argument(fmt::format(
        "mapping guest [{:#x}, +{:#x}) is not inside one of the pager's regions", m.gpa, m.size));
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

Status FaultServer::Impl::start() {
  std::lock_guard lock(threads_mu_);
  if (!threads_.empty()) return invalid_argument("fault server already started");
  if (stopping_.load()) return Status(ErrorCode::kShutdown, "fault server was shut down");
  // Before any fault is served: the round trip (measured once per process)
  // sizes the first windows, and the recording's clock starts at resume.
  if (const uint64_t round_trip = wake_round_trip_ns(); round_trip != 0) {
    cost_.set_round_trip_ns(static_cast<double>(round_trip));
  }
  if (options_.prefetch.record) options_.prefetch.record->start_clock();
  started_at_ = std::chrono::steady_clock::now();
  running_threads_.store(options_.threads);
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] {
      serve_loop();
      running_threads_.fetch_sub(1);
    });
  }
  const bool fills = fills_in_background();
  if (fills) threads_.emplace_back([this] { fill_loop(); });
  log().debug("{}: serving with {} thread(s), prefetch {}{}", options_.name, options_.threads,
              prefetch_policy_name(options_.prefetch.policy), fills ? " and background fill" : "");
  return Status::ok();
}

Status FaultServer::Impl::install_guest_page(Gpa page_gpa, uint64_t page_size,
                                             std::span<const std::byte> bytes) {
  Mapping* m = mappings_.find_guest(page_gpa, page_size);
  if (m == nullptr || page_size != m->layout.page_size) {
    return invalid_argument(fmt::format(
        "no mapping holds guest page [{:#x}, +{:#x}) with that page size", page_gpa, page_size));
  }
  if (!bytes.empty() && bytes.size() < page_size) {
    return invalid_argument(
        fmt::format("{} bytes given for a page of {}", bytes.size(), page_size));
  }
  const uint64_t host = m->host_begin() + (page_gpa - m->layout.gpa);
  for (int attempt = 0;; ++attempt) {
    Result<Installed> r =
        install_range(*m, host, page_size, bytes.empty() ? nullptr : bytes.data());
    if (!r.is_ok()) return r.status();
    if (*r != Installed::kAgain) return Status::ok();
    if (attempt > 10000) {
      return Status(
          ErrorCode::kTimeout,
          fmt::format("installing guest page {:#x}: the address space kept changing", page_gpa));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// Prewarm installs each page at its mapping's page size, retrying while the
// address space changes.
class FaultServer::Impl::PrewarmSink final : public PageSink {
 public:
  explicit PrewarmSink(Impl& server) : server_(server) {}
  Status install(Gpa gpa, uint64_t length, std::span<const std::byte> bytes) override {
    return server_.install_guest_page(gpa, length, bytes);
  }
  bool holds_page(Gpa gpa) const override { return server_.holds_page(gpa); }

 private:
  Impl& server_;
};

Status FaultServer::Impl::prewarm() {
  PrewarmSink sink(*this);
  return pager_->prewarm(sink);
}

void FaultServer::Impl::request_shutdown() {
  if (stopping_.exchange(true)) return;
  const uint64_t one = 1;
  // The eventfd stays readable from here on, so every thread sees it.
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  std::lock_guard lock(children_mu_);
  for (auto& child : children_) child->request_shutdown();
}

Status FaultServer::Impl::wait() {
  join();
  std::lock_guard lock(status_mu_);
  return stop_status_;
}

void FaultServer::Impl::join() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(threads_mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

void FaultServer::Impl::stop_with(const Status& why) {
  {
    std::lock_guard lock(status_mu_);
    if (stop_status_.is_ok()) stop_status_ = why;
  }
  request_shutdown();
}

bool FaultServer::Impl::stopped_by_failure() {
  std::lock_guard lock(status_mu_);
  return !stop_status_.is_ok();
}

FaultServerStats FaultServer::Impl::stats() const {
  FaultServerStats s;
#define FAULTLINE_LOAD_COUNTER(name) s.name = name##_.load(std::memory_order_relaxed);
  FAULTLINE_FAULT_SERVER_COUNTERS(FAULTLINE_LOAD_COUNTER)
#undef FAULTLINE_LOAD_COUNTER
  return s;
}

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
  if (!linux_uffd::api_done(uffd.get())) {
    return invalid_argument(
        "the userfaultfd was never initialised: its owner must do UFFDIO_API (and register "
        "its memory) before handing it over");
  }
  int flags = ::fcntl(uffd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(uffd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return io_error("making the adopted userfaultfd non-blocking", errno);
  }
  // Whoever made the descriptor negotiated its features; the one we need to
  // know, poisoning, the descriptor itself can tell.
  const uint64_t features = linux_uffd::can_poison(uffd.get()) ? UFFD_FEATURE_POISON : 0;
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
  return impl_->prewarm();
}
Status FaultServer::install(Gpa gpa, uint64_t length, std::span<const std::byte> bytes) {
  return impl_->install_pushed(gpa, length, bytes);
}
bool FaultServer::holds_page(Gpa gpa) const {
  return impl_->holds_page(gpa);
}
bool FaultServer::everything_resident() {
  return impl_->everything_resident();
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
bool FaultServer::can_poison() const {
  return impl_->can_poison();
}

}  // namespace faultline
