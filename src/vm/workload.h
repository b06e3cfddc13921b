// The guest program's deterministic memory workload (guest/workload.S): its
// parameters, its progress reports and its results, as the VMM sees them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "faultline/status.h"

namespace faultline::vm {

inline constexpr uint64_t kMinGuestRam = 2ull << 20;
inline constexpr uint64_t kMaxGuestRam = 4ull << 30;  // what the boot page tables map

enum class WorkloadKind : uint64_t {
  kWalk = 0,        // fill, walk, stamps: every page in every pass
  kInvocation = 1,  // fill, ready (the snapshot point), touch a scattered fraction
};

struct WorkloadParams {
  uint64_t seed = 1;
  uint64_t progress_bytes = 16ull << 20;  // a report every this many bytes: 4 KiB << n
  uint64_t words_per_page = 2;            // 1, 2, 4, ... 512 (whole pages)
  WorkloadKind kind = WorkloadKind::kWalk;
  uint64_t touch_permille = 150;  // kInvocation: pages touched per 1000, 1..1000
};

// The parameter page as the guest reads it.
struct WorkloadInfo {
  uint64_t pages = 0;  // workload pages (guest RAM from GUEST_WORK_START)
  uint64_t seed = 0;
  uint64_t stride = 0;          // pass 2's step through the pages
  uint64_t progress_pages = 0;  // pages between progress reports (a power of two)
  uint64_t words_per_page = 0;
  WorkloadKind kind = WorkloadKind::kWalk;
  uint64_t reports_per_pass() const { return progress_pages == 0 ? 0 : pages / progress_pages; }
  // The walk: three passes of reports. The invocation: pass 1's, then the ready one.
  uint64_t total_reports() const;
};

struct WorkloadResults {
  uint64_t checksum = 0;
  uint64_t mismatches = 0;
  uint64_t pages = 0;  // pages walked, or touched by the invocation
  bool operator==(const WorkloadResults&) const = default;
};

// One report on PORT_PROGRESS.
struct Progress {
  uint32_t pass = 0;   // 1 fill, 2 walk (the invocation: ready), 3 stamps
  uint64_t pages = 0;  // pages done in this pass
  uint64_t index = 0;  // 1-based count of reports since the workload began
};

// Guest RAM sizes the workload runs in: [kMinGuestRam, kMaxGuestRam], 4 KiB multiples.
Status check_guest_ram_size(uint64_t size);

// Writes the boot tables, the program at GUEST_CODE and the parameter page.
Status load_workload(std::span<std::byte> ram, const WorkloadParams& params);

// Reads the parameter page (a host-side access to guest memory).
WorkloadInfo read_workload_info(std::span<const std::byte> ram);
// Reads the results the guest left in the parameter page.
WorkloadResults read_workload_results(std::span<const std::byte> ram);

// Pass 2's step through `pages` pages: coprime with it, so it visits each once.
uint64_t walk_stride(uint64_t pages);

Progress decode_progress(uint32_t value, const WorkloadInfo& info);

}  // namespace faultline::vm
