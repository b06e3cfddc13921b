// Resuming a snapshot in this process. Lazily: guest RAM is registered with a
// Pager and the userfaultfd fault server, the boot-critical pages of the
// state's PREWARM section are installed, and the vCPU resumes at once; every
// other page arrives when the guest (through KVM) or the VMM first touches it.
// Eagerly: every page is copied in before the vCPU resumes, for comparison.
#pragma once

#include <memory>
#include <string>

#include "core/working_set_session.h"
#include "faultline/fault_server.h"
#include "faultline/network_page_source.h"
#include "faultline/pager.h"
#include "faultline/status.h"
#include "vm/guest_ram.h"
#include "vm/machine.h"
#include "vm/state_file.h"

namespace faultline::vm {

struct RestoreOptions {
  std::string state_file;
  std::string mem_file;          // the snapshot's memory file, or ...
  std::string page_server;       // ... a `faultline serve-pages` serving it (ram start 0), over v2
  NetworkSourceOptions network;  // for page_server; the server pushes when the policy fills
  bool lazy = true;
  int fault_threads = 1;
  // Lazy restore: what the fault server installs besides the faulting page
  // (see prefetch.h); by default everything, in the background.
  PrefetchOptions prefetch;
  // Lazy restore: the working set to replay (refused ones are logged and
  // skipped) and the file to record into, written when the caller says the
  // run has ended (RestoredVm::working_sets.recording->finish()) or after
  // record_for, whichever is first; a restore that fails writes nothing.
  WorkingSetFiles working_sets;
};

// The destination of a migration: the state and every page come from a
// `faultline migrate` source over the v2 protocol, pushed and on demand.
struct ReceiveOptions {
  std::string from;              // the source's address
  NetworkSourceOptions network;  // push is always on
  int fault_threads = 1;
};

// A restored VM, ready to run. Members are destroyed machine first, then the
// push (which hands pages to the fault server), then the fault server, then
// guest RAM.
struct RestoredVm {
  VmState state;
  std::string source;  // the page source, described
  std::unique_ptr<GuestRam> ram;
  PagerHandle pager;                              // lazy only
  std::unique_ptr<FaultServer> server;            // lazy only
  NetworkPageSource* network = nullptr;           // a network source: the pager's
  std::unique_ptr<NetworkPageSource::Push> push;  // pushed pages into server
  std::unique_ptr<Machine> machine;
  PreparedWorkingSets working_sets;  // lazy only
  Clock::time_point started;         // restore start
  Clock::time_point memory_ready;    // lazy: prewarmed; eager: every page copied

  ~RestoredVm();
  RestoredVm() = default;
  RestoredVm(const RestoredVm&) = delete;
  RestoredVm& operator=(const RestoredVm&) = delete;
};

Result<std::unique_ptr<RestoredVm>> restore_vm(const RestoreOptions& options);
// Connects to the source, takes the vCPU state from its handshake, and
// resumes at once; pages are pushed into guest RAM while the guest runs.
Result<std::unique_ptr<RestoredVm>> receive_vm(const ReceiveOptions& options);

}  // namespace faultline::vm
