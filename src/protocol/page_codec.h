// DATA payloads: checksums, compression and the zero flag.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "faultline/compression.h"
#include "faultline/status.h"
#include "protocol/frames.h"

namespace faultline::v2 {

// XXH3 of the uncompressed bytes, seeded with where they belong, so bytes that
// arrive for the wrong address fail the check too. Zero ranges hash no bytes.
uint64_t range_checksum(Gpa gpa, uint32_t length, Encoding encoding,
                        std::span<const std::byte> bytes);

// The encoding a compression setting sends (kRaw for kNone), and back to
// "none", "lz4", "zstd" for logs.
Encoding encoding_of(Compression compression);
std::string_view compression_name(Encoding encoding);

// Encodes ranges for DATA frames; one per sending thread (holds codec state).
class PayloadEncoder {
 public:
  explicit PayloadEncoder(Encoding compression);
  ~PayloadEncoder();
  PayloadEncoder(const PayloadEncoder&) = delete;
  PayloadEncoder& operator=(const PayloadEncoder&) = delete;

  struct Encoded {
    DataHeader header;
    std::span<const std::byte> payload;  // into `bytes` or the encoder's buffer
  };
  // `bytes` are the range's contents; `zero` says they are all zero (then
  // `bytes` is not read). Falls back to raw when compression does not help.
  Encoded encode(uint64_t id, Gpa gpa, std::span<const std::byte> bytes, bool zero);

 private:
  struct Codec;
  Encoding compression_;
  std::unique_ptr<Codec> codec_;
  std::vector<std::byte> out_;
};

// Decodes a DATA payload into `dest` (exactly header.length bytes) and checks
// its checksum. For kZero, writes zeros only if `fill_zero`.
// kProtocol naming the problem when the payload does not decode or the
// checksum does not match.
Status decode_payload(const DataHeader& header, std::span<const std::byte> payload,
                      std::span<std::byte> dest, bool fill_zero);

// For kRaw: checks the payload's length and checksum where it lies, without
// copying it anywhere.
Status verify_raw_payload(const DataHeader& header, std::span<const std::byte> payload);

}  // namespace faultline::v2
