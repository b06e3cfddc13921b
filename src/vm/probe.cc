#include "vm/probe.h"

#include <fmt/format.h>

#include "vm/guest_ram.h"
#include "vm/machine.h"

namespace faultline::vm {

Status probe_kvm() {
  auto ram = GuestRam::map(kMinGuestRam);
  if (!ram.is_ok()) return ram.status();
  auto machine = Machine::create((*ram)->bytes());
  if (!machine.is_ok()) return machine.status();
  if (Status s = (*machine)->boot_workload({}); !s.is_ok()) return s;
  auto end = (*machine)->run({});
  if (!end.is_ok()) return end.status().with_context("a trivial guest");
  const auto& results = (*machine)->results();
  if (*end != RunEnd::kFinished || !results || results->mismatches != 0 ||
      results->pages != (*machine)->workload().pages) {
    return Status(ErrorCode::kUnsupported, "a trivial guest ran but reported wrong results");
  }
  return Status::ok();
}

}  // namespace faultline::vm
