// Starting a vCPU directly in 64-bit long mode, with no firmware: identity-
// mapped page tables and a flat GDT in guest memory, and the control
// registers, EFER and segments set through KVM_SET_SREGS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "faultline/page_source.h"
#include "faultline/status.h"
#include "vm/vcpu.h"

namespace faultline::vm {

// Identity-maps the first 4 GiB with 2 MiB pages (GUEST_PML4, GUEST_PDPT,
// GUEST_PD) and writes a GDT with a 64-bit code and a data segment (GUEST_GDT).
void write_boot_tables(std::span<std::byte> ram);

// Puts the vCPU in long mode on those tables, at `rip` with stack `rsp`.
Status enter_long_mode(Vcpu& vcpu, uint64_t rip, uint64_t rsp);

// The guest-physical pages a 4-level page walk of `vaddr` from `cr3` reads,
// and where it lands (nothing if a table entry is not present or lies outside
// `ram`). Reads guest memory: under a pager, a host-side access.
struct PageWalk {
  std::vector<uint64_t> table_pages;
  bool mapped = false;
  Gpa gpa = 0;
};
PageWalk walk_page_tables(std::span<const std::byte> ram, uint64_t cr3, uint64_t vaddr);

}  // namespace faultline::vm
