// How page bytes may be compressed on the wire (protocol v2). A server sends
// what it was configured with to clients that accept it; a client accepts raw
// bytes and the one compression it was configured with.
#pragma once

#include <string_view>

namespace faultline {

enum class Compression { kNone, kLz4, kZstd };

// "none", "lz4", "zstd": for logs (and the CLI's flag values).
constexpr std::string_view compression_name(Compression compression) {
  switch (compression) {
    case Compression::kLz4:
      return "lz4";
    case Compression::kZstd:
      return "zstd";
    case Compression::kNone:
      break;
  }
  return "none";
}

}  // namespace faultline
