#include "support/guest_memory.h"

#include <gtest/gtest.h>

namespace faultline::testing {

GuestMemory::GuestMemory(uint64_t size) {
  auto memory = AnonymousMemory::map(size, "guest memory",
                                     {.no_reserve = true, .pages = PageBacking::kSmallPages});
  if (!memory.is_ok()) {
    ADD_FAILURE() << memory.status().to_string();
    return;
  }
  memory_ = std::move(memory).value();
}

}  // namespace faultline::testing
