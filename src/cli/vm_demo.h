// The KVM half of `faultline demo` (see vm_demo.cc).
#pragma once

#include <string>

namespace faultline::cli {

struct VmDemoOptions {
  std::string ram = "512M";
};

// Prints the figures; returns the exit code.
int run_vm_demo(const VmDemoOptions& options);

}  // namespace faultline::cli
