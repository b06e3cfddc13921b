// The memory image every benchmark restores: pseudo-random pages a reader can
// check by their first word, with zero pages (holes in the file) among them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace faultline::bench {

inline constexpr uint64_t kPage = 4096;

// Every 16th page and a run of 64 pages in every 4096 are zero.
bool zero_page(uint64_t page);
// What page `page` starts with: 0 for a zero page, never 0 otherwise.
uint64_t first_word(uint64_t page);
// Page `page`'s 4 KiB: 8-byte words from a per-page xorshift stream.
void fill_page(uint64_t page, std::byte* out);
// The share of zero pages, in percent.
double zero_percent();

// Writes an image of `size` bytes to `path` and syncs it; throws on failure.
void write_image(const std::string& path, uint64_t size);

// "256M", "1G", "4096" -> bytes, rounded down to a page; throws on other text.
uint64_t parse_size(const std::string& text, const std::string& flag);

}  // namespace faultline::bench
