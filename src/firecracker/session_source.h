// Where the handler's sessions take their pages from, checked once when the
// handler starts: the snapshot memory file, or `faultline serve-pages`
// (protocol v2, TLS as every other client).
//
// From a page server each session opens its own NetworkPageSource rather than
// sharing one: the source could take concurrent fetches, but its push fills
// one sink (one VM's memory, described by that VM's HAVE) and one push is all
// a source carries; and a connection that drops and reconnects then stalls
// one VM, not all of them.
#pragma once

#include "faultline/uffd_handler.h"
#include "firecracker/session.h"

namespace faultline::firecracker {

// Checks the source `options` names (the file can be opened; the page server
// answers the v2 handshake over the transport the options allow, and serves
// its image from guest-physical 0) and fills in how `config`'s sessions open
// it, the image size their regions must lie within, and whether the server
// pushes pages (the page server's push is the background fill).
Status configure_session_source(const UffdHandlerOptions& options, SessionConfig& config);

}  // namespace faultline::firecracker
