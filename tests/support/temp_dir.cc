#include "support/temp_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace faultline::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/faultline-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << pattern << ": " << std::strerror(errno);
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, std::span<const std::byte> bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << "open " << path << ": " << std::strerror(errno);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    ASSERT_GT(n, 0) << "write " << path << ": " << std::strerror(errno);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::byte> make_test_image(uint64_t size, uint64_t page_size, uint64_t zero_every,
                                       uint64_t seed) {
  std::vector<std::byte> image(size);
  for (uint64_t page = 0; page * page_size < size; ++page) {
    if (zero_every != 0 && page % zero_every == zero_every - 1) continue;
    uint64_t state = seed * 0x9E3779B97F4A7C15ull + page * 0xBF58476D1CE4E5B9ull + 1;
    for (uint64_t off = 0; off < page_size && page * page_size + off < size; off += 8) {
      state ^= state >> 31;
      state *= 0x94D049BB133111EBull;
      state ^= state >> 29;
      uint64_t word = state ^ (page << 20) ^ off;
      std::memcpy(image.data() + page * page_size + off, &word,
                  std::min<uint64_t>(8, size - page * page_size - off));
    }
  }
  return image;
}

}  // namespace faultline::testing
