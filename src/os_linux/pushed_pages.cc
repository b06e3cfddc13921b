// Pages a network source pushes unasked (postcopy's background stream): they
// are installed like demand faults, except that pages already present (a
// demand fault got there first) are skipped, never overwritten.
#include <fmt/format.h>

#include "core/log.h"
#include "os_linux/fault_server_impl.h"

namespace faultline {

Status FaultServer::Impl::install_pushed(Gpa gpa, uint64_t length,
                                         std::span<const std::byte> bytes) {
  if (!bytes.empty() && bytes.size() != length) {
    return invalid_argument(
        fmt::format("pushed range [{:#x}, +{:#x}) carries {} bytes", gpa, length, bytes.size()));
  }
  std::lock_guard lock(push_mu_);
  uint64_t done = 0;
  while (done < length) {
    if (stopping_.load(std::memory_order_relaxed)) return Status(ErrorCode::kShutdown, "stopping");
    Mapping* m = mappings_.find_guest(gpa + done, kMinPageSize);
    if (m == nullptr) {
      return Status(ErrorCode::kOutOfRegion,
                    fmt::format("pushed page {:#x} lies outside every mapping", gpa + done));
    }
    const uint64_t page_size = m->layout.page_size;
    const uint64_t host = m->host_begin() + (gpa + done - m->layout.gpa);
    if (host % page_size != 0 || (length - done) < page_size) {
      return invalid_argument(
          fmt::format("pushed range [{:#x}, +{:#x}) does not cover whole "
                      "pages of {:#x} bytes",
                      gpa, length, page_size));
    }
    uint64_t page = m->page_index(host);
    // A run of pages not yet present, within this mapping and the range.
    uint64_t run = 0;
    const uint64_t max_run = std::min((length - done) / page_size, m->pages() - page);
    if (m->resident.test(page) || m->removed.test(page)) {
      done += page_size;
      continue;
    }
    while (run < max_run && !m->resident.test(page + run) && !m->removed.test(page + run)) ++run;
    const std::byte* src = bytes.empty() ? nullptr : bytes.data() + done;
    const uint64_t len = run * page_size;
    const uint64_t step = len;
    Result<Installed> installed = install_range(*m, host, step, src);
    if (!installed.is_ok()) return installed.status();
    if (*installed == Installed::kGone) {
      return Status(ErrorCode::kUnavailable, "the process whose memory this is has exited");
    }
    if (*installed == Installed::kAgain) continue;  // the address space changed; look again
    pushed_pages_.fetch_add(step / page_size, std::memory_order_relaxed);
    done += step;
  }
  return Status::ok();
}

bool FaultServer::Impl::holds_page(Gpa gpa) {
  Mapping* m = mappings_.find_guest(gpa, kMinPageSize);
  if (m == nullptr) return false;
  const uint64_t page = (gpa - m->layout.gpa) / m->layout.page_size;
  return m->resident.test(page) || m->removed.test(page);
}

bool FaultServer::Impl::everything_resident() {
  for (size_t i = 0; i < mappings_.size(); ++i) {
    Mapping& m = mappings_.at(i);
    if (m.retired.load()) continue;
    // A word (64 pages) at a time.
    const uint64_t pages = m.pages();
    for (uint64_t index = 0; index * 64 < pages; ++index) {
      const uint64_t in_mapping =
          pages - index * 64 >= 64 ? ~uint64_t{0} : (uint64_t{1} << (pages - index * 64)) - 1;
      if (((m.resident.word(index) | m.removed.word(index)) & in_mapping) != in_mapping) {
        return false;
      }
    }
  }
  note_fully_resident();
  return true;
}

}  // namespace faultline
