// A deterministic test image written to a file and served by a real PageServer.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "faultline/page_server.h"
#include "support/temp_dir.h"

namespace faultline::testing {

enum class Transport { kUnix, kTcp };

// For INSTANTIATE_TEST_SUITE_P names.
std::string transport_name(Transport transport);

// "unix:DIR/pages.sock" or "tcp:127.0.0.1:0".
std::string listen_address(Transport transport, const TempDir& dir);

struct ServedImage {
  static constexpr uint64_t kPageSize = 4096;
  static constexpr uint64_t kRamStart = 0x8000'0000;

  std::vector<std::byte> image;
  std::string mem_file;
  std::unique_ptr<PageServer> server;  // null (and the test failed) if it could not start

  Gpa page_gpa(uint64_t page) const { return kRamStart + page * kPageSize; }
  uint64_t pages() const { return image.size() / kPageSize; }
  // The bytes a correct server sends for the page at `gpa`.
  std::span<const std::byte> expected(Gpa gpa, uint64_t size = kPageSize) const;
  bool is_zero_page(uint64_t page) const;
};

// Writes `pages` pages (every `zero_every`-th all zero) to DIR/mem and serves
// them on `listen` from guest-physical address ServedImage::kRamStart.
ServedImage serve_image(const TempDir& dir, const std::string& listen, uint64_t pages,
                        uint64_t zero_every = 5, uint64_t seed = 1);
// The same with server options of the caller's (listen, mem_file and ram_start
// are set here).
ServedImage serve_image(const TempDir& dir, const std::string& listen, uint64_t pages,
                        PageServerOptions options, uint64_t zero_every = 5, uint64_t seed = 1);

// A test run over each transport, with an image served on it.
class ServedImageTest : public ::testing::TestWithParam<Transport> {
 protected:
  void Serve(uint64_t pages) {
    served_ = serve_image(dir_, listen_address(GetParam(), dir_), pages);
    ASSERT_TRUE(served_.server);
  }

  TempDir dir_;
  ServedImage served_;
};

}  // namespace faultline::testing
