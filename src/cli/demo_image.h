// The demo's snapshot image: recognisable pages, some of them zero.
#pragma once

#include <atomic>
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

// What an image of `pages` pages holds besides data pages.
struct DemoImageShape {
  uint64_t holes = 0;          // never written: read back as zeros
  uint64_t written_zeros = 0;  // written out as zero bytes
};
DemoImageShape demo_image_shape(uint64_t pages);

// Writes a sparse image of `size` bytes (a multiple of 4 KiB) to `path`,
// adding to `written` the bytes of the image done so far (for a progress line).
Status write_demo_image(const std::string& path, uint64_t size,
                        std::atomic<uint64_t>* written = nullptr);

}  // namespace faultline::cli
