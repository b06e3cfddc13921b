#include "vm/invocation.h"

#include <algorithm>
#include <bit>

#include "vm/guest/guest_abi.h"

namespace faultline::vm {

uint64_t invocation_touch_pages(uint64_t pages, uint64_t permille) {
  return std::max<uint64_t>(1, pages * permille / 1000);
}

uint64_t invocation_touch_mask(uint64_t pages) {
  return std::bit_ceil(pages) - 1;
}

std::vector<uint64_t> invocation_touches(uint64_t pages, uint64_t seed, uint64_t permille) {
  const uint64_t mask = invocation_touch_mask(pages);
  const uint64_t n = invocation_touch_pages(pages, permille);
  std::vector<uint64_t> out;
  out.reserve(n);
  uint64_t x = seed & mask;
  while (out.size() < n) {
    x = (x * INVOCATION_LCG_MUL + INVOCATION_LCG_ADD) & mask;
    if (x < pages) out.push_back(x);
  }
  return out;
}

}  // namespace faultline::vm
