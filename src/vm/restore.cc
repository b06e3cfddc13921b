#include "vm/restore.h"

#include <fmt/format.h>

#include <cstring>

namespace faultline::vm {
namespace {

// Recording sees every first touch only if nothing arrives untouched.
bool fills(const RestoreOptions& o) {
  const PrefetchOptions& p = o.prefetch;
  return p.policy == PrefetchPolicy::kFull && p.fill && !p.record && o.working_sets.record.empty();
}

// The page source, and the network source it is when it is one (the pager
// will own it; the pointer is for starting the push).
struct OpenedSource {
  std::unique_ptr<PageSource> source;
  NetworkPageSource* network = nullptr;
};

Result<OpenedSource> open_source(const RestoreOptions& o) {
  if (!o.mem_file.empty() && !o.page_server.empty()) {
    return invalid_argument("give a memory file or a page server, not both");
  }
  if (!o.page_server.empty()) {
    NetworkSourceOptions network = o.network;
    network.push = o.lazy && fills(o);  // the server's push is the background fill
    auto source = NetworkPageSource::connect(o.page_server, network);
    if (!source.is_ok()) return source.status();
    NetworkPageSource* typed = source->get();
    return OpenedSource{std::move(source).value(), typed};
  }
  if (o.mem_file.empty()) return invalid_argument("no memory file and no page server given");
  auto file = open_file_page_source(o.mem_file, 0);
  if (!file.is_ok()) return file.status();
  return OpenedSource{std::move(file).value(), nullptr};
}

Status serve_lazily(RestoredVm& vm, std::unique_ptr<PageSource> source, int threads,
                    PrefetchOptions prefetch, const WorkingSetFiles& working_sets = {}) {
  const GuestRange ram{0, vm.ram->size()};
  vm.working_sets =
      prepare_working_sets(working_sets, *source, ram.base, ram.size, {&ram, 1}, prefetch, "vm");
  PagerConfig config;
  for (const GuestRange& r : vm.state.prewarm) config.prewarm.add(r);
  vm.pager = Pager::create(std::move(source), config);
  if (Status s = vm.pager->register_region(0, vm.ram->size()); !s.is_ok()) return s;
  FaultServerOptions options;
  options.threads = threads;
  options.prefetch = prefetch;
  options.name = "vm";
  auto server = FaultServer::create(vm.pager, options);
  if (!server.is_ok()) return server.status();
  vm.server = std::move(server).value();
  if (Status s = vm.server->map({0, vm.ram->data(), vm.ram->size(), kMinPageSize}); !s.is_ok()) {
    return s;
  }
  if (Status s = vm.server->prewarm(); !s.is_ok()) return s.with_context("prewarm");
  return vm.server->start();
}

Status copy_everything(RestoredVm& vm, PageSource& source) {
  constexpr uint64_t kChunk = 1 << 20;
  const uint64_t size = vm.ram->size();
  for (uint64_t off = 0; off < size; off += kChunk) {
    const uint64_t len = std::min(kChunk, size - off);
    auto kind = source.fetch(off, {vm.ram->data() + off, len});
    if (!kind.is_ok()) return kind.status();
    // Anonymous memory already reads as zero: zero chunks need no copy.
  }
  return Status::ok();
}

// The vCPU, from the state, over guest RAM that is ready to be touched.
// The server pushes every page the guest has not asked for yet into the fault
// server; the push ends when vm.push is destroyed, before the fault server.
Status start_push(RestoredVm& vm) {
  auto push = vm.network->start_push(*vm.server);
  if (!push.is_ok()) return push.status();
  vm.push = std::move(push).value();
  return Status::ok();
}

Status resume_machine(RestoredVm& vm) {
  auto machine = Machine::create(vm.ram->bytes());
  if (!machine.is_ok()) return machine.status();
  vm.machine = std::move(machine).value();
  return vm.machine->restore(vm.state);
}

}  // namespace

RestoredVm::~RestoredVm() {
  machine.reset();
  push.reset();
  if (server) {
    server->request_shutdown();
    (void)server->wait();
    server.reset();
  }
}

Result<std::unique_ptr<RestoredVm>> restore_vm(const RestoreOptions& o) {
  if (!o.lazy && !(o.working_sets.replay.empty() && o.working_sets.record.empty())) {
    return invalid_argument("working sets need a lazy restore: an eager one copies every page");
  }
  auto vm = std::make_unique<RestoredVm>();
  vm->started = Clock::now();
  auto state = read_vm_state(o.state_file);
  if (!state.is_ok()) return state.status();
  vm->state = std::move(state).value();
  if (vm->state.ram_base != 0) {
    return Status(ErrorCode::kUnsupported,
                  fmt::format("guest RAM at {:#x}: this VMM puts it at 0", vm->state.ram_base));
  }
  if (Status s = check_guest_ram_size(vm->state.ram_size); !s.is_ok()) return s;
  auto ram = GuestRam::map(vm->state.ram_size);
  if (!ram.is_ok()) return ram.status();
  vm->ram = std::move(ram).value();

  auto opened = open_source(o);
  if (!opened.is_ok()) return opened.status();
  vm->source = opened->source->describe();
  // Eagerly, the source is gone once every page is copied: no pointer to it.
  if (o.lazy) vm->network = opened->network;
  const bool pushed = vm->network != nullptr && fills(o);
  PrefetchOptions prefetch = o.prefetch;
  if (pushed) prefetch.fill = false;  // the server's push fills
  Status s = o.lazy ? serve_lazily(*vm, std::move(opened->source), o.fault_threads, prefetch,
                                   o.working_sets)
                    : copy_everything(*vm, *opened->source);
  if (!s.is_ok()) return s;
  if (pushed) {
    if (Status p = start_push(*vm); !p.is_ok()) return p;
  }
  vm->memory_ready = Clock::now();

  if (Status s = resume_machine(*vm); !s.is_ok()) return s;
  return vm;
}

Result<std::unique_ptr<RestoredVm>> receive_vm(const ReceiveOptions& o) {
  auto vm = std::make_unique<RestoredVm>();
  vm->started = Clock::now();
  NetworkSourceOptions network = o.network;
  network.push = true;
  auto source = NetworkPageSource::connect(o.from, network);
  if (!source.is_ok()) return source.status();
  const RemoteImage& image = (*source)->image();
  auto state = decode_vm_state(image.state, "the migration source's state");
  if (!state.is_ok()) return state.status();
  vm->state = std::move(state).value();
  if (vm->state.ram_base != 0 || image.ram_start != 0 || image.size != vm->state.ram_size) {
    return Status(
        ErrorCode::kProtocol,
        fmt::format("the source serves {:#x} bytes at {:#x} for a guest of {:#x} bytes at "
                    "{:#x}",
                    image.size, image.ram_start, vm->state.ram_size, vm->state.ram_base));
  }
  if (Status s = check_guest_ram_size(vm->state.ram_size); !s.is_ok()) return s;
  auto ram = GuestRam::map(vm->state.ram_size);
  if (!ram.is_ok()) return ram.status();
  vm->ram = std::move(ram).value();
  vm->network = source->get();
  vm->source = vm->network->describe();
  PrefetchOptions prefetch;
  prefetch.fill = false;  // the source's push fills
  if (Status s = serve_lazily(*vm, std::move(source).value(), o.fault_threads, prefetch);
      !s.is_ok()) {
    return s;
  }
  if (Status p = start_push(*vm); !p.is_ok()) return p;
  vm->memory_ready = Clock::now();
  if (Status s = resume_machine(*vm); !s.is_ok()) return s;
  return vm;
}

}  // namespace faultline::vm
