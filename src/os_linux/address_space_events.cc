// Userfaultfd events that are not faults: the VMM changed its address space.
// Called with events_mu_ held exclusively (see read_and_serve).
#include <fmt/format.h>

#include "core/log.h"
#include "os_linux/fault_server_impl.h"

namespace faultline {
namespace {

template <typename F>
void for_each_mapping_overlapping(MappingTable& mappings, uint64_t start, uint64_t end, F&& f) {
  for (size_t i = 0; i < mappings.size(); ++i) {
    Mapping& m = mappings.at(i);
    if (!m.retired.load() && start < m.host_end() && m.host_begin() < end) f(m);
  }
}

}  // namespace

void FaultServer::Impl::apply_event(const uffd_msg& msg) {
  switch (msg.event) {
    case UFFD_EVENT_REMOVE: {
      // Balloon inflation or MADV_DONTNEED: from now on these pages are zeros.
      const uint64_t start = msg.arg.remove.start;
      const uint64_t end = msg.arg.remove.end;
      uint64_t pages = 0;
      for_each_mapping_overlapping(
          mappings_, start, end, [&](Mapping& m) { pages += m.mark_removed(start, end - start); });
      removed_ranges_.fetch_add(1, std::memory_order_relaxed);
      removed_pages_.fetch_add(pages, std::memory_order_relaxed);
      log().debug("{}: range [{:#x}, {:#x}) removed: {} pages read as zeros from now on",
                  options_.name, start, end, pages);
      return;
    }
    case UFFD_EVENT_UNMAP: {
      const uint64_t start = msg.arg.remove.start;
      const uint64_t end = msg.arg.remove.end;
      for_each_mapping_overlapping(mappings_, start, end, [&](Mapping& m) {
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

// mremap moved [from, from + len) to [to, to + len): the pages, their
// registration and what we know of them move along.
void FaultServer::Impl::apply_remap(uint64_t from, uint64_t to, uint64_t len) {
  remaps_.fetch_add(1, std::memory_order_relaxed);
  Mapping* m = mappings_.find_host(from);
  if (m == nullptr) {
    log().warn("{}: remap of [{:#x}, +{:#x}) that no mapping holds", options_.name, from, len);
    return;
  }
  const uint64_t moved = std::min(len, m->host_end() - from);
  GuestMapping layout = m->layout;
  layout.gpa = m->guest_address(from);
  layout.host_addr = reinterpret_cast<void*>(to);
  layout.size = moved;
  Result<Mapping*> alias = mappings_.add_alias(layout, m->allowed_ioctls);
  if (!alias.is_ok()) {
    log().error("{}: cannot follow the remap of [{:#x}, +{:#x}) to {:#x}: {}", options_.name, from,
                len, to, alias.status().to_string());
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
  log().debug("{}: followed the remap of [{:#x}, +{:#x}) to {:#x}", options_.name, from, moved, to);
}

// The faulting process forked: its child's copy of guest memory is registered
// on a new userfaultfd. Serve it with the same pager and what we know so far.
void FaultServer::Impl::adopt_child(UniqueFd child_uffd) {
  forks_.fetch_add(1, std::memory_order_relaxed);
  FaultServerOptions options = options_;
  options.name = options_.name + "/child";
  // The child's copy is served on demand: the parent's session does the
  // prefetching and the recording.
  options.prefetch.fill = false;
  options.prefetch.working_set = nullptr;
  options.prefetch.record = nullptr;
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

}  // namespace faultline
