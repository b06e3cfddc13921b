// The library's messages name option fields (it has no command line); what a
// CLI user reads names the flag that sets the field instead.
#pragma once

#include <string>
#include <string_view>

namespace faultline::cli {

// `message` with every option field the CLI sets by a flag replaced by that
// flag, e.g. "TlsOptions::ca_file" by "--tls-ca".
std::string with_flag_names(std::string_view message);

}  // namespace faultline::cli
