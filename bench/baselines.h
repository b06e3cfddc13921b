// What users restore with when they do not use faultline, as benchmark rows:
// an eager copy of the whole image, and the kernel's MAP_PRIVATE file mapping
// (what Firecracker does without a page-fault handler).
#pragma once

#include <cstdint>

#include "workloads.h"

namespace faultline::bench {

// Anonymous memory, the image pread into it, then the workload; resident_ms
// is the copy's time.
Outcome eager_copy(int image, uint64_t size, const Workload& w);

// The image mapped MAP_PRIVATE, then the workload; faults from getrusage.
Outcome kernel_private_mapping(int image, uint64_t size, const Workload& w);

}  // namespace faultline::bench
