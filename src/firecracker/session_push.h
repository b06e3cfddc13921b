// Pages a page server pushes into one VM's memory unasked (the handler's
// background fill from a page server), kept to the VM's regions.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "faultline/fault_server.h"
#include "faultline/network_page_source.h"
#include "firecracker/handshake.h"

namespace faultline::firecracker {

// The sink the push sees: the session's fault server, with the parts of the
// image no region maps (and regions on pages larger than the image's, which
// pushed ranges do not cover whole) reported as held, so the server never
// sends them, and dropped if they come anyway.
class RegionSink : public PageSink {
 public:
  RegionSink(FaultServer& server, std::span<const RegionMapping> regions, uint64_t page_size);
  Status install(Gpa gpa, uint64_t length, std::span<const std::byte> bytes) override;
  bool holds_page(Gpa gpa) const override;

 private:
  FaultServer& server_;
  std::vector<RegionMapping> pushed_;  // the regions on pages of the image's size
};

class SessionPush {
 public:
  // Tells the server what the VM holds and installs what it pushes until
  // destroyed. `source` must have been opened with push; `server` must
  // outlive this.
  static Result<std::unique_ptr<SessionPush>> start(NetworkPageSource& source, FaultServer& server,
                                                    std::span<const RegionMapping> regions);
  ~SessionPush();  // the push stops before the sink goes

 private:
  SessionPush(FaultServer& server, std::span<const RegionMapping> regions, uint64_t page_size);
  RegionSink sink_;
  std::unique_ptr<NetworkPageSource::Push> push_;
};

}  // namespace faultline::firecracker
