#include "cli/size_option.h"

#include <fmt/format.h>

#include <bit>
#include <charconv>
#include <string>

#include "faultline/page_source.h"

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

Status check_page_power_of_two(uint64_t value) {
  if (value % kMinPageSize != 0 || value == 0) {
    return invalid_argument(
        fmt::format("{} is not a multiple of the page size ({})", value, kMinPageSize));
  }
  if (!std::has_single_bit(value)) {
    return invalid_argument(fmt::format("{} is not a power of two (e.g. {} or {})", value,
                                        std::bit_floor(value), std::bit_ceil(value)));
  }
  return Status::ok();
}

CLI::Option* add_size_option(CLI::App* cmd, const std::string& name, uint64_t& value,
                             const std::string& help) {
  // The text becomes the number of bytes, which CLI11 then stores.
  const CLI::Validator size(
      [](std::string& input) -> std::string {
        auto bytes = parse_size(input);
        if (!bytes.is_ok()) return bytes.status().message();
        input = std::to_string(*bytes);
        return {};
      },
      "", "size");
  return cmd->add_option(name, value, help)->transform(size)->type_name("SIZE");
}

}  // namespace faultline::cli
