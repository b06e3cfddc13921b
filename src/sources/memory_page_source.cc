// An in-memory image as a page source (tests, embedders holding the bytes).
#include <fmt/format.h>

#include <cstring>
#include <vector>

#include "core/zero_scan.h"
#include "faultline/page_source.h"

namespace faultline {
namespace {

class MemoryPageSource final : public PageSource {
 public:
  // Copies `image` unless `borrow`: then the caller keeps it alive and unchanged.
  MemoryPageSource(std::span<const std::byte> image, uint64_t ram_start, bool borrow)
      : ram_start_(ram_start) {
    if (borrow) {
      image_ = image;
    } else {
      owned_.assign(image.begin(), image.end());
      image_ = owned_;
    }
  }

  Result<PageKind> fetch(Gpa gpa, std::span<std::byte> dest) override {
    const uint64_t length = dest.size();
    if (gpa < ram_start_ || gpa - ram_start_ > image_.size() ||
        length > image_.size() - (gpa - ram_start_)) {
      return Status(
          ErrorCode::kOutOfRange,
          fmt::format("{}: range [{:#x}, +{:#x}) is outside the image", describe(), gpa, length));
    }
    std::memcpy(dest.data(), image_.data() + (gpa - ram_start_), length);
    return is_all_zero(dest.first(length)) ? PageKind::kZero : PageKind::kData;
  }

  std::string describe() const override {
    return fmt::format("memory image of {:#x} bytes (ram_start {:#x})", image_.size(), ram_start_);
  }

 private:
  std::vector<std::byte> owned_;
  std::span<const std::byte> image_;
  uint64_t ram_start_;
};

}  // namespace

std::unique_ptr<PageSource> make_memory_page_source(std::span<const std::byte> image,
                                                    uint64_t ram_start) {
  return std::make_unique<MemoryPageSource>(image, ram_start, false);
}

std::unique_ptr<PageSource> borrow_memory_page_source(std::span<const std::byte> image,
                                                      uint64_t ram_start) {
  return std::make_unique<MemoryPageSource>(image, ram_start, true);
}

}  // namespace faultline
