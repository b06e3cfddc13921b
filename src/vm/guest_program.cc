#include "vm/guest_program.h"

extern "C" const char faultline_guest_workload_start[];
extern "C" const char faultline_guest_workload_end[];

namespace faultline::vm {

std::span<const std::byte> workload_program() {
  return {reinterpret_cast<const std::byte*>(faultline_guest_workload_start),
          reinterpret_cast<const std::byte*>(faultline_guest_workload_end)};
}

}  // namespace faultline::vm
