#include "naive_handler.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "os_linux/uffd.h"

namespace faultline::bench {

NaiveHandler::NaiveHandler(int file, std::byte* memory, uint64_t size)
    : file_(file), memory_(memory), size_(size), stop_(::eventfd(0, EFD_CLOEXEC)) {}

NaiveHandler::NaiveHandler(int file, std::byte* memory, uint64_t size, UniqueFd registered_uffd)
    : NaiveHandler(file, memory, size) {
  uffd_ = std::move(registered_uffd);
}

NaiveHandler::~NaiveHandler() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

Status NaiveHandler::start() {
  if (uffd_) {
    thread_ = std::thread([this] { loop(); });
    return Status::ok();
  }
  auto uffd = linux_uffd::open(0);
  if (!uffd.is_ok()) return uffd.status();
  uffd_ = std::move(uffd).value();
  auto registered = linux_uffd::register_missing(uffd_.get(), memory_, size_);
  if (!registered.is_ok()) return registered.status();
  thread_ = std::thread([this] { loop(); });
  return Status::ok();
}

void NaiveHandler::loop() {
  alignas(4096) static thread_local std::byte page[4096];
  pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    uffd_msg msg;
    if (::read(uffd_.get(), &msg, sizeof msg) != sizeof msg) continue;
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    const uint64_t addr = msg.arg.pagefault.address & ~uint64_t{4095};
    const auto offset = static_cast<off_t>(addr - reinterpret_cast<uint64_t>(memory_));
    if (::pread(file_, page, sizeof page, offset) != sizeof page) return;
    linux_uffd::copy(uffd_.get(), addr, page, sizeof page);
    faults_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace faultline::bench
