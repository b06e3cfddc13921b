// The page size of the tests' images and mappings unless a test says otherwise.
#pragma once

#include <cstdint>

namespace faultline::testing {

inline constexpr uint64_t kPage = 4096;

}  // namespace faultline::testing
