#include "vm/state_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/durable_file.h"
#include "core/little_endian.h"
#include "faultline/unique_fd.h"
#include "vm/crc32.h"

namespace faultline::vm {
namespace {

constexpr char kMagic[8] = {'F', 'L', 'T', 'V', 'M', 'S', 'T', '\0'};
constexpr uint32_t kVmWide = 0xffffffff;
constexpr size_t kCrcOffset = 24;

std::string section_name(uint32_t tag) {
  switch (static_cast<SectionTag>(tag)) {
    case SectionTag::kMachine:
      return "MACHINE";
    case SectionTag::kPrewarm:
      return "PREWARM";
    case SectionTag::kCpuid:
      return "CPUID";
    case SectionTag::kRegs:
      return "REGS";
    case SectionTag::kSregs:
      return "SREGS";
    case SectionTag::kXsave:
      return "XSAVE";
    case SectionTag::kFpu:
      return "FPU";
    case SectionTag::kXcrs:
      return "XCRS";
    case SectionTag::kMsrs:
      return "MSRS";
    case SectionTag::kVcpuEvents:
      return "VCPU_EVENTS";
    case SectionTag::kDebugRegs:
      return "DEBUGREGS";
  }
  return fmt::format("unknown ({})", tag);
}

// The header, section headers, MACHINE and PREWARM are little-endian field by
// field; the KVM register groups are KVM's own x86-64 layouts, kept as KVM
// gives them (they mean nothing on another architecture anyway).
class Writer {
 public:
  void u32(uint32_t v) { le::append_u32(out_, v); }
  void u64(uint64_t v) { le::append_u64(out_, v); }
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void section(SectionTag tag, uint32_t vcpu, const void* p, size_t n) {
    u32(static_cast<uint32_t>(tag));
    u32(vcpu);
    u64(static_cast<uint64_t>(n));
    bytes(p, n);
  }
  template <typename T>
  void section(SectionTag tag, uint32_t vcpu, const T& value) {
    section(tag, vcpu, &value, sizeof(T));
  }
  template <typename T>
  void section(SectionTag tag, uint32_t vcpu, const std::vector<T>& values) {
    section(tag, vcpu, values.data(), values.size() * sizeof(T));
  }
  std::vector<std::byte>& out() { return out_; }

