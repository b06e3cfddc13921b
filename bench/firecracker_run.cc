#include "firecracker_run.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "naive_handler.h"
#include "net/socket_address.h"
#include "net/socket_io.h"
#include "os_linux/child_process.h"
#include "support/firecracker_client.h"

namespace faultline::bench {
namespace {

using testing::FirecrackerClient;

// How long past its cap a run may go before its handler is taken to hang.
constexpr std::chrono::seconds kHangGrace(30);

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// What `faultline stats --socket S` prints, read from the stats socket itself
// (polling through the CLI would take CPU from the handler being measured);
// discarded JSON while the handler does not answer.
nlohmann::json handler_stats(const std::string& socket) {
  auto address = net::parse_socket_address("unix:" + socket + ".stats");
  if (!address.is_ok()) return nlohmann::json::value_t::discarded;
  auto connection = net::connect_socket(*address, std::chrono::seconds(1));
  if (!connection.is_ok()) return nlohmann::json::value_t::discarded;
  auto text =
      net::read_to_end(connection->get(), 16 << 20, net::deadline_after(std::chrono::seconds(5)));
  if (!text.is_ok()) return nlohmann::json::value_t::discarded;
  return nlohmann::json::parse(*text, nullptr, false);
}

nlohmann::json first_session(const nlohmann::json& stats) {
  if (stats.is_discarded() || !stats.contains("sessions") || stats["sessions"].empty()) {
    return nullptr;
  }
  return stats["sessions"][0];
}

// The session's time to fully resident, in ms; 0 while not yet.
double fully_resident_ms(const nlohmann::json& session) {
  if (session.contains("prefetch") && session["prefetch"].contains("fully_resident_ms")) {
    return session["prefetch"]["fully_resident_ms"].get<double>();
  }
  return session.value("fully_resident_ms", 0.0);
}

// `faultline handle` for one run; SIGTERM (then SIGKILL) when it goes.
class Handler {
 public:
  Handler(const HandleRun& run, const std::string& socket) : socket_(socket) {
    log_ = socket + ".log";
    std::vector<std::string> argv = {run.cli, "handle", "--socket", socket};
    argv.insert(argv.end(), run.args.begin(), run.args.end());
    auto child = ChildProcess::spawn(argv, {.stderr_file = log_});
    if (!child.is_ok()) throw std::runtime_error("cannot start " + run.cli);
    child_ = std::move(child).value();
    for (int i = 0; i < 1000; ++i) {
      if (!stats().is_discarded()) return;
      if (child_.try_wait()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error(fmt::format("`faultline handle {}` did not start; its log:\n{}",
                                         fmt::join(run.args, " "), read_text(log_)));
  }
  ~Handler() { stop(); }

  nlohmann::json stats() const { return handler_stats(socket_); }
  std::string log() const { return read_text(log_); }
  void kill() { child_.kill(); }
  void stop() {
    if (!child_.running()) return;
    child_.signal(SIGTERM);
    for (int i = 0; i < 500; ++i) {
      if (child_.try_wait()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    child_.kill();
  }

 private:
  std::string socket_;
  std::string log_;
  ChildProcess child_;
};

// Past its deadline the handler is taken to hang: it is killed and the
// client's userfaultfd closed, so that blocked faults resume.
class Watchdog {
 public:
  Watchdog(Clock::time_point deadline, std::function<void()> on_hang)
      : thread_([this, deadline, on_hang] {
          std::unique_lock lock(mu_);
          if (!done_cv_.wait_until(lock, deadline, [this] { return done_; })) on_hang();
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    done_cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

HandleOutcome run_under_handler(const HandleRun& run, const Workload& w) {
  static int serial = 0;
  const std::string socket = fmt::format("{}/handle-{}.sock", run.dir, ++serial);
  Handler handler(run, socket);
  FirecrackerClient client({.regions = {{run.size, 0}}});
  if (!client.setup().is_ok()) throw std::runtime_error(client.setup().to_string());

  const auto start = Clock::now();
  const auto deadline = start + run.cap;
  bool hung = false;
  Outcome o;
  {
    Watchdog watchdog(deadline + kHangGrace, [&] {
      hung = true;
      handler.kill();
      client.close_uffd();
    });
    if (Status sent = client.connect_and_send(socket); !sent.is_ok()) {
      throw std::runtime_error("handshake: " + sent.to_string());
    }
    o = outcome_since(start, run_workload(w, client.region(0), deadline));
  }
  if (hung) {
    throw std::runtime_error(fmt::format("the handler hung {} s past the cap; killed. Its log:\n{}",
                                         kHangGrace.count(), handler.log()));
  }
  nlohmann::json session = first_session(handler.stats());
  if (run.wait_for_resident && !o.aborted) {
    while (!session.is_null() && fully_resident_ms(session) == 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      session = first_session(handler.stats());
    }
  }
  if (session.is_null()) {
    throw std::runtime_error("`faultline stats` shows no session; the handler's log:\n" +
                             handler.log());
  }
  o.faults = session.value("faults", uint64_t{0});
  if (const double resident = fully_resident_ms(session); resident > 0) o.resident_ms = resident;
  client.exit_vm();
  handler.stop();
  return {o, session.contains("prefetch") ? session["prefetch"] : nlohmann::json(nullptr)};
}

Outcome run_under_naive_handler(int image, uint64_t size, const Workload& w) {
  FirecrackerClient client({.regions = {{size, 0}}});
  if (!client.setup().is_ok()) throw std::runtime_error(client.setup().to_string());
  const auto start = Clock::now();
  NaiveHandler handler(image, client.region(0), size, UniqueFd(::dup(client.uffd())));
  if (Status s = handler.start(); !s.is_ok()) throw std::runtime_error(s.to_string());
  Outcome o = outcome_since(start, run_workload(w, client.region(0)));
  o.faults = handler.faults();
  return o;
}

}  // namespace faultline::bench
