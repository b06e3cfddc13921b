#include "support/sigbus.h"

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace faultline::testing {
namespace {

// volatile: the stores around the access must not be merged or moved.
thread_local sigjmp_buf* volatile t_landing = nullptr;

void on_sigbus(int sig, siginfo_t* info, void* /*context*/) {
  if (t_landing != nullptr) siglongjmp(*t_landing, 1);
  // Not expected here: say where, then die the default way.
  char line[128];
  int n = std::snprintf(line, sizeof line, "unexpected SIGBUS at %p (si_code %d)\n", info->si_addr,
                        info->si_code);
  if (n > 0) [[maybe_unused]]
    auto w = ::write(2, line, static_cast<size_t>(n));
  void* frames[32];
  backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void install_handler_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, nullptr);
  });
}

}  // namespace

bool copy_catching_sigbus(void* dst, const void* src, size_t len) {
  install_handler_once();
  sigjmp_buf landing;
  if (sigsetjmp(landing, 1) != 0) {
    t_landing = nullptr;
    return false;
  }
  t_landing = &landing;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  const auto* from = static_cast<const volatile unsigned char*>(src);
  auto* to = static_cast<unsigned char*>(dst);
  for (size_t i = 0; i < len; ++i) to[i] = from[i];
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_landing = nullptr;
  return true;
}

}  // namespace faultline::testing
