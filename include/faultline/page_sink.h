// Where pages go that arrive other than through a fault: the prewarm list
// (Pager::prewarm) and pages a network source pushes unasked
// (NetworkPageSource::start_push). The fault server is the sink that installs
// them into guest memory; tests record them.
#pragma once

#include <cstdint>
#include <span>

#include "faultline/page_source.h"
#include "faultline/status.h"

namespace faultline {

class PageSink {
 public:
  virtual ~PageSink() = default;
  // Installs guest-physical [gpa, gpa + length): `bytes` (length bytes), or
  // zeros when `bytes` is empty. A page already present is left as it is,
  // never overwritten: a demand fault may have installed newer bytes.
  virtual Status install(Gpa gpa, uint64_t length, std::span<const std::byte> bytes) = 0;
  // Whether the page at `gpa` is present (so it need not be sent again).
  virtual bool holds_page(Gpa gpa) const = 0;
};

}  // namespace faultline
