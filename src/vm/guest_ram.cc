#include "vm/guest_ram.h"

namespace faultline::vm {

Result<std::unique_ptr<GuestRam>> GuestRam::map(uint64_t size) {
  // No swap reserved: RAM the guest never touches costs nothing.
  auto memory = AnonymousMemory::map(size, "guest RAM",
                                     {.no_reserve = true, .pages = PageBacking::kSmallPages});
  if (!memory.is_ok()) return memory.status();
  return std::unique_ptr<GuestRam>(new GuestRam(std::move(memory).value()));
}

}  // namespace faultline::vm
