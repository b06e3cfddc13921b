// Whether KVM here can run our guest: /dev/kvm opens and a tiny workload runs
// to the right result. Tests skip, and the demo falls back, when it cannot.
#pragma once

#include "faultline/status.h"

namespace faultline::vm {

// OK, or why not ("open /dev/kvm: No such file or directory", ...).
Status probe_kvm();

}  // namespace faultline::vm
