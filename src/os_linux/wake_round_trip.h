// What one fault's round trip through the kernel costs on this machine, as a
// proxy: two threads waking each other through eventfds (a fault wakes the
// handler, the install wakes the faulting thread). Cloud VMs differ by ten
// times here (6 us to 60 us), and the prefetch windows follow it.
#pragma once

#include <cstdint>

namespace faultline {

// The median of a few dozen ping-pongs, measured once per process (the
// first call takes about a millisecond); 0 if it could not be measured.
uint64_t wake_round_trip_ns();

}  // namespace faultline
