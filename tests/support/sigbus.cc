#include "support/sigbus.h"

#include <csetjmp>
#include <csignal>
#include <cstring>
#include <mutex>

namespace faultline::testing {
namespace {

thread_local sigjmp_buf* t_landing = nullptr;

void on_sigbus(int sig, siginfo_t* /*info*/, void* /*context*/) {
  if (t_landing != nullptr) siglongjmp(*t_landing, 1);
  // Not expected here: die the default way.
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
  const auto* from = static_cast<const volatile unsigned char*>(src);
  auto* to = static_cast<unsigned char*>(dst);
  for (size_t i = 0; i < len; ++i) to[i] = from[i];
  t_landing = nullptr;
  return true;
}

bool write_catching_sigbus(void* dst, std::byte value) {
  install_handler_once();
  sigjmp_buf landing;
  if (sigsetjmp(landing, 1) != 0) {
    t_landing = nullptr;
    return false;
  }
  t_landing = &landing;
  *static_cast<volatile std::byte*>(dst) = value;
  t_landing = nullptr;
  return true;
}

}  // namespace faultline::testing
