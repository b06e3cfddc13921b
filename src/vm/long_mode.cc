#include "vm/long_mode.h"

#include "core/little_endian.h"
#include "vm/guest/guest_abi.h"

namespace faultline::vm {
namespace {

constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kWritable = 1ull << 1;
constexpr uint64_t kHuge = 1ull << 7;
constexpr uint64_t kAddressMask = 0x000f'ffff'ffff'f000ull;

constexpr uint64_t kCr0Pe = 1ull << 0, kCr0Mp = 1ull << 1, kCr0Et = 1ull << 4, kCr0Ne = 1ull << 5,
                   kCr0Wp = 1ull << 16, kCr0Am = 1ull << 18, kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5, kCr4Osfxsr = 1ull << 9, kCr4Osxmmexcpt = 1ull << 10;
constexpr uint64_t kEferSce = 1ull << 0, kEferLme = 1ull << 8, kEferLma = 1ull << 10;

constexpr uint16_t kCodeSelector = 0x08;
constexpr uint16_t kDataSelector = 0x10;

kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.s = 1;
  s.l = code ? 1 : 0;
  s.db = code ? 0 : 1;
  s.g = 1;
  return s;
}

}  // namespace

void write_boot_tables(std::span<std::byte> ram) {
  le::put_u64(ram.subspan(GUEST_PML4, 8), GUEST_PDPT | kPresent | kWritable);
  for (uint64_t i = 0; i < GUEST_PD_PAGES; ++i) {
    const uint64_t pd = GUEST_PD + i * 4096;
    le::put_u64(ram.subspan(GUEST_PDPT + i * 8, 8), pd | kPresent | kWritable);
    for (uint64_t e = 0; e < 512; ++e) {
      const uint64_t phys = ((i * 512) + e) << 21;
      le::put_u64(ram.subspan(pd + e * 8, 8), phys | kPresent | kWritable | kHuge);
    }
  }
  le::put_u64(ram.subspan(GUEST_GDT + 0x00, 8), 0);
  le::put_u64(ram.subspan(GUEST_GDT + kCodeSelector, 8),
              0x00af'9b00'0000'ffffull);  // 64-bit code, accessed
  le::put_u64(ram.subspan(GUEST_GDT + kDataSelector, 8),
              0x00cf'9300'0000'ffffull);  // data, accessed
}

Status enter_long_mode(Vcpu& vcpu, uint64_t rip, uint64_t rsp) {
  kvm_sregs sregs{};
  auto got = kvm_ioctl(vcpu.fd(), KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
  if (!got.is_ok()) return got.status();
  sregs.cs = flat_segment(kCodeSelector, 0xb, true);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(kDataSelector, 0x3, false);
  sregs.gdt.base = GUEST_GDT;
  sregs.gdt.limit = 3 * 8 - 1;
  sregs.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Am | kCr0Pg;
  sregs.cr3 = GUEST_PML4;
  sregs.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt;
  sregs.efer = kEferSce | kEferLme | kEferLma;
  auto set = kvm_ioctl(vcpu.fd(), KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
  if (!set.is_ok()) return set.status();

  kvm_regs regs{};
  regs.rip = rip;
  regs.rsp = rsp;
  regs.rflags = 0x2;
  auto r = kvm_ioctl(vcpu.fd(), KVM_SET_REGS, &regs, "KVM_SET_REGS");
  return r.is_ok() ? Status::ok() : r.status();
}

PageWalk walk_page_tables(std::span<const std::byte> ram, uint64_t cr3, uint64_t vaddr) {
  PageWalk walk;
  uint64_t table = cr3 & kAddressMask;
  for (int level = 3; level >= 0; --level) {
    if (table + 4096 > ram.size()) return walk;
    walk.table_pages.push_back(table);
    const uint64_t index = (vaddr >> (12 + 9 * level)) & 511;
    const uint64_t entry = le::get_u64(ram.subspan(table + index * 8, 8));
    if ((entry & kPresent) == 0) return walk;
    const uint64_t next = entry & kAddressMask;
    const bool leaf = level == 0 || ((level == 1 || level == 2) && (entry & kHuge) != 0);
    if (leaf) {
      const uint64_t page_bits = 12 + 9 * static_cast<uint64_t>(level);
      const uint64_t base = next & ~((1ull << page_bits) - 1);
      walk.gpa = base | (vaddr & ((1ull << page_bits) - 1));
      walk.mapped = walk.gpa < ram.size();
      return walk;
    }
    table = next;
  }
  return walk;
}

}  // namespace faultline::vm
