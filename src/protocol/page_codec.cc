#include "protocol/page_codec.h"

#include <fmt/format.h>
#include <lz4.h>
#include <xxhash.h>
#include <zstd.h>

#include <cstring>

namespace faultline::v2 {

uint64_t range_checksum(Gpa gpa, uint32_t length, Encoding encoding,
                        std::span<const std::byte> bytes) {
  const uint64_t seed = gpa ^ (uint64_t{length} << 1) ^ (encoding == Encoding::kZero ? 0x5a : 0);
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

namespace {

// `plain`: the range's bytes as decoded (none for a zero range).
Status check_checksum(const DataHeader& header, Encoding as, std::span<const std::byte> plain) {
  const uint64_t sum = range_checksum(header.gpa, header.length, as, plain);
  if (sum != header.checksum) {
    return {ErrorCode::kProtocol,
            fmt::format("DATA for [{:#x}, +{:#x}): checksum mismatch (got {:#018x}, computed "
                        "{:#018x})",
                        header.gpa, header.length, header.checksum, sum)};
  }
  return Status::ok();
}

}  // namespace

Encoding encoding_of(Compression compression) {
  switch (compression) {
    case Compression::kLz4:
      return Encoding::kLz4;
    case Compression::kZstd:
      return Encoding::kZstd;
    case Compression::kNone:
      break;
  }
  return Encoding::kRaw;
}

std::string_view compression_name(Encoding encoding) {
  if (encoding == Encoding::kZero) return "zero";
  return faultline::compression_name(encoding == Encoding::kLz4    ? Compression::kLz4
                                     : encoding == Encoding::kZstd ? Compression::kZstd
                                                                   : Compression::kNone);
}

struct PayloadEncoder::Codec {
  ZSTD_CCtx* zstd = nullptr;
  ~Codec() { ZSTD_freeCCtx(zstd); }
};

PayloadEncoder::PayloadEncoder(Encoding compression)
    : compression_(compression), codec_(std::make_unique<Codec>()) {
  if (compression_ == Encoding::kZstd) {
    codec_->zstd = ZSTD_createCCtx();
    // Level 1: the network is fast, the fault path is waiting.
    ZSTD_CCtx_setParameter(codec_->zstd, ZSTD_c_compressionLevel, 1);
  }
}

PayloadEncoder::~PayloadEncoder() = default;

PayloadEncoder::Encoded PayloadEncoder::encode(uint64_t id, Gpa gpa,
                                               std::span<const std::byte> bytes, bool zero) {
  Encoded e;
  e.header.id = id;
  e.header.gpa = gpa;
  e.header.length = static_cast<uint32_t>(bytes.size());
  if (zero) {
    e.header.encoding = Encoding::kZero;
    e.header.checksum = range_checksum(gpa, e.header.length, Encoding::kZero, {});
    return e;
  }
  e.header.encoding = Encoding::kRaw;
  e.header.checksum = range_checksum(gpa, e.header.length, Encoding::kRaw, bytes);
  e.payload = bytes;
  size_t produced = 0;
  if (compression_ == Encoding::kLz4) {
    out_.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(bytes.size()))));
    const int n = LZ4_compress_default(
        reinterpret_cast<const char*>(bytes.data()), reinterpret_cast<char*>(out_.data()),
        static_cast<int>(bytes.size()), static_cast<int>(out_.size()));
    produced = n > 0 ? static_cast<size_t>(n) : 0;
  } else if (compression_ == Encoding::kZstd && codec_->zstd != nullptr) {
    out_.resize(ZSTD_compressBound(bytes.size()));
    const size_t n =
        ZSTD_compress2(codec_->zstd, out_.data(), out_.size(), bytes.data(), bytes.size());
    produced = ZSTD_isError(n) ? 0 : n;
  }
  if (produced > 0 && produced < bytes.size()) {
    e.header.encoding = compression_;
    e.payload = std::span<const std::byte>(out_.data(), produced);
  }
  return e;
}

Status decode_payload(const DataHeader& header, std::span<const std::byte> payload,
                      std::span<std::byte> dest, bool fill_zero) {
  if (dest.size() != header.length) {
    return {ErrorCode::kProtocol, fmt::format("DATA for {:#x}: {} bytes announced, {} expected",
                                              header.gpa, header.length, dest.size())};
  }
  std::span<const std::byte> plain;
  switch (header.encoding) {
    case Encoding::kZero:
      if (fill_zero) std::memset(dest.data(), 0, dest.size());
      break;
    case Encoding::kRaw:
      if (payload.size() != dest.size()) {
        return {ErrorCode::kProtocol, fmt::format("DATA for {:#x}: raw payload of {} bytes for {}",
                                                  header.gpa, payload.size(), dest.size())};
      }
      std::memcpy(dest.data(), payload.data(), dest.size());
      plain = dest;
      break;
    case Encoding::kLz4: {
      const int n = LZ4_decompress_safe(
          reinterpret_cast<const char*>(payload.data()), reinterpret_cast<char*>(dest.data()),
          static_cast<int>(payload.size()), static_cast<int>(dest.size()));
      if (n < 0 || static_cast<size_t>(n) != dest.size()) {
        return {ErrorCode::kProtocol,
                fmt::format("DATA for {:#x}: lz4 payload does not decode to {} bytes", header.gpa,
                            dest.size())};
      }
      plain = dest;
      break;
    }
    case Encoding::kZstd: {
      const size_t n = ZSTD_decompress(dest.data(), dest.size(), payload.data(), payload.size());
      if (ZSTD_isError(n) || n != dest.size()) {
        return {ErrorCode::kProtocol,
                fmt::format("DATA for {:#x}: zstd payload does not decode to {} bytes{}",
                            header.gpa, dest.size(),
                            ZSTD_isError(n) ? fmt::format(" ({})", ZSTD_getErrorName(n)) : "")};
      }
      plain = dest;
      break;
    }
  }
  return check_checksum(
      header, header.encoding == Encoding::kZero ? Encoding::kZero : Encoding::kRaw, plain);
}

Status verify_raw_payload(const DataHeader& header, std::span<const std::byte> payload) {
  if (header.encoding != Encoding::kRaw || payload.size() != header.length) {
    return {ErrorCode::kProtocol, fmt::format("DATA for {:#x}: not a raw payload of {} bytes",
                                              header.gpa, header.length)};
  }
  return check_checksum(header, Encoding::kRaw, payload);
}

}  // namespace faultline::v2
