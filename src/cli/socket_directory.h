// A socket path given on the command line whose directory is missing is the
// user's typo, said as such before anything binds there.
#pragma once

#include <string>

#include "faultline/status.h"

namespace faultline::cli {

// OK if `path` is empty or its directory exists; else "FLAG PATH: directory
// DIR does not exist".
Status check_socket_directory(const std::string& flag, const std::string& path);
// The same for a "unix:PATH" address; other addresses are OK.
Status check_listen_directory(const std::string& flag, const std::string& address);

}  // namespace faultline::cli
