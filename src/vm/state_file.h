// The VM state file: what `faultline vm snapshot` writes beside the memory
// file, and `faultline vm restore` reads back.
//
//   header (32 bytes, little-endian)
//     0  magic "FLTVMST\0"
//     8  u32 version (1)
//    12  u32 header size (32)
//    16  u64 length of the sections that follow
//    24  u32 CRC-32 of the header (this field as zero) and the sections
//    28  u32 flags (0)
//   sections, each
//     u32 tag, u32 vCPU index (0xffffffff: the VM as a whole), u64 length, bytes
//
// Every register group is its own section (see vcpu_state.h), so a new group
// is a new tag: files without it still read, and a reader meeting a tag it
// does not know refuses the file by name instead of resuming a VM wrongly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "faultline/pager.h"
#include "faultline/status.h"
#include "vm/vcpu_state.h"

namespace faultline::vm {

inline constexpr uint32_t kStateFileVersion = 1;
inline constexpr size_t kStateHeaderSize = 32;

enum class SectionTag : uint32_t {
  // The VM as a whole.
  kMachine = 1,  // guest RAM: base, size; vCPU count
  kPrewarm = 2,  // guest-physical ranges to install before the vCPU runs
  // Per vCPU, in restore order.
  kCpuid = 16,
  kRegs = 17,
  kSregs = 18,
  kXsave = 19,
  kFpu = 20,
  kXcrs = 21,
  kMsrs = 22,
  kVcpuEvents = 23,
  kDebugRegs = 24,
};

struct VmState {
  uint64_t ram_base = 0;
  uint64_t ram_size = 0;
  // What a resumed vCPU touches first: the page at RIP, the stack page, the
  // GDT and the page-table pages that translate them.
  std::vector<GuestRange> prewarm;
  std::vector<VcpuState> vcpus;
};

std::vector<std::byte> encode_vm_state(const VmState& state);
// `name` (the file's path) starts every error message.
Result<VmState> decode_vm_state(std::span<const std::byte> bytes, const std::string& name);

// Written durably (durable_file.h).
Status write_vm_state(const std::string& path, const VmState& state);
Result<VmState> read_vm_state(const std::string& path);

}  // namespace faultline::vm
