#include "support/served_image.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace faultline::testing {

std::string transport_name(Transport transport) {
  return transport == Transport::kUnix ? "Unix" : "Tcp";
}

std::string listen_address(Transport transport, const TempDir& dir) {
  return transport == Transport::kUnix ? "unix:" + dir.file("pages.sock") : "tcp:127.0.0.1:0";
}

std::span<const std::byte> ServedImage::expected(Gpa gpa, uint64_t size) const {
  return std::span(image).subspan(gpa - kRamStart, size);
}

bool ServedImage::is_zero_page(uint64_t page) const {
  auto bytes = expected(page_gpa(page));
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

ServedImage serve_image(const TempDir& dir, const std::string& listen, uint64_t pages,
                        uint64_t zero_every, uint64_t seed) {
  return serve_image(dir, listen, pages, PageServerOptions{}, zero_every, seed);
}

ServedImage serve_image(const TempDir& dir, const std::string& listen, uint64_t pages,
                        PageServerOptions options, uint64_t zero_every, uint64_t seed) {
  ServedImage served;
  served.image =
      make_test_image(pages * ServedImage::kPageSize, ServedImage::kPageSize, zero_every, seed);
  served.mem_file = dir.file("mem");
  write_file(served.mem_file, served.image);
  options.listen = listen;
  // Tests on loopback TCP without certificates say so explicitly.
  if (options.tls.cert_file.empty()) options.allow_plain_tcp = true;
  options.mem_file = served.mem_file;
  options.ram_start = ServedImage::kRamStart;
  auto server = PageServer::start(options);
  if (!server) {
    ADD_FAILURE() << "PageServer::start on " << listen << ": " << server.status().to_string();
    return served;
  }
  served.server = std::move(*server);
  return served;
}

}  // namespace faultline::testing
