// The guest program (guest/workload.S), assembled by the build into a flat
// binary that runs at GUEST_CODE.
#pragma once

#include <cstddef>
#include <span>

namespace faultline::vm {

std::span<const std::byte> workload_program();

}  // namespace faultline::vm
