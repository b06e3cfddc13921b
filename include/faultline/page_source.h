// Where page bytes come from. A source only produces bytes; the Pager decides
// which bytes are wanted and the fault backend installs them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "faultline/status.h"

namespace faultline {

// A guest-physical address (GPA): where a byte sits in the guest's physical
// memory as the VM sees it (KVM's guest_phys_addr; Arm calls it an IPA). Every
// address in this API is one unless its name says host. Variables holding one
// are named `gpa`.
using Gpa = uint64_t;

// The smallest page: every region, mapping and page size is a multiple of it.
inline constexpr uint64_t kMinPageSize = 4096;

enum class PageKind {
  kData,  // `dest` holds the bytes
  kZero,  // every byte is zero; `dest` may not have been written
};

class PageSource {
 public:
  virtual ~PageSource() = default;

  // Fills `dest` with the bytes of guest-physical range [gpa, gpa + dest.size()).
  // Safe to call from several threads at once. Never pads a short read: a range
  // the source cannot produce in full is an error. kOutOfRange marks addresses
  // the source does not hold (permanent); retryable codes mark transient trouble.
  virtual Result<PageKind> fetch(Gpa gpa, std::span<std::byte> dest) = 0;

  // A short human name for logs and errors: "file /snap/mem (ram_start 0x0)".
  virtual std::string describe() const = 0;
};

// The snapshot memory file: byte 0 holds guest-physical address `ram_start`.
// Holes of sparse files (SEEK_HOLE) and all-zero pages are reported as kZero.
Result<std::unique_ptr<PageSource>> open_file_page_source(const std::string& path,
                                                          uint64_t ram_start);

// An in-memory image, for tests and embedders that already hold the bytes.
std::unique_ptr<PageSource> make_memory_page_source(std::span<const std::byte> image,
                                                    uint64_t ram_start);
// The same without a copy: `image` must outlive the source and hold still
// (a paused VM's RAM being migrated).
std::unique_ptr<PageSource> borrow_memory_page_source(std::span<const std::byte> image,
                                                      uint64_t ram_start);

struct SocketSourceOptions {
  // How long one request may wait for its reply before it fails (retryably).
  std::chrono::milliseconds io_timeout{5000};
  // How long connecting may take.
  std::chrono::milliseconds connect_timeout{2000};
};

// A client of `faultline serve-pages`, speaking protocol v1:
// request <u64 LE gpa><u64 LE page_size>; reply echoes both, then exactly
// page_size bytes. `address` is "unix:PATH" or "tcp:HOST:PORT". Concurrent
// fetches each use their own connection from a pool; connecting is lazy.
// v1 has no error reply: the server hangs up on a request it cannot serve, which
// the source reports as kUnavailable (retryable), like a dead server.
Result<std::unique_ptr<PageSource>> connect_socket_page_source(const std::string& address,
                                                               SocketSourceOptions options = {});

}  // namespace faultline
