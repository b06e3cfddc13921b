// Touching guest memory that the fault server may have poisoned: a SIGBUS on
// the touching thread is caught and reported instead of killing the test.
#pragma once

#include <cstddef>
#include <cstdint>

namespace faultline::testing {

// Copies `len` bytes from `src` into `dst`. Returns false if the access raised
// SIGBUS (a poisoned page); any other SIGBUS still kills the process.
bool copy_catching_sigbus(void* dst, const void* src, size_t len);

}  // namespace faultline::testing
