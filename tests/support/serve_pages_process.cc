#include "support/serve_pages_process.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace faultline::testing {

ServePagesProcess::ServePagesProcess(const std::string& cli, const std::vector<std::string>& args,
                                     const std::string& log)
    : log_(log) {
  std::vector<std::string> argv = {cli, "serve-pages"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = ChildProcess::spawn(argv, {.stderr_file = log});
  if (!child.is_ok()) {
    ADD_FAILURE() << "cannot start " << cli << ": " << child.status().to_string();
    return;
  }
  child_ = std::move(child).value();
  // The startup line ends "... on ADDRESS".
  const std::string marker = ") on ";
  for (int i = 0; i < 1000; ++i) {
    const std::string text = log_text();
    if (const size_t at = text.find(marker); at != std::string::npos) {
      const size_t end = text.find('\n', at);
      if (end != std::string::npos) {
        address_ = text.substr(at + marker.size(), end - at - marker.size());
        return;
      }
    }
    if (child_.try_wait()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "serve-pages did not start; its log:\n" << log_text();
}

ServePagesProcess::~ServePagesProcess() {
  if (!child_.running()) return;
  child_.signal(SIGTERM);
  (void)child_.wait();
}

}  // namespace faultline::testing
