// Working-set files: reading (and judging whether one fits an image), and
// writing them atomically. The bytes are working_set_format's.
#include "faultline/working_set.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/durable_file.h"
#include "core/working_set_format.h"
#include "faultline/unique_fd.h"

namespace faultline {
namespace {

namespace format = working_set_format;

Result<std::vector<std::byte>> read_whole(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return io_error(fmt::format("open working set {}", path), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error(fmt::format("stat working set {}", path), errno);
  if (!S_ISREG(st.st_mode)) {
    return invalid_argument(fmt::format("working set {} is not a regular file", path));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > format::kMaxFileBytes) {
    return invalid_argument(fmt::format("working set {}: {} bytes, over the {} MiB limit", path,
                                        size, format::kMaxFileBytes >> 20));
  }
  std::vector<std::byte> bytes(size);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pread(fd.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(fmt::format("read working set {}", path), errno);
    if (n == 0) break;  // shrank meanwhile: decode() calls it truncated
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

// "its size 64 MiB differs from this image's 32 MiB; ..." for each field that differs.
std::string identity_difference(const ImageIdentity& recorded, const ImageIdentity& image) {
  std::string why;
  if (recorded.size != image.size) {
    why = fmt::format("its image size {} bytes differs from this image's {} bytes", recorded.size,
                      image.size);
  }
  if (recorded.fingerprint != image.fingerprint) {
    if (!why.empty()) why += "; ";
    why += fmt::format("its fingerprint {:#018x} differs from this image's {:#018x}",
                       recorded.fingerprint, image.fingerprint);
  }
  return why;
}

bool inside_a_region(const WorkingSetTouch& t, std::span<const GuestRange> regions) {
  for (const GuestRange& r : regions) {
    if (t.gpa >= r.base && t.page_size <= r.size && t.gpa - r.base <= r.size - t.page_size) {
      return true;
    }
  }
  return false;
}

}  // namespace

Result<WorkingSet> WorkingSet::load(const std::string& path) {
  auto bytes = read_whole(path);
  if (!bytes.is_ok()) return bytes.status();
  auto set = format::decode(*bytes);
  if (!set.is_ok()) return set.status().with_context("working set " + path);
  return set;
}

Result<WorkingSet> WorkingSet::load_for(const std::string& path, const ImageIdentity& image,
                                        std::span<const GuestRange> regions) {
  auto set = load(path);
  if (!set.is_ok()) return set;
  if (set->image() != image) {
    return invalid_argument(fmt::format("working set {} was recorded on another image: {}", path,
                                        identity_difference(set->image(), image)));
  }
  const auto touches = set->touches();
  for (size_t i = 0; i < touches.size(); ++i) {
    if (!inside_a_region(touches[i], regions)) {
      return invalid_argument(
          fmt::format("working set {}: touch {} (page [{:#x}, +{:#x})) lies outside the guest "
                      "memory being restored",
                      path, i, touches[i].gpa, touches[i].page_size));
    }
  }
  return set;
}

Status WorkingSet::save(const std::string& path) const {
  auto bytes = format::encode(*this);
  if (!bytes.is_ok()) return bytes.status().with_context("writing working set " + path);
  Status s = write_file_durably(
      path, [&](int fd) { return pwrite_all(fd, bytes->data(), bytes->size(), 0, path); });
  return s.with_context("writing working set " + path);
}

}  // namespace faultline
