// The snapshot memory file as a page source: pread at (ipa - ram_start).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "faultline/page_source.h"
#include "faultline/unique_fd.h"
#include "sources/zero_scan.h"

namespace faultline {
namespace {

// [begin, end) byte offsets of the file that hold data; the rest are holes.
struct Extent {
  uint64_t begin;
  uint64_t end;
};

// Walks SEEK_DATA / SEEK_HOLE once so that faults in holes cost no I/O.
// A file system without hole support reports one extent: the whole file.
std::vector<Extent> find_data_extents(int fd, uint64_t file_size) {
  std::vector<Extent> extents;
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < file_size) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      return {{0, file_size}};    // cannot tell: treat everything as data
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return {{0, file_size}};
    extents.push_back({static_cast<uint64_t>(data), static_cast<uint64_t>(hole)});
    pos = hole;
  }
  return extents;
}

class FilePageSource final : public PageSource {
 public:
  FilePageSource(UniqueFd fd, std::string path, uint64_t ram_start, uint64_t file_size,
                 std::vector<Extent> extents)
      : fd_(std::move(fd)),
        path_(std::move(path)),
        ram_start_(ram_start),
        file_size_(file_size),
        extents_(std::move(extents)) {}

  Result<PageKind> fetch(uint64_t ipa, std::span<std::byte> dest) override {
    const uint64_t length = dest.size();
    if (ipa < ram_start_) {
      return Status(ErrorCode::kOutOfRange,
                    fmt::format("{}: address {:#x} is below ram_start {:#x}", describe(), ipa,
                                ram_start_));
    }
    const uint64_t offset = ipa - ram_start_;
    if (offset > file_size_ || length > file_size_ - offset) {
      return Status(ErrorCode::kOutOfRange,
                    fmt::format("{}: range [{:#x}, +{:#x}) reaches past the end of the file "
                                "(file offset {:#x}, file size {:#x})",
                                describe(), ipa, length, offset, file_size_));
    }
    if (in_hole(offset, length)) return PageKind::kZero;

    uint64_t done = 0;
    while (done < length) {
      ssize_t n = ::pread(fd_.get(), dest.data() + done, length - done,
                          static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status(ErrorCode::kIo, fmt::format("{}: pread of {:#x} bytes at offset {:#x}: {}",
                                                  describe(), length - done, offset + done,
                                                  std::strerror(errno)));
      }
      if (n == 0) {
        return Status(ErrorCode::kIo,
                      fmt::format("{}: short read at offset {:#x}: file ended after {:#x} of "
                                  "{:#x} bytes (was it truncated?)",
                                  describe(), offset, done, length));
      }
      done += static_cast<uint64_t>(n);
    }
    return is_all_zero(dest.first(length)) ? PageKind::kZero : PageKind::kData;
  }

  std::string describe() const override {
    return fmt::format("file {} (ram_start {:#x})", path_, ram_start_);
  }

 private:
  bool in_hole(uint64_t offset, uint64_t length) const {
    // The first extent ending after `offset`; the range is a hole if it starts
    // at or after the range's end.
    auto it = std::upper_bound(extents_.begin(), extents_.end(), offset,
                               [](uint64_t off, const Extent& e) { return off < e.end; });
    return it == extents_.end() || it->begin >= offset + length;
  }

  UniqueFd fd_;
  std::string path_;
  uint64_t ram_start_;
  uint64_t file_size_;
  std::vector<Extent> extents_;
};

}  // namespace

Result<std::unique_ptr<PageSource>> open_file_page_source(const std::string& path,
                                                          uint64_t ram_start) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return io_error(fmt::format("open memory file {}", path), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error(fmt::format("stat memory file {}", path), errno);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return invalid_argument(fmt::format("memory file {} is not a regular file", path));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (ram_start + size < ram_start) {
    return invalid_argument(
        fmt::format("memory file {}: ram_start {:#x} + size {:#x} wraps past 2^64", path,
                    ram_start, size));
  }
  auto extents = find_data_extents(fd.get(), size);
  return std::unique_ptr<PageSource>(
      new FilePageSource(std::move(fd), path, ram_start, size, std::move(extents)));
}

}  // namespace faultline
