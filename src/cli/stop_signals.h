// SIGINT and SIGTERM, received by sigwait in the main thread: block them
// before any thread starts (threads inherit the mask), then wait.
#pragma once

#include <signal.h>

namespace faultline::cli {

sigset_t block_stop_signals();
int wait_for_stop_signal(const sigset_t& signals);

}  // namespace faultline::cli
