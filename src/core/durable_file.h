// Writing a file so that a crash leaves either the old file or the whole new
// one: a temporary file beside it, fsync, rename over, fsync the folder.
#pragma once

#include <functional>
#include <string>

#include "faultline/status.h"

namespace faultline {

// `fill` writes the contents to the temporary file's descriptor.
Status write_file_durably(const std::string& path, const std::function<Status(int fd)>& fill);

// Writes all of `len` bytes at `offset`.
Status pwrite_all(int fd, const void* data, size_t len, uint64_t offset, const std::string& what);

}  // namespace faultline
