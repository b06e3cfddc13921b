// The invocation workload (guest/invocation.S) seen from the host: which
// pages a run touches after its ready report, and in what order, computed as
// the guest computes them.
#pragma once

#include <cstdint>
#include <vector>

namespace faultline::vm {

// PARAM_TOUCH_PAGES: `permille` of `pages` (at least one page).
uint64_t invocation_touch_pages(uint64_t pages, uint64_t permille);
// PARAM_TOUCH_MASK: the LCG's modulus (the power of two at least `pages`) - 1.
uint64_t invocation_touch_mask(uint64_t pages);

// The workload page indexes the invocation touches, in order.
std::vector<uint64_t> invocation_touches(uint64_t pages, uint64_t seed, uint64_t permille);

}  // namespace faultline::vm
