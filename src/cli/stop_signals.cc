#include "cli/stop_signals.h"

#include <pthread.h>

namespace faultline::cli {

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int wait_for_stop_signal(const sigset_t& signals) {
  int signo = 0;
  while (sigwait(&signals, &signo) != 0) {
  }
  return signo;
}

}  // namespace faultline::cli
