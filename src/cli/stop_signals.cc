#include "cli/stop_signals.h"

#include <pthread.h>

#include "core/log.h"

namespace faultline::cli {

sigset_t block_stop_signals() {
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGUSR1, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

bool is_stop_signal(int signo) {
  if (signo != SIGHUP) return true;
  log().info("SIGHUP received: nothing to reload (options are read at start); still running");
  return false;
}

int wait_for_stop_signal(const sigset_t& signals) {
  for (;;) {
    int signo = 0;
    if (sigwait(&signals, &signo) == 0 && is_stop_signal(signo)) return signo;
  }
}

}  // namespace faultline::cli
