// The signals of a long-running command, received by sigwait in the main
// thread: block them before any thread starts (threads inherit the mask), then
// wait. SIGINT and SIGTERM stop the command; SIGHUP is logged and otherwise
// ignored (nothing is reloaded: options are read once, at start). SIGPIPE and
// SIGUSR1 are ignored, so a reader of stderr that went away, or a stray
// signal, never kills a daemon; a command that gives SIGUSR1 a meaning
// (pausing a guest) installs its handler after this.
#pragma once

#include <signal.h>

namespace faultline::cli {

sigset_t block_stop_signals();
// Returns SIGINT or SIGTERM.
int wait_for_stop_signal(const sigset_t& signals);
// Whether `signo`, received from the set block_stop_signals() returned, asks
// the command to stop (SIGHUP does not).
bool is_stop_signal(int signo);

}  // namespace faultline::cli
