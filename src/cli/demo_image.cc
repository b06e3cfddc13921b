#include "cli/demo_image.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "faultline/unique_fd.h"

namespace faultline::cli {

namespace {

bool is_hole(uint64_t index) {
  return index % 8 == 7;
}

}  // namespace

bool demo_page_is_zero(uint64_t index) {
  return is_hole(index) || index % 64 == 3;
}

DemoImageShape demo_image_shape(uint64_t pages) {
  DemoImageShape shape;
  for (uint64_t i = 0; i < pages; ++i) {
    if (is_hole(i)) {
      ++shape.holes;
    } else if (demo_page_is_zero(i)) {
      ++shape.written_zeros;
    }
  }
  return shape;
}

void fill_demo_page(uint64_t index, std::span<std::byte> page) {
  if (demo_page_is_zero(index)) {
    std::memset(page.data(), 0, page.size());
    return;
  }
  uint64_t state = index * 0x9E3779B97F4A7C15ull + 0x5EED;
  for (size_t off = 0; off + 8 <= page.size(); off += 8) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    std::memcpy(page.data() + off, &state, 8);
  }
  const std::string header = fmt::format("faultline demo page {:#010x}\n", index);
  std::memcpy(page.data(), header.data(), header.size());
}

Status write_demo_image(const std::string& path, uint64_t size, std::atomic<uint64_t>* written) {
  if (size == 0 || size % kDemoPage != 0) {
    return invalid_argument(
        fmt::format("demo image size {} is not a positive multiple of {}", size, kDemoPage));
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return io_error(fmt::format("create demo image {}", path), errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return io_error(fmt::format("size demo image {} to {} bytes", path, size), errno);
  }
  constexpr uint64_t kChunkPages = 256;  // write 1 MiB at a time, skipping holes
  std::vector<std::byte> chunk(kChunkPages * kDemoPage);
  const uint64_t pages = size / kDemoPage;
  for (uint64_t first = 0; first < pages; first += kChunkPages) {
    const uint64_t count = std::min(kChunkPages, pages - first);
    for (uint64_t i = 0; i < count; ++i) {
      fill_demo_page(first + i, std::span(chunk).subspan(i * kDemoPage, kDemoPage));
    }
    // Runs of pages that are not holes are written; holes are skipped.
    uint64_t i = 0;
    while (i < count) {
      if (is_hole(first + i)) {
        ++i;
        continue;
      }
      uint64_t end = i;
      while (end < count && !is_hole(first + end)) ++end;
      const auto offset = static_cast<off_t>((first + i) * kDemoPage);
      const size_t length = (end - i) * kDemoPage;
      if (::pwrite(fd.get(), chunk.data() + i * kDemoPage, length, offset) !=
          static_cast<ssize_t>(length)) {
        return io_error(fmt::format("write demo image {} at offset {:#x}", path, offset), errno);
      }
      i = end;
    }
    if (written != nullptr) written->fetch_add(count * kDemoPage, std::memory_order_relaxed);
  }
  if (::fsync(fd.get()) != 0) return io_error(fmt::format("fsync demo image {}", path), errno);
  return Status::ok();
}

}  // namespace faultline::cli
