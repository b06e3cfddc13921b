// Little-endian integers in byte buffers: the byte order of both page
// protocols (protocol/v1_wire.h, protocol/frames.h) and of the VM state file,
// whatever the host's. Spelled as shifts, not memcpy, so the bytes are the
// same on any host; compilers turn each into one load or store on x86.
#pragma once

#include <cassert>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace faultline::le {

// The first sizeof(T) bytes of `out` / `in`. A shorter span is the caller's
// bug: wire decoders check a body's length before reading its fields.
template <std::unsigned_integral T>
constexpr void put(std::span<std::byte> out, T value) {
  assert(out.size() >= sizeof(T));
  for (size_t i = 0; i < sizeof(T); ++i) {
    out[i] = static_cast<std::byte>(static_cast<uint64_t>(value) >> (8 * i));
  }
}

template <std::unsigned_integral T>
constexpr T get(std::span<const std::byte> in) {
  assert(in.size() >= sizeof(T));
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) value |= std::to_integer<uint64_t>(in[i]) << (8 * i);
  return static_cast<T>(value);
}

// Widths by name, so a layout reads like its comment and no integer
// promotion picks the width.
constexpr void put_u16(std::span<std::byte> out, uint16_t v) {
  put(out, v);
}
constexpr void put_u32(std::span<std::byte> out, uint32_t v) {
  put(out, v);
}
constexpr void put_u64(std::span<std::byte> out, uint64_t v) {
  put(out, v);
}
constexpr uint16_t get_u16(std::span<const std::byte> in) {
  return get<uint16_t>(in);
}
constexpr uint32_t get_u32(std::span<const std::byte> in) {
  return get<uint32_t>(in);
}
constexpr uint64_t get_u64(std::span<const std::byte> in) {
  return get<uint64_t>(in);
}

// Fields one after another into a buffer of fixed size. Writing past its end
// writes nothing and marks the writer overrun (a layout bug, caught by tests).
class Writer {
 public:
  explicit constexpr Writer(std::span<std::byte> out) : out_(out) {}

  constexpr void u8(uint8_t v) { put_field(v); }
  constexpr void u16(uint16_t v) { put_field(v); }
  constexpr void u32(uint32_t v) { put_field(v); }
  constexpr void u64(uint64_t v) { put_field(v); }
  void bytes(std::span<const std::byte> b) {
    if (b.size() > out_.size() - pos_) {
      overrun_ = true;
      return;
    }
    if (!b.empty()) std::memcpy(out_.data() + pos_, b.data(), b.size());
    pos_ += b.size();
  }

  constexpr size_t pos() const { return pos_; }
  constexpr bool overrun() const { return overrun_; }

 private:
  template <std::unsigned_integral T>
  constexpr void put_field(T v) {
    if (sizeof(T) > out_.size() - pos_) {
      overrun_ = true;
      return;
    }
    put(out_.subspan(pos_), v);
    pos_ += sizeof(T);
  }

  std::span<std::byte> out_;
  size_t pos_ = 0;
  bool overrun_ = false;
};

// Fields one after another out of a buffer. Reading past its end yields 0 (or
// no bytes) and marks the reader overrun, so a decoder can never read out of
// bounds, whatever a peer sent.
class Reader {
 public:
  explicit constexpr Reader(std::span<const std::byte> in) : in_(in) {}

  constexpr uint8_t u8() { return get_field<uint8_t>(); }
  constexpr uint16_t u16() { return get_field<uint16_t>(); }
  constexpr uint32_t u32() { return get_field<uint32_t>(); }
  constexpr uint64_t u64() { return get_field<uint64_t>(); }
  // The next `n` bytes, or none if fewer are left.
  constexpr std::span<const std::byte> bytes(size_t n) {
    if (n > left()) {
      overrun_ = true;
      return {};
    }
    auto b = in_.subspan(pos_, n);
    pos_ += n;
    return b;
  }
  // What is left, without consuming it.
  constexpr std::span<const std::byte> rest() const { return in_.subspan(pos_); }
  constexpr size_t left() const { return in_.size() - pos_; }
  constexpr bool overrun() const { return overrun_; }

 private:
  template <std::unsigned_integral T>
  constexpr T get_field() {
    if (sizeof(T) > left()) {
      overrun_ = true;
      return 0;
    }
    const T v = get<T>(in_.subspan(pos_));
    pos_ += sizeof(T);
    return v;
  }

  std::span<const std::byte> in_;
  size_t pos_ = 0;
  bool overrun_ = false;
};

// Appending to a growing buffer (the VM state file is built so).
inline void append_u32(std::vector<std::byte>& out, uint32_t v) {
  out.resize(out.size() + sizeof v);
  put_u32(std::span(out).last(sizeof v), v);
}
inline void append_u64(std::vector<std::byte>& out, uint64_t v) {
  out.resize(out.size() + sizeof v);
  put_u64(std::span(out).last(sizeof v), v);
}

}  // namespace faultline::le
