#include "cli/size_option.h"

#include <charconv>
#include <string>

namespace faultline::cli {

Result<uint64_t> parse_size(std::string_view text) {
  uint64_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [next, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || next == begin) {
    return invalid_argument("'" + std::string(text) + "' is not a size (e.g. 4096, 256M, 1G)");
  }
  int shift = 0;
  if (next != end) {
    switch (*next) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
      default:
        return invalid_argument("'" + std::string(text) + "' has an unknown size suffix");
    }
    ++next;
    if (next != end && (*next == 'i' || *next == 'I')) ++next;
    if (next != end && (*next == 'B' || *next == 'b')) ++next;
    if (next != end) return invalid_argument("'" + std::string(text) + "' has trailing characters");
  }
  if (shift != 0 && value > (UINT64_MAX >> shift)) {
    return invalid_argument("'" + std::string(text) + "' is too large");
  }
  return value << shift;
}

}  // namespace faultline::cli