 private:
  std::vector<std::byte> out_;
};

template <typename T>
T load(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// One section's payload, with the checks every section needs.
struct Section {
  uint32_t tag;
  uint32_t vcpu;
  std::span<const std::byte> body;
  uint64_t offset;  // in the file, for messages

  std::string where() const {
    return fmt::format("section {} at offset {}{}", section_name(tag), offset,
                       vcpu == kVmWide ? "" : fmt::format(" (vCPU {})", vcpu));
  }
  template <typename T>
  Result<T> as() const {
    if (body.size() != sizeof(T)) {
      return invalid_argument(
          fmt::format("{} is {} bytes, expected {}", where(), body.size(), sizeof(T)));
    }
    return load<T>(body.data());
  }
  template <typename T>
  Result<std::vector<T>> as_array() const {
    if (body.size() % sizeof(T) != 0) {
      return invalid_argument(fmt::format("{} is {} bytes, not a whole number of {}-byte entries",
                                          where(), body.size(), sizeof(T)));
    }
    std::vector<T> values(body.size() / sizeof(T));
    // An empty section (e.g. no CPUID entries where KVM gave none) has no data
    // pointer; memcpy must not see it.
    if (!values.empty()) std::memcpy(values.data(), body.data(), body.size());
    return values;
  }
};

template <typename V, typename Into>
Status assign(Result<V> value, Into& into) {
  if (!value.is_ok()) return value.status();
  into = std::move(value).value();
  return Status::ok();
}

template <typename T>
Status take(const Section& s, T& into) {
  return assign(s.as<T>(), into);
}
template <typename T>
Status take(const Section& s, std::optional<T>& into) {
  return assign(s.as<T>(), into);
}
template <typename T>
Status take(const Section& s, std::vector<T>& into) {
  return assign(s.as_array<T>(), into);
}

// MACHINE: u64 RAM base, u64 RAM size, u32 vCPU count, u32 reserved.
struct MachineSection {
  uint64_t ram_base;
  uint64_t ram_size;
  uint32_t vcpu_count;
  uint32_t reserved;
};
constexpr size_t kMachineSectionSize = 24;
// PREWARM: per range, u64 base and u64 size.
constexpr size_t kPrewarmEntrySize = 16;

std::vector<std::byte> encode_machine(const MachineSection& m) {
  std::vector<std::byte> out(kMachineSectionSize);
  le::Writer w(out);
  w.u64(m.ram_base);
  w.u64(m.ram_size);
  w.u32(m.vcpu_count);
  w.u32(m.reserved);
  return out;
}

Result<MachineSection> decode_machine(const Section& s) {
  if (s.body.size() != kMachineSectionSize) {
    return invalid_argument(
        fmt::format("{} is {} bytes, expected {}", s.where(), s.body.size(), kMachineSectionSize));
  }
  le::Reader r(s.body);
  MachineSection m{};
  m.ram_base = r.u64();
  m.ram_size = r.u64();
  m.vcpu_count = r.u32();
  m.reserved = r.u32();
  return m;
}

std::vector<std::byte> encode_prewarm(const std::vector<GuestRange>& ranges) {
  std::vector<std::byte> out;
  for (const GuestRange& r : ranges) {
    le::append_u64(out, r.base);
    le::append_u64(out, r.size);
  }
  return out;
}

Result<std::vector<GuestRange>> decode_prewarm(const Section& s) {
  if (s.body.size() % kPrewarmEntrySize != 0) {
    return invalid_argument(fmt::format("{} is {} bytes, not a whole number of {}-byte entries",
                                        s.where(), s.body.size(), kPrewarmEntrySize));
  }
  std::vector<GuestRange> ranges;
  for (le::Reader r(s.body); r.left() > 0;) {
    GuestRange range;
    range.base = r.u64();
    range.size = r.u64();
    ranges.push_back(range);
  }
  return ranges;
}

Status apply_vcpu_section(const Section& s, VcpuState& v) {
  switch (static_cast<SectionTag>(s.tag)) {
    case SectionTag::kCpuid:
      return take(s, v.cpuid);
    case SectionTag::kRegs:
      return take(s, v.regs);
    case SectionTag::kSregs:
      return take(s, v.sregs);
    case SectionTag::kXsave:
      if (s.body.size() < sizeof(kvm_xsave)) {
        return invalid_argument(fmt::format("{} is {} bytes, shorter than the {}-byte XSAVE area",
                                            s.where(), s.body.size(), sizeof(kvm_xsave)));
      }
      v.xsave.assign(s.body.begin(), s.body.end());
      return Status::ok();
    case SectionTag::kFpu:
      return take(s, v.fpu);
    case SectionTag::kXcrs:
      return take(s, v.xcrs);
    case SectionTag::kMsrs:
      return take(s, v.msrs);
    case SectionTag::kVcpuEvents:
      return take(s, v.events);
    case SectionTag::kDebugRegs:
      return take(s, v.debugregs);
    default:
      break;
  }
  return invalid_argument(
      fmt::format("{}: not a vCPU section (a file from a newer faultline?)", s.where()));
}

Status apply_vm_section(const Section& s, VmState& state, uint32_t& vcpu_count, bool& has_machine) {
  switch (static_cast<SectionTag>(s.tag)) {
    case SectionTag::kMachine: {
      auto m = decode_machine(s);
      if (!m.is_ok()) return m.status();
      if (m->ram_size == 0 || m->ram_size % kMinPageSize != 0 || m->ram_base % kMinPageSize != 0) {
        return invalid_argument(
            fmt::format("{}: guest RAM {:#x}+{:#x} is empty or not page-aligned", s.where(),
                        m->ram_base, m->ram_size));
      }
      if (m->vcpu_count == 0 || m->vcpu_count > 256) {
        return invalid_argument(fmt::format("{}: {} vCPUs", s.where(), m->vcpu_count));
      }
      state.ram_base = m->ram_base;
      state.ram_size = m->ram_size;
      vcpu_count = m->vcpu_count;
      has_machine = true;
      return Status::ok();
    }
    case SectionTag::kPrewarm:
      return assign(decode_prewarm(s), state.prewarm);
    default:
      break;
  }
  return invalid_argument(
      fmt::format("{}: not a VM-wide section (a file from a newer faultline?)", s.where()));
}

Status check_complete(const VmState& state, const std::vector<bool>& has_regs,
                      const std::vector<bool>& has_sregs) {
  for (size_t i = 0; i < state.vcpus.size(); ++i) {
    if (!has_regs[i]) return invalid_argument(fmt::format("no REGS section for vCPU {}", i));
    if (!has_sregs[i]) return invalid_argument(fmt::format("no SREGS section for vCPU {}", i));
  }
  for (const GuestRange& r : state.prewarm) {
    if (r.base < state.ram_base || r.size > state.ram_size ||
        r.base - state.ram_base > state.ram_size - r.size) {
      return invalid_argument(
          fmt::format("prewarm range {:#x}+{:#x} lies outside guest RAM", r.base, r.size));
    }
  }
  return Status::ok();
}

Result<VmState> decode_sections(std::span<const std::byte> payload) {
  VmState state;
  uint32_t vcpu_count = 0;
  bool has_machine = false;
  std::vector<bool> has_regs, has_sregs;
  size_t pos = 0;
  constexpr size_t kSectionHeader = 16;
  while (pos < payload.size()) {
    const uint64_t file_offset = kStateHeaderSize + pos;
    if (payload.size() - pos < kSectionHeader) {
      return invalid_argument(
          fmt::format("a section header at offset {} is cut short", file_offset));
    }
    Section s{
        le::get_u32(payload.subspan(pos)), le::get_u32(payload.subspan(pos + 4)), {}, file_offset};
    const uint64_t len = le::get_u64(payload.subspan(pos + 8));
    pos += kSectionHeader;
    if (len > payload.size() - pos) {
      return invalid_argument(
          fmt::format("{} claims {} bytes; only {} remain", s.where(), len, payload.size() - pos));
    }
    s.body = payload.subspan(pos, len);
    pos += len;
    Status st;
    if (s.vcpu == kVmWide) {
      st = apply_vm_section(s, state, vcpu_count, has_machine);
      if (st.is_ok() && has_machine && state.vcpus.empty()) {
        state.vcpus.resize(vcpu_count);
        for (uint32_t i = 0; i < vcpu_count; ++i) state.vcpus[i].index = i;
        has_regs.assign(vcpu_count, false);
        has_sregs.assign(vcpu_count, false);
      }
    } else if (!has_machine) {
      st = invalid_argument(fmt::format("{} comes before the MACHINE section", s.where()));
    } else if (s.vcpu >= vcpu_count) {
      st = invalid_argument(fmt::format("{}: the machine has {} vCPUs", s.where(), vcpu_count));
    } else {
      st = apply_vcpu_section(s, state.vcpus[s.vcpu]);
      if (s.tag == static_cast<uint32_t>(SectionTag::kRegs)) has_regs[s.vcpu] = true;
      if (s.tag == static_cast<uint32_t>(SectionTag::kSregs)) has_sregs[s.vcpu] = true;
    }
    if (!st.is_ok()) return st;
  }
  if (!has_machine) return invalid_argument("no MACHINE section");
  if (Status st = check_complete(state, has_regs, has_sregs); !st.is_ok()) return st;
  return state;
}

}  // namespace

std::vector<std::byte> encode_vm_state(const VmState& state) {
  Writer w;
  w.bytes(kMagic, sizeof(kMagic));
  w.u32(kStateFileVersion);
  w.u32(static_cast<uint32_t>(kStateHeaderSize));
  w.u64(0);  // length, below
  w.u32(0);  // CRC, below
  w.u32(0);  // flags

  const MachineSection machine{state.ram_base, state.ram_size,
                               static_cast<uint32_t>(state.vcpus.size()), 0};
  w.section(SectionTag::kMachine, kVmWide, encode_machine(machine));
  w.section(SectionTag::kPrewarm, kVmWide, encode_prewarm(state.prewarm));
  for (const VcpuState& v : state.vcpus) {
    w.section(SectionTag::kCpuid, v.index, v.cpuid);
    w.section(SectionTag::kRegs, v.index, v.regs);
    w.section(SectionTag::kSregs, v.index, v.sregs);
    if (!v.xsave.empty()) w.section(SectionTag::kXsave, v.index, v.xsave);
    if (v.fpu) w.section(SectionTag::kFpu, v.index, *v.fpu);
    if (v.xcrs) w.section(SectionTag::kXcrs, v.index, *v.xcrs);
    w.section(SectionTag::kMsrs, v.index, v.msrs);
    if (v.events) w.section(SectionTag::kVcpuEvents, v.index, *v.events);
    if (v.debugregs) w.section(SectionTag::kDebugRegs, v.index, *v.debugregs);
  }

  std::vector<std::byte>& out = w.out();
  const uint64_t length = out.size() - kStateHeaderSize;
  le::put_u64(std::span(out).subspan(16), length);
  le::put_u32(std::span(out).subspan(kCrcOffset), crc32(out));
  return std::move(out);
}

Result<VmState> decode_vm_state(std::span<const std::byte> bytes, const std::string& name) {
  auto fail = [&name](std::string why) { return invalid_argument(name + ": " + why); };
  if (bytes.size() < kStateHeaderSize) {
    return fail(fmt::format(
        "{} bytes, shorter than the {}-byte header: truncated, or not a faultline VM state file",
        bytes.size(), kStateHeaderSize));
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return fail("not a faultline VM state file (bad magic)");
  }
  const uint32_t version = le::get_u32(bytes.subspan(8));
  if (version != kStateFileVersion) {
    return fail(fmt::format("state file version {}; this faultline reads version {}", version,
                            kStateFileVersion));
  }
  const uint32_t header_size = le::get_u32(bytes.subspan(12));
  const uint64_t length = le::get_u64(bytes.subspan(16));
  const uint32_t stored_crc = le::get_u32(bytes.subspan(kCrcOffset));
  const uint32_t flags = le::get_u32(bytes.subspan(28));
  if (header_size != kStateHeaderSize) {
    return fail(fmt::format("header size {}, expected {}", header_size, kStateHeaderSize));
  }
  const uint64_t have = bytes.size() - kStateHeaderSize;
  if (have < length) {
    return fail(fmt::format("truncated: the header promises {} bytes of sections, the file has {}",
                            length, have));
  }
  if (have > length) {
    return fail(
        fmt::format("{} unexpected bytes after the {} bytes of sections", have - length, length));
  }
  std::byte header[kStateHeaderSize];
  std::memcpy(header, bytes.data(), kStateHeaderSize);
  std::memset(header + kCrcOffset, 0, sizeof(uint32_t));
  const uint32_t crc = crc32(bytes.subspan(kStateHeaderSize), crc32(header));
  if (crc != stored_crc) {
    return fail(
        fmt::format("checksum mismatch (stored CRC-32 {:#010x}, computed {:#010x}): the "
                    "file is corrupted",
                    stored_crc, crc));
  }
  if (flags != 0) return fail(fmt::format("unknown flags {:#x}", flags));
  auto state = decode_sections(bytes.subspan(kStateHeaderSize));
  if (!state.is_ok()) return fail(state.status().message());
  return state;
}

Status write_vm_state(const std::string& path, const VmState& state) {
  const std::vector<std::byte> bytes = encode_vm_state(state);
  return write_file_durably(
      path, [&](int fd) { return pwrite_all(fd, bytes.data(), bytes.size(), 0, path); });
}

Result<VmState> read_vm_state(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return io_error(fmt::format("open state file {}", path), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error(fmt::format("stat {}", path), errno);
  constexpr off_t kMaxStateFile = 16 << 20;
  if (st.st_size > kMaxStateFile) {
    return invalid_argument(
        fmt::format("{}: {} bytes; a state file is far smaller", path, st.st_size));
  }
  std::vector<std::byte> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pread(fd.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(fmt::format("read {}", path), errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return decode_vm_state(bytes, path);
}

}  // namespace faultline::vm
