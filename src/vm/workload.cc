#include "vm/workload.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>
#include <numeric>

#include "core/little_endian.h"
#include "vm/guest/guest_abi.h"
#include "vm/guest_program.h"
#include "vm/invocation.h"
#include "vm/long_mode.h"

namespace faultline::vm {
// Near the golden-ratio point, so consecutive visits land far apart.
uint64_t walk_stride(uint64_t pages) {
  uint64_t stride = std::max<uint64_t>(1, pages * 618 / 1000) | 1;
  while (std::gcd(stride, pages) != 1) stride += 2;
  return stride % pages == 0 ? 1 : stride % pages;
}

uint64_t WorkloadInfo::total_reports() const {
  if (kind == WorkloadKind::kInvocation) return reports_per_pass() + 1;
  return WORKLOAD_PASSES * reports_per_pass();
}

Status check_guest_ram_size(uint64_t size) {
  if (size < kMinGuestRam || size > kMaxGuestRam || size % 4096 != 0) {
    return invalid_argument(fmt::format(
        "guest RAM of {} bytes: it must be a multiple of 4 KiB between {} MiB and {} GiB", size,
        kMinGuestRam >> 20, kMaxGuestRam >> 30));
  }
  return Status::ok();
}

Status load_workload(std::span<std::byte> ram, const WorkloadParams& params) {
  if (Status s = check_guest_ram_size(ram.size()); !s.is_ok()) return s;
  const std::span<const std::byte> program = workload_program();
  if (program.size() > GUEST_STACK_TOP - GUEST_CODE - 4096) {
    return invalid_argument(
        fmt::format("the guest program is {} bytes, too large", program.size()));
  }
  if (params.progress_bytes < 4096 || !std::has_single_bit(params.progress_bytes)) {
    return invalid_argument(
        fmt::format("a progress report every {} bytes: it must be a power of two, 4 KiB or more",
                    params.progress_bytes));
  }
  if (params.words_per_page == 0 || params.words_per_page > 512 ||
      !std::has_single_bit(params.words_per_page)) {
    return invalid_argument(fmt::format(
        "{} words per page: it must be a power of two from 1 to 512", params.words_per_page));
  }
  if (params.kind != WorkloadKind::kWalk && params.kind != WorkloadKind::kInvocation) {
    return invalid_argument(
        fmt::format("workload kind {}: unknown", static_cast<uint64_t>(params.kind)));
  }
  if (params.touch_permille == 0 || params.touch_permille > 1000) {
    return invalid_argument(
        fmt::format("{} pages touched per 1000: it must be from 1 to 1000", params.touch_permille));
  }
  write_boot_tables(ram);
  std::memcpy(ram.data() + GUEST_CODE, program.data(), program.size());
  const uint64_t pages = (ram.size() - GUEST_WORK_START) / 4096;
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_WORK_PAGES, 8), pages);
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_SEED, 8), params.seed);
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_STRIDE, 8), walk_stride(pages));
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_PROGRESS_MASK, 8), params.progress_bytes / 4096 - 1);
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_WORDS_PER_PAGE, 8), params.words_per_page);
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_WORD_STEP, 8), 4096 / params.words_per_page);
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_KIND, 8), static_cast<uint64_t>(params.kind));
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_TOUCH_PAGES, 8),
              invocation_touch_pages(pages, params.touch_permille));
  le::put_u64(ram.subspan(GUEST_PARAMS + PARAM_TOUCH_MASK, 8), invocation_touch_mask(pages));
  return Status::ok();
}

WorkloadInfo read_workload_info(std::span<const std::byte> ram) {
  WorkloadInfo info;
  info.pages = le::get_u64(ram.subspan(GUEST_PARAMS + PARAM_WORK_PAGES, 8));
  info.seed = le::get_u64(ram.subspan(GUEST_PARAMS + PARAM_SEED, 8));
  info.stride = le::get_u64(ram.subspan(GUEST_PARAMS + PARAM_STRIDE, 8));
  info.progress_pages = le::get_u64(ram.subspan(GUEST_PARAMS + PARAM_PROGRESS_MASK, 8)) + 1;
  info.words_per_page = le::get_u64(ram.subspan(GUEST_PARAMS + PARAM_WORDS_PER_PAGE, 8));
  info.kind = static_cast<WorkloadKind>(le::get_u64(ram.subspan(GUEST_PARAMS + PARAM_KIND, 8)));
  return info;
}

WorkloadResults read_workload_results(std::span<const std::byte> ram) {
  WorkloadResults r;
  r.checksum = le::get_u64(ram.subspan(GUEST_PARAMS + RESULT_CHECKSUM, 8));
  r.mismatches = le::get_u64(ram.subspan(GUEST_PARAMS + RESULT_MISMATCHES, 8));
  r.pages = le::get_u64(ram.subspan(GUEST_PARAMS + RESULT_PAGES, 8));
  return r;
}

Progress decode_progress(uint32_t value, const WorkloadInfo& info) {
  Progress p;
  p.pass = value >> 28;
  p.pages = value & ((1u << 28) - 1);
  if (info.kind == WorkloadKind::kInvocation && p.pass == INVOCATION_READY_PASS) {
    p.index = info.reports_per_pass() + 1;
  } else if (info.progress_pages != 0 && p.pass >= 1) {
    p.index = (p.pass - 1) * info.reports_per_pass() + p.pages / info.progress_pages;
  }
  return p;
}

}  // namespace faultline::vm
