// The demo's snapshot image: recognisable pages, some of them zero.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "faultline/status.h"

namespace faultline::cli {

inline constexpr uint64_t kDemoPage = 4096;

// Every 8th page is a hole in the file; every 64th page (offset by 3) is
// written out as explicit zeros. All other pages start with a text header
// ("faultline demo page 0x...") followed by bytes derived from their index.
bool demo_page_is_zero(uint64_t index);
void fill_demo_page(uint64_t index, std::span<std::byte> page);

// Writes a sparse image of `size` bytes (a multiple of 4 KiB) to `path`.
Status write_demo_image(const std::string& path, uint64_t size);

}  // namespace faultline::cli
