#include "core/working_set_format.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

#include "core/little_endian.h"

namespace faultline::working_set_format {
namespace {

constexpr std::array<char, 8> kMagic = {'F', 'L', 'W', 'S', 'E', 'T', '\r', '\n'};
constexpr uint64_t kMaxPageNumber = (~uint64_t{0}) / kMinPageSize;
// Low bits of a touch's first varint: write, then log2(page size) - 12.
constexpr unsigned kFlagBits = 6;

uint64_t zigzag(uint64_t delta) {
  const auto s = static_cast<int64_t>(delta);
  return (static_cast<uint64_t>(s) << 1) ^ static_cast<uint64_t>(s >> 63);
}
uint64_t unzigzag(uint64_t z) {
  return (z >> 1) ^ (~(z & 1) + 1);
}

void put_varint(std::vector<std::byte>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::byte>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::byte>(v));
}

// False on a varint running past the end or beyond 64 bits.
bool get_varint(std::span<const std::byte> in, size_t& pos, uint64_t& v) {
  v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (pos >= in.size()) return false;
    const auto b = std::to_integer<uint64_t>(in[pos++]);
    if (shift == 63 && b > 1) return false;
    v |= (b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

uint64_t checksum(std::span<const std::byte> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

std::string page_name(const WorkingSetTouch& t) {
  return fmt::format("page [{:#x}, +{:#x})", t.gpa, t.page_size);
}

}  // namespace

Status check_touches(std::span<const WorkingSetTouch> touches, uint32_t recordings,
                     uint64_t image_size) {
  if (recordings == 0) return invalid_argument("it claims 0 recordings");
  if (image_size == 0) return invalid_argument("its image is 0 bytes");
  for (size_t i = 0; i < touches.size(); ++i) {
    const WorkingSetTouch& t = touches[i];
    if (!std::has_single_bit(t.page_size) || t.page_size < kMinPageSize ||
        t.page_size > kMaxPageSize) {
      return invalid_argument(
          fmt::format("touch {}: page size {:#x} is not a power of two in "
                      "[4 KiB, 1 GiB]",
                      i, t.page_size));
    }
    if (t.gpa % t.page_size != 0 || t.gpa + t.page_size < t.gpa) {
      return invalid_argument(
          fmt::format("touch {}: {} is not aligned to its size or wraps", i, page_name(t)));
    }
    if (t.recordings_seen == 0 || t.recordings_seen > recordings) {
      return invalid_argument(fmt::format("touch {}: {} seen in {} of {} recordings", i,
                                          page_name(t), t.recordings_seen, recordings));
    }
  }
  std::vector<const WorkingSetTouch*> by_gpa(touches.size());
  for (size_t i = 0; i < touches.size(); ++i) by_gpa[i] = &touches[i];
  std::sort(by_gpa.begin(), by_gpa.end(),
            [](const auto* a, const auto* b) { return a->gpa < b->gpa; });
  uint64_t bytes = 0;
  for (size_t k = 0; k < by_gpa.size(); ++k) {
    if (k > 0 && by_gpa[k - 1]->gpa + by_gpa[k - 1]->page_size > by_gpa[k]->gpa) {
      return invalid_argument(fmt::format("{} and {} overlap (a page named twice)",
                                          page_name(*by_gpa[k - 1]), page_name(*by_gpa[k])));
    }
    bytes += by_gpa[k]->page_size;
  }
  if (bytes > image_size) {
    return invalid_argument(
        fmt::format("its touches cover {} bytes, more than the image's {}", bytes, image_size));
  }
  return Status::ok();
}

Result<std::vector<std::byte>> encode(const WorkingSet& set) {
  const auto touches = set.touches();
  if (Status s = check_touches(touches, set.recordings(), set.image().size); !s.is_ok()) return s;
  std::vector<std::byte> out(kHeaderSize);
  out.reserve(kHeaderSize + touches.size() * 6 + kChecksumSize);
  uint64_t prev_page = 0;
  uint64_t prev_us = 0;
  for (const WorkingSetTouch& t : touches) {
    const uint64_t page = t.gpa / kMinPageSize;
    const uint64_t flags =
        (t.write ? 1u : 0u) | static_cast<uint64_t>(std::countr_zero(t.page_size) - 12) << 1;
    put_varint(out, zigzag(page - prev_page) << kFlagBits | flags);
    put_varint(out, zigzag(t.since_resume_us - prev_us));
    put_varint(out, t.recordings_seen);
    prev_page = page;
    prev_us = t.since_resume_us;
  }
  const uint64_t payload = out.size() - kHeaderSize;
  if (kHeaderSize + payload + kChecksumSize > kMaxFileBytes) {
    return invalid_argument(fmt::format("{} touches make a file over the {} MiB limit",
                                        touches.size(), kMaxFileBytes >> 20));
  }
  le::Writer w{std::span<std::byte>(out).first(kHeaderSize)};
  w.bytes(std::as_bytes(std::span(kMagic)));
  w.u32(kVersion);
  w.u32(set.recordings());
  w.u64(set.image().size);
  w.u64(set.image().fingerprint);
  w.u64(touches.size());
  w.u64(payload);
  le::append_u64(out, checksum(out));
  return out;
}

Result<WorkingSet> decode(std::span<const std::byte> bytes) {
  const auto magic = std::as_bytes(std::span(kMagic));
  const size_t magic_seen = std::min(bytes.size(), magic.size());
  if (magic_seen > 0 && std::memcmp(bytes.data(), magic.data(), magic_seen) != 0) {
    return invalid_argument("not a working-set file (bad magic)");
  }
  if (bytes.size() < kHeaderSize + kChecksumSize) {
    return invalid_argument(
        fmt::format("truncated: {} bytes, less than the {}-byte header and "
                    "checksum",
                    bytes.size(), kHeaderSize + kChecksumSize));
  }
  le::Reader r(bytes.first(kHeaderSize));
  r.bytes(magic.size());
  const uint32_t version = r.u32();
  const uint32_t recordings = r.u32();
  const ImageIdentity image{.size = r.u64(), .fingerprint = r.u64()};
  const uint64_t count = r.u64();
  const uint64_t payload = r.u64();
  if (version != kVersion) {
    return invalid_argument(
        fmt::format("format version {}; this faultline reads version {}", version, kVersion));
  }
  if (payload > kMaxFileBytes) {
    return invalid_argument(fmt::format("its header claims {} bytes of touches", payload));
  }
  const uint64_t expected = kHeaderSize + payload + kChecksumSize;
  if (bytes.size() < expected) {
    return invalid_argument(
        fmt::format("truncated: {} bytes, its header says {}", bytes.size(), expected));
  }
  if (bytes.size() > expected) {
    return invalid_argument(
        fmt::format("{} trailing bytes after its checksum", bytes.size() - expected));
  }
  const uint64_t stored = le::get_u64(bytes.subspan(kHeaderSize + payload));
  const uint64_t computed = checksum(bytes.first(kHeaderSize + payload));
  if (stored != computed) {
    return invalid_argument(
        fmt::format("checksum mismatch (stored {:#018x}, computed {:#018x}): the file is damaged",
                    stored, computed));
  }
  if (recordings == 0) return invalid_argument("it claims 0 recordings");
  if (count > payload / kMinTouchBytes || count > image.size / kMinPageSize) {
    return invalid_argument(fmt::format("it claims {} touches in {} bytes for an image of {} bytes",
                                        count, payload, image.size));
  }
  const auto in = bytes.subspan(kHeaderSize, payload);
  std::vector<WorkingSetTouch> touches;
  touches.reserve(count);
  size_t pos = 0;
  uint64_t page = 0;
  uint64_t us = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t first = 0, time = 0, seen = 0;
    if (!get_varint(in, pos, first) || !get_varint(in, pos, time) || !get_varint(in, pos, seen)) {
      return invalid_argument(
          fmt::format("touch {} of {} runs past the end or beyond 64 bits", i, count));
    }
    const uint64_t shift = ((first >> 1) & ((1u << (kFlagBits - 1)) - 1)) + 12;
    page += unzigzag(first >> kFlagBits);
    us += unzigzag(time);
    if (page > kMaxPageNumber || shift > 63 || seen > UINT32_MAX) {
      return invalid_argument(fmt::format("touch {} of {} is out of range", i, count));
    }
    touches.push_back({.gpa = page * kMinPageSize,
                       .page_size = uint64_t{1} << shift,
                       .write = (first & 1) != 0,
                       .since_resume_us = us,
                       .recordings_seen = static_cast<uint32_t>(seen)});
  }
  if (pos != in.size()) {
    return invalid_argument(
        fmt::format("{} bytes left over after its {} touches", in.size() - pos, count));
  }
  if (Status s = check_touches(touches, recordings, image.size); !s.is_ok()) return s;
  return WorkingSet(image, std::move(touches), recordings);
}

}  // namespace faultline::working_set_format
