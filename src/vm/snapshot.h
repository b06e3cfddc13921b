// Writing a snapshot of a paused Machine: the state file (state_file.h) and
// the memory file, byte i of which is guest-physical address i, with holes
// where guest pages are all zero. Both are written durably.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "faultline/status.h"
#include "vm/machine.h"

namespace faultline::vm {

struct SnapshotFigures {
  uint64_t ram_bytes = 0;
  uint64_t data_bytes = 0;  // written; the rest are holes
  uint64_t state_bytes = 0;
  double ms = 0;
};

// Every page that is not all zero, written where it lies; the file is as long
// as guest RAM.
Status write_memory_file(const std::string& path, std::span<const std::byte> ram,
                         uint64_t* data_bytes = nullptr);

// `machine` must be paused (Machine::run returned kPaused).
Result<SnapshotFigures> write_snapshot(Machine& machine, const std::string& state_path,
                                       const std::string& mem_path);

}  // namespace faultline::vm
