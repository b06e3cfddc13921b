#include "vm/machine.h"

#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <cerrno>

#include "vm/guest/guest_abi.h"
#include "vm/long_mode.h"
#include "vm/vcpu_state.h"

namespace faultline::vm {
namespace {

std::atomic<bool> g_pause_requested{false};
std::atomic<Vcpu*> g_running_vcpu{nullptr};

void on_pause_signal(int) {
  g_pause_requested.store(true);
  if (Vcpu* vcpu = g_running_vcpu.load(); vcpu != nullptr) vcpu->request_exit_from_signal();
}

// The page of every boot-critical address, and the page-table pages that
// translate it.
void add_boot_critical(std::span<const std::byte> ram, const kvm_sregs& sregs, uint64_t vaddr,
                       std::vector<GuestRange>& out) {
  auto add_page = [&](Gpa gpa) {
    const GuestRange page{gpa & ~uint64_t{4095}, 4096};
    for (const GuestRange& r : out) {
      if (r.base == page.base) return;
    }
    if (page.base + page.size <= ram.size()) out.push_back(page);
  };
  const bool paging = (sregs.cr0 & (1ull << 31)) != 0;
  if (!paging) {
    add_page(vaddr);
    return;
  }
  const PageWalk walk = walk_page_tables(ram, sregs.cr3, vaddr);
  for (uint64_t table : walk.table_pages) add_page(table);
  if (walk.mapped) add_page(walk.gpa);
}

}  // namespace

Result<std::unique_ptr<Machine>> Machine::create(std::span<std::byte> ram) {
  auto kvm = Kvm::open();
  if (!kvm.is_ok()) return kvm.status();
  std::unique_ptr<Machine> m(new Machine(std::move(kvm).value(), ram));
  if (Status s = m->kvm_->set_memory_slot(0, 0, ram.data(), ram.size()); !s.is_ok()) return s;
  auto vcpu = Vcpu::create(*m->kvm_, 0);
  if (!vcpu.is_ok()) return vcpu.status();
  m->vcpu_ = std::move(vcpu).value();
  return m;
}

Status Machine::boot_workload(const WorkloadParams& params) {
  if (Status s = load_workload(ram_, params); !s.is_ok()) return s;
  workload_ = read_workload_info(ram_);
  if (Status s = set_host_cpuid(*vcpu_); !s.is_ok()) return s;
  return enter_long_mode(*vcpu_, GUEST_CODE, GUEST_STACK_TOP);
}

Status Machine::restore(const VmState& state) {
  if (state.vcpus.size() != 1) {
    return Status(ErrorCode::kUnsupported,
                  fmt::format("the state holds {} vCPUs; this VMM runs one", state.vcpus.size()));
  }
  if (state.ram_base != 0 || state.ram_size != ram_.size()) {
    return invalid_argument(
        fmt::format("the state's guest RAM {:#x}+{:#x} is not this VM's 0x0+{:#x}", state.ram_base,
                    state.ram_size, ram_.size()));
  }
  return restore_vcpu_state(*vcpu_, state.vcpus[0]);
}

const WorkloadInfo& Machine::workload() {
  if (!workload_) workload_ = read_workload_info(ram_);
  return *workload_;
}

Result<RunEnd> Machine::run(const RunHooks& hooks) {
  g_running_vcpu.store(vcpu_.get());
  struct Clear {
    ~Clear() { g_running_vcpu.store(nullptr); }
  } clear;
  while (true) {
    if (g_pause_requested.exchange(false)) {
      if (Status s = vcpu_->complete_pending_exit(); !s.is_ok()) return s;
      return RunEnd::kPaused;
    }
    if (!first_entry_) first_entry_ = Clock::now();
    auto exit = vcpu_->run();
    if (!exit.is_ok()) return exit.status();
    if (!first_exit_) first_exit_ = Clock::now();
    switch (exit->kind) {
      case VcpuExit::Kind::kInterrupted:
        continue;  // the pause check above decides
      case VcpuExit::Kind::kHalt:
        if (results_) return RunEnd::kFinished;
        return Status(ErrorCode::kInvalidArgument,
                      "the guest halted without reporting its results");
      case VcpuExit::Kind::kIo:
        if (exit->out && exit->port == PORT_PROGRESS) {
          last_progress_ = decode_progress(exit->value, workload());
          if (hooks.on_progress && hooks.on_progress(*last_progress_)) {
            if (Status s = vcpu_->complete_pending_exit(); !s.is_ok()) return s;
            return RunEnd::kPaused;
          }
          continue;
        }
        if (exit->out && exit->port == PORT_RESULT) {
          results_ = read_workload_results(ram_);
          continue;
        }
        break;
      default:
        break;
    }
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("the guest stopped unexpectedly: {}", exit->describe()));
  }
}

Result<VmState> Machine::capture() {
  auto vcpu = capture_vcpu_state(*vcpu_);
  if (!vcpu.is_ok()) return vcpu.status();
  VmState state;
  state.ram_base = 0;
  state.ram_size = ram_.size();
  const kvm_sregs& sregs = vcpu->sregs;
  add_boot_critical(ram_, sregs, vcpu->regs.rip, state.prewarm);
  add_boot_critical(ram_, sregs, vcpu->regs.rsp, state.prewarm);
  add_boot_critical(ram_, sregs, vcpu->regs.rsp - 8, state.prewarm);
  add_boot_critical(ram_, sregs, sregs.gdt.base, state.prewarm);
  state.vcpus.push_back(std::move(vcpu).value());
  return state;
}

Status Machine::pause_on_signal(int signo) {
  struct sigaction sa {};
  sa.sa_handler = on_pause_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must come back with EINTR
  if (::sigaction(signo, &sa, nullptr) != 0) return io_error("sigaction", errno);
  return Status::ok();
}

}  // namespace faultline::vm
