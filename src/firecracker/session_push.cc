#include "firecracker/session_push.h"

#include <algorithm>

namespace faultline::firecracker {

RegionSink::RegionSink(FaultServer& server, std::span<const RegionMapping> regions,
                       uint64_t page_size)
    : server_(server) {
  for (const RegionMapping& r : regions) {
    if (r.page_size == page_size) pushed_.push_back(r);
  }
}

Status RegionSink::install(Gpa gpa, uint64_t length, std::span<const std::byte> bytes) {
  // Guest-physical addresses here are offsets into the memory file.
  for (const RegionMapping& r : pushed_) {
    const uint64_t begin = std::max(gpa, r.offset);
    const uint64_t end = std::min(gpa + length, r.offset + r.size);
    if (begin >= end) continue;
    std::span<const std::byte> part =
        bytes.empty() ? bytes : bytes.subspan(begin - gpa, end - begin);
    if (Status s = server_.install(begin, end - begin, part); !s.is_ok()) return s;
  }
  return Status::ok();
}

bool RegionSink::holds_page(Gpa gpa) const {
  for (const RegionMapping& r : pushed_) {
    if (gpa >= r.offset && gpa - r.offset < r.size) return server_.holds_page(gpa);
  }
  return true;
}

SessionPush::SessionPush(FaultServer& server, std::span<const RegionMapping> regions,
                         uint64_t page_size)
    : sink_(server, regions, page_size) {}

SessionPush::~SessionPush() {
  push_.reset();
}

Result<std::unique_ptr<SessionPush>> SessionPush::start(NetworkPageSource& source,
                                                        FaultServer& server,
                                                        std::span<const RegionMapping> regions) {
  std::unique_ptr<SessionPush> push(new SessionPush(server, regions, source.image().page_size));
  auto started = source.start_push(push->sink_);
  if (!started.is_ok()) return started.status();
  push->push_ = std::move(started).value();
  return push;
}

}  // namespace faultline::firecracker
