// The snapshot memory file as a page source: pread at (gpa - ram_start).
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stop_token>
#include <thread>
#include <vector>

#include "core/zero_scan.h"
#include "faultline/page_source.h"
#include "faultline/unique_fd.h"

namespace faultline {
namespace {

// [begin, end) byte offsets of the file that hold data; the rest are holes.
struct Extent {
  uint64_t begin;
  uint64_t end;
};

std::vector<Extent> find_data_extents(int fd, uint64_t file_size, const std::stop_token& stop) {
  std::vector<Extent> extents;
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < file_size) {
    if (stop.stop_requested()) return {{0, file_size}};
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

// The data extents of a file, and how far the map reaches: nothing past
// `mapped_size` is known to be a hole.
struct ExtentMap {
  std::vector<Extent> data;
  uint64_t mapped_size = 0;
};

// Walks SEEK_DATA / SEEK_HOLE once so that faults in holes cost no I/O.
// A file system without hole support reports one extent: the whole file.
ExtentMap map_data_extents(int fd, const std::stop_token& stop) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {};
  const auto file_size = static_cast<uint64_t>(st.st_size);
  ExtentMap map{find_data_extents(fd, file_size, stop), file_size};
  return map;
}

class FilePageSource final : public PageSource {
 public:
  FilePageSource(UniqueFd fd, std::string path, uint64_t ram_start, uint64_t file_size)
      : fd_(std::move(fd)), path_(std::move(path)), ram_start_(ram_start), file_size_(file_size) {
    // A fragmented file has thousands of extents: map them off the restore's
    // critical path. Until the map is there, holes are found by reading them.
    hole_scanner_ = std::jthread([this](const std::stop_token& stop) {
      extents_storage_ = map_data_extents(fd_.get(), stop);
      extents_.store(&extents_storage_, std::memory_order_release);
    });
  }

  Result<PageKind> fetch(Gpa gpa, std::span<std::byte> dest) override {
    const uint64_t length = dest.size();
    if (gpa < ram_start_) {
      return Status(
          ErrorCode::kOutOfRange,
          fmt::format("{}: address {:#x} is below ram_start {:#x}", describe(), gpa, ram_start_));
    }
    const uint64_t offset = gpa - ram_start_;
    if (offset > file_size_ || length > file_size_ - offset) {
      return Status(ErrorCode::kOutOfRange,
                    fmt::format("{}: range [{:#x}, +{:#x}) reaches past the end of the file "
                                "(file offset {:#x}, file size {:#x})",
                                describe(), gpa, length, offset, file_size_));
    }
    if (in_hole(offset, length)) return PageKind::kZero;

    uint64_t done = 0;
    while (done < length) {
      ssize_t n =
          ::pread(fd_.get(), dest.data() + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status(ErrorCode::kIo,
                      fmt::format("{}: pread of {:#x} bytes at offset {:#x}: {}", describe(),
                                  length - done, offset + done, std::strerror(errno)));
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
    const ExtentMap* map = extents_.load(std::memory_order_acquire);
    // Not mapped yet, or past what the map saw (the file changed): read it, so
    // a file that shrank gives a short-read error, never invented zeros.
    if (map == nullptr || offset + length > map->mapped_size) return false;
    // The first extent ending after `offset`; the range is a hole if it starts
    // at or after the range's end.
    auto it = std::upper_bound(map->data.begin(), map->data.end(), offset,
                               [](uint64_t off, const Extent& e) { return off < e.end; });
    return it == map->data.end() || it->begin >= offset + length;
  }

  UniqueFd fd_;
  std::string path_;
  uint64_t ram_start_;
  uint64_t file_size_;
  ExtentMap extents_storage_;  // written once by the scanner
  std::atomic<const ExtentMap*> extents_{nullptr};
  std::jthread hole_scanner_;  // last: stopped and joined before the rest goes
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
    return invalid_argument(fmt::format(
        "memory file {}: ram_start {:#x} + size {:#x} wraps past 2^64", path, ram_start, size));
  }
  return std::unique_ptr<PageSource>(new FilePageSource(std::move(fd), path, ram_start, size));
}

}  // namespace faultline
