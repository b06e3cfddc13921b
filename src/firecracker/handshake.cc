#include "firecracker/handshake.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <nlohmann/json.hpp>

namespace faultline::firecracker {
namespace {

using nlohmann::json;

// Error messages quote the client's JSON, but never more than this of it: a
// rejected handshake may be 64 KiB, and every byte would reach the log.
constexpr size_t kMaxQuoted = 64;

std::string quoted(const json& value) {
  std::string text = value.dump(-1, ' ', /*ensure_ascii=*/true);  // cut anywhere, still text
  if (text.size() <= kMaxQuoted) return text;
  const size_t cut = text.size() - kMaxQuoted;
  text.resize(kMaxQuoted);
  return fmt::format("{}... ({} more bytes cut)", text, cut);
}

Result<uint64_t> unsigned_field(const json& region, size_t index, const char* name, bool required) {
  auto it = region.find(name);
  if (it == region.end()) {
    if (required) return invalid_argument(fmt::format("region {}: \"{}\" is missing", index, name));
    return Status(ErrorCode::kOutOfRange, "absent");
  }
  if (!it->is_number_unsigned()) {
    return invalid_argument(
        fmt::format("region {}: \"{}\" is {}, not an unsigned integer", index, name, quoted(*it)));
  }
  return it->get<uint64_t>();
}

Result<uint64_t> page_size_of(const json& region, size_t index, const HandshakeLimits& limits) {
  uint64_t page_size = kDefaultPageSize;
  const char* from = "the system page size";
  for (const char* name : {"page_size", "page_size_kib"}) {
    Result<uint64_t> value = unsigned_field(region, index, name, false);
    if (value.is_ok()) {
      page_size = *value;
      from = name;
      break;
    }
    if (value.status().code() != ErrorCode::kOutOfRange) return value.status();
  }
  if (page_size < kDefaultPageSize || !std::has_single_bit(page_size) ||
      page_size > limits.max_page_size) {
    return invalid_argument(fmt::format(
        "region {}: page size {} (from {}) is not a power of two between {} and {} bytes", index,
        page_size, from, kDefaultPageSize, limits.max_page_size));
  }
  return page_size;
}

Result<RegionMapping> parse_region(const json& region, size_t index,
                                   const HandshakeLimits& limits) {
  if (!region.is_object()) {
    return invalid_argument(fmt::format("region {} is {}, not an object", index, quoted(region)));
  }
  RegionMapping m;
  for (auto [field, name] : {std::pair{&m.base_host_virt_addr, "base_host_virt_addr"},
                             std::pair{&m.size, "size"}, std::pair{&m.offset, "offset"}}) {
    Result<uint64_t> value = unsigned_field(region, index, name, true);
    if (!value.is_ok()) return value.status();
    *field = *value;
  }
  Result<uint64_t> page_size = page_size_of(region, index, limits);
  if (!page_size.is_ok()) return page_size.status();
  m.page_size = *page_size;

  if (m.size == 0) return invalid_argument(fmt::format("region {} is empty", index));
  if (m.base_host_virt_addr + m.size < m.base_host_virt_addr || m.offset + m.size < m.offset) {
    return invalid_argument(
        fmt::format("region {}: [{:#x}, +{:#x}) at file offset {:#x} wraps past 2^64", index,
                    m.base_host_virt_addr, m.size, m.offset));
  }
  if (m.base_host_virt_addr % m.page_size != 0 || m.size % m.page_size != 0 ||
      m.offset % m.page_size != 0) {
    return invalid_argument(fmt::format(
        "region {}: address {:#x}, size {:#x} and offset {:#x} must be multiples of its page "
        "size {:#x}",
        index, m.base_host_virt_addr, m.size, m.offset, m.page_size));
  }
  if (limits.mem_file_size && m.offset + m.size > *limits.mem_file_size) {
    return invalid_argument(fmt::format(
        "region {}: file range [{:#x}, {:#x}) reaches past the end of {} ({:#x} bytes)", index,
        m.offset, m.offset + m.size, limits.mem_file_name, *limits.mem_file_size));
  }
  return m;
}

Status check_no_overlap(std::vector<RegionMapping> regions) {
  auto overlap = [](uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size) {
    return a < b + b_size && b < a + a_size;
  };
  for (size_t i = 0; i < regions.size(); ++i) {
    for (size_t j = i + 1; j < regions.size(); ++j) {
      const RegionMapping& a = regions[i];
      const RegionMapping& b = regions[j];
      if (overlap(a.base_host_virt_addr, a.size, b.base_host_virt_addr, b.size)) {
        return invalid_argument(fmt::format("regions {} and {} overlap in host memory", i, j));
      }
      if (overlap(a.offset, a.size, b.offset, b.size)) {
        return invalid_argument(fmt::format("regions {} and {} overlap in the memory file", i, j));
      }
    }
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<RegionMapping>> parse_region_mappings(std::string_view text,
                                                         const HandshakeLimits& limits) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return Status(ErrorCode::kProtocol,
                  fmt::format("the handshake is not valid JSON ({} bytes{})", text.size(),
                              is_incomplete_json(text) ? ", cut short" : ""));
  }
  if (!doc.is_array()) {
    return invalid_argument(
        fmt::format("the handshake is a JSON {}, not an array of regions", doc.type_name()));
  }
  if (doc.empty()) return invalid_argument("the handshake lists no regions");
  if (doc.size() > limits.max_regions) {
    return invalid_argument(fmt::format("the handshake lists {} regions; at most {} are allowed",
                                        doc.size(), limits.max_regions));
  }
  std::vector<RegionMapping> regions;
  regions.reserve(doc.size());
  for (size_t i = 0; i < doc.size(); ++i) {
    Result<RegionMapping> region = parse_region(doc[i], i, limits);
    if (!region.is_ok()) return region.status();
    regions.push_back(*region);
  }
  Status disjoint = check_no_overlap(regions);
  if (!disjoint.is_ok()) return disjoint;
  return regions;
}

bool is_incomplete_json(std::string_view text) {
  // Valid so far, but ended early: the parser ran out of input, not into a bad byte.
  struct Probe : nlohmann::json_sax<json> {
    bool at_end = false;
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return true; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    explicit Probe(size_t length) : length(length) {}
    bool parse_error(std::size_t position, const std::string& /*last_token*/,
                     const nlohmann::detail::exception& error) override {
      const std::string_view what = error.what();
      const bool ran_out = what.find("unexpected end of input") != std::string_view::npos ||
                           what.find("missing closing quote") != std::string_view::npos ||
                           what.find("invalid literal") != std::string_view::npos;
      at_end = ran_out && position >= length;
      return false;
    }
    size_t length;
  } probe(text.size());
  const bool complete = json::sax_parse(text, &probe, json::input_format_t::json, false);
  return !complete && probe.at_end;
}

}  // namespace faultline::firecracker
