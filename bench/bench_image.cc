#include "bench_image.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace faultline::bench {

bool zero_page(uint64_t page) {
  return page % 16 == 15 || page % 4096 < 64;
}

uint64_t first_word(uint64_t page) {
  return zero_page(page) ? 0 : (page + 1) * 0x9E3779B97F4A7C15ull;
}

void fill_page(uint64_t page, std::byte* out) {
  uint64_t x = first_word(page);
  for (uint64_t off = 0; off < kPage; off += 8) {
    std::memcpy(out + off, &x, 8);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
}

double zero_percent() {
  return 100.0 / 16 + 100.0 * 64 / 4096;
}

void write_image(const std::string& path, uint64_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  }
  std::vector<std::byte> page(kPage);
  for (uint64_t i = 0; i < size / kPage; ++i) {
    if (zero_page(i)) continue;
    fill_page(i, page.data());
    if (::pwrite(fd, page.data(), kPage, static_cast<off_t>(i * kPage)) !=
        static_cast<ssize_t>(kPage)) {
      ::close(fd);
      throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
    }
  }
  ::fsync(fd);
  ::close(fd);
}

uint64_t parse_size(const std::string& text, const std::string& flag) {
  size_t used = 0;
  uint64_t size = 0;
  try {
    size = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  if (used == 0 || (unit != "" && unit != "K" && unit != "M" && unit != "G")) {
    throw std::runtime_error(flag + " " + text + ": not a size like 128M or 1G");
  }
  if (unit == "K") size <<= 10;
  if (unit == "M") size <<= 20;
  if (unit == "G") size <<= 30;
  size &= ~(kPage - 1);
  if (size == 0) throw std::runtime_error(flag + " " + text + ": less than one 4 KiB page");
  return size;
}

}  // namespace faultline::bench
