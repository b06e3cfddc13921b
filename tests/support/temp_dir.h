// A fresh directory under $TMPDIR, removed with everything in it at scope exit.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "support/page_size.h"

namespace faultline::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes `bytes` to `path` (replacing it); fails the test on error.
void write_file(const std::string& path, std::span<const std::byte> bytes);

// The whole of the text file at `path`; "" if it cannot be read.
std::string read_text(const std::string& path);

// A deterministic image: every page different and recognisable, every
// `zero_every`-th page all zero (0 = none).
std::vector<std::byte> make_test_image(uint64_t size, uint64_t page_size = 4096,
                                       uint64_t zero_every = 0, uint64_t seed = 1);

}  // namespace faultline::testing
