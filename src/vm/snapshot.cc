#include "vm/snapshot.h"

#include <unistd.h>

#include <cerrno>

#include "core/durable_file.h"
#include "core/zero_scan.h"

namespace faultline::vm {

Status write_memory_file(const std::string& path, std::span<const std::byte> ram,
                         uint64_t* data_bytes) {
  constexpr uint64_t kPage = 4096;
  uint64_t written = 0;
  Status s = write_file_durably(path, [&](int fd) -> Status {
    // Runs of non-zero pages become one write each; zero pages stay holes.
    uint64_t run_start = 0, run_len = 0;
    auto flush = [&]() -> Status {
      if (run_len == 0) return Status::ok();
      Status w = pwrite_all(fd, ram.data() + run_start, run_len, run_start, path);
      written += run_len;
      run_len = 0;
      return w;
    };
    for (uint64_t off = 0; off < ram.size(); off += kPage) {
      if (is_all_zero(ram.subspan(off, kPage))) {
        if (Status f = flush(); !f.is_ok()) return f;
        continue;
      }
      if (run_len == 0) run_start = off;
      run_len += kPage;
      if (run_len >= (8u << 20)) {
        if (Status f = flush(); !f.is_ok()) return f;
      }
    }
    if (Status f = flush(); !f.is_ok()) return f;
    if (::ftruncate(fd, static_cast<off_t>(ram.size())) != 0) {
      return io_error("ftruncate " + path, errno);
    }
    return Status::ok();
  });
  if (data_bytes != nullptr) *data_bytes = written;
  return s;
}

Result<SnapshotFigures> write_snapshot(Machine& machine, const std::string& state_path,
                                       const std::string& mem_path) {
  const auto start = Clock::now();
  auto state = machine.capture();
  if (!state.is_ok()) return state.status();
  SnapshotFigures f;
  f.ram_bytes = machine.ram().size();
  // Memory first: a state file never points at a memory file not yet complete.
  if (Status s = write_memory_file(mem_path, machine.ram(), &f.data_bytes); !s.is_ok()) return s;
  f.state_bytes = encode_vm_state(*state).size();
  if (Status s = write_vm_state(state_path, *state); !s.is_ok()) return s;
  f.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return f;
}

}  // namespace faultline::vm
