// What the source of a postcopy migration runs and how it serves it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "faultline/compression.h"
#include "faultline/tls_options.h"
#include "vm/workload.h"

namespace faultline::migration {

struct MigrationSourceOptions {
  std::string listen;  // where destinations connect: "unix:PATH" or "tcp:HOST:PORT"
  uint64_t ram_size = 512ull << 20;
  vm::WorkloadParams workload;
  uint64_t after_progress = 1;  // the guest pauses at this progress report (SIGUSR1: at once)
  Compression compression = Compression::kNone;
  // TLS: our certificate chain and key (PEM); with ca_file, destinations must
  // present a certificate signed by it.
  TlsOptions tls;
  bool allow_plain_tcp = false;  // TCP without TLS: guest memory in clear text
  // How long to wait for a destination to connect, or to come back.
  std::chrono::duration<double> wait{300};
};

}  // namespace faultline::migration
