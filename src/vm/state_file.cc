#include "vm/state_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <type_traits>

#include "faultline/unique_fd.h"
#include "vm/crc32.h"
#include "vm/durable_file.h"

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

class Writer {
 public:
  template <typename T>
  void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes(&value, sizeof(T));
  }
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void section(SectionTag tag, uint32_t vcpu, const void* p, size_t n) {
    put(static_cast<uint32_t>(tag));
    put(vcpu);
    put(static_cast<uint64_t>(n));
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

template <typename T>
Status take(const Section& s, T& into) {
  auto v = s.as<T>();
  if (!v.is_ok()) return v.status();
  into = *v;
  return Status::ok();
}

template <typename T>
Status take(const Section& s, std::optional<T>& into) {
  auto v = s.as<T>();
  if (!v.is_ok()) return v.status();
  into = *v;
  return Status::ok();
}

template <typename T>
Status take(const Section& s, std::vector<T>& into) {
  auto v = s.as_array<T>();
  if (!v.is_ok()) return v.status();
  into = std::move(v).value();
  return Status::ok();
}

struct MachineSection {
  uint64_t ram_base;
  uint64_t ram_size;
  uint32_t vcpu_count;
  uint32_t reserved;
};

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
      auto m = s.as<MachineSection>();
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
      return take(s, state.prewarm);
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
    Section s{load<uint32_t>(&payload[pos]), load<uint32_t>(&payload[pos + 4]), {}, file_offset};
    const uint64_t len = load<uint64_t>(&payload[pos + 8]);
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
  w.put(kStateFileVersion);
  w.put(static_cast<uint32_t>(kStateHeaderSize));
  w.put(uint64_t{0});  // length, below
  w.put(uint32_t{0});  // CRC, below
  w.put(uint32_t{0});  // flags

  const MachineSection machine{state.ram_base, state.ram_size,
                               static_cast<uint32_t>(state.vcpus.size()), 0};
  w.section(SectionTag::kMachine, kVmWide, machine);
  w.section(SectionTag::kPrewarm, kVmWide, state.prewarm);
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
  std::memcpy(&out[16], &length, sizeof(length));
  const uint32_t crc = crc32(out);
  std::memcpy(&out[kCrcOffset], &crc, sizeof(crc));
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
  const auto version = load<uint32_t>(&bytes[8]);
  if (version != kStateFileVersion) {
    return fail(fmt::format("state file version {}; this faultline reads version {}", version,
                            kStateFileVersion));
  }
  const auto header_size = load<uint32_t>(&bytes[12]);
  const auto length = load<uint64_t>(&bytes[16]);
  const auto stored_crc = load<uint32_t>(&bytes[kCrcOffset]);
  const auto flags = load<uint32_t>(&bytes[28]);
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
