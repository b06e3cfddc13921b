// What the `faultline` binary says to a user who gets something wrong, run as
// a user runs it: messages name flags (not the library's fields), say what to
// do where the cause is known, sizes take suffixes, and the daemons say which
// version they are.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "faultline/version.h"
#include "net/socket_address.h"
#include "support/cli_process.h"
#include "support/handler_process.h"
#include "support/serve_pages_process.h"
#include "support/temp_dir.h"
#include "support/test_certs.h"

namespace faultline {
namespace {

using testing::Cli;

class CliMessagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_file(mem_file_, testing::make_test_image(1 << 20));
    certs_ = testing::make_test_certs(dir_.path());
  }

  Cli Run(const std::vector<std::string>& args) { return testing::faultline(dir_, args); }
  // A run that must fail: its output.
  std::string Fails(const std::vector<std::string>& args) {
    const Cli run = Run(args);
    EXPECT_FALSE(run.exit_code == 0) << run.output();
    return run.output();
  }
  std::vector<std::string> Handle(std::vector<std::string> extra) const {
    std::vector<std::string> args = {"handle", "--socket", dir_.file("uffd.sock")};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  std::vector<std::string> TlsServerArgs(std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {
        "--listen", "tcp:127.0.0.1:0", "--mem-file",       mem_file_,   "--ram-start",
        "0",        "--tls-cert",      certs_.server_cert, "--tls-key", certs_.server_key};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  testing::TempDir dir_;
  std::string mem_file_ = dir_.file("snapshot.mem");
  testing::TestCerts certs_;
};

TEST_F(CliMessagesTest, TheHandlersStatsAndStartupLineCarryTheVersion) {
  testing::HandlerProcess handler(FAULTLINE_CLI, dir_.file("uffd.sock"), dir_.file("handler.log"),
                                  {"--mem-file", mem_file_});
  ASSERT_TRUE(handler.started());
  EXPECT_EQ(handler.stats()["version"], FAULTLINE_VERSION_STRING);
  EXPECT_NE(handler.log_text().find("faultline " FAULTLINE_VERSION_STRING ": handling"),
            std::string::npos)
      << handler.log_text();
  const Cli stats = Run({"stats", "--socket", dir_.file("uffd.sock")});
  EXPECT_EQ(stats.json()["version"], FAULTLINE_VERSION_STRING) << stats.output();
}

TEST_F(CliMessagesTest, ATimeoutBeyondADayIsRefusedRatherThanWrappedToAMillisecond) {
  const std::string serve = Fails({"serve-pages", "--listen", "unix:" + dir_.file("p.sock"),
                                   "--mem-file", mem_file_, "--idle-timeout", "1e20"});
  EXPECT_NE(serve.find("--idle-timeout"), std::string::npos) << serve;
  const std::string handle =
      Fails(Handle({"--mem-file", mem_file_, "--handshake-timeout", "1e20"}));
  EXPECT_NE(handle.find("--handshake-timeout"), std::string::npos) << handle;
}

TEST_F(CliMessagesTest, ServePagesStartupLineCarriesTheVersion) {
  testing::ServePagesProcess server(FAULTLINE_CLI, TlsServerArgs(), dir_.file("server.log"));
  EXPECT_NE(server.log_text().find("faultline " FAULTLINE_VERSION_STRING ": serving pages"),
            std::string::npos)
      << server.log_text();
}

TEST_F(CliMessagesTest, ACertificateWithoutItsKeyIsRefusedNamingTheFlags) {
  for (const auto& args :
       {std::vector<std::string>{"serve-pages", "--listen", "tcp:127.0.0.1:0", "--mem-file",
                                 mem_file_, "--ram-start", "0", "--tls-cert", certs_.server_cert},
        Handle({"--page-server", "tcp:127.0.0.1:1", "--tls-ca", certs_.ca_cert, "--tls-cert",
                certs_.client_cert})}) {
    const std::string output = Fails(args);
    // "a TLS server needs --tls-cert and --tls-key", "--tls-cert and --tls-key go together"
    EXPECT_NE(output.find("--tls-cert and --tls-key"), std::string::npos) << output;
    EXPECT_EQ(output.find("_file"), std::string::npos) << output;
  }
}

TEST_F(CliMessagesTest, APlaintextClientOfATlsServerIsToldTheServerExpectsTls) {
  testing::ServePagesProcess server(FAULTLINE_CLI, TlsServerArgs(), dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  const std::string output = Fails(Handle({"--page-server", server.address(), "--plain-tcp"}));
  EXPECT_NE(output.find("the server expects TLS"), std::string::npos) << output;
  EXPECT_NE(output.find("--tls-ca"), std::string::npos) << output;
}

TEST_F(CliMessagesTest, AClientWithoutACertificateIsToldTheServerRequiresOne) {
  testing::ServePagesProcess server(FAULTLINE_CLI, TlsServerArgs({"--tls-ca", certs_.ca_cert}),
                                    dir_.file("server.log"));
  ASSERT_FALSE(server.address().empty());
  const std::string output =
      Fails(Handle({"--page-server", server.address(), "--tls-ca", certs_.ca_cert}));
  EXPECT_NE(output.find("the server requires a client certificate: give --tls-cert and --tls-key"),
            std::string::npos)
      << output;
}

TEST_F(CliMessagesTest, ASocketInAMissingDirectoryIsNamedAsSuch) {
  const std::string missing = dir_.file("no-such-dir");
  std::string output =
      Fails({"handle", "--socket", missing + "/uffd.sock", "--mem-file", mem_file_});
  EXPECT_NE(
      output.find("--socket " + missing + "/uffd.sock: directory " + missing + " does not exist"),
      std::string::npos)
      << output;
  output = Fails({"serve-pages", "--listen", "unix:" + missing + "/pages.sock", "--mem-file",
                  mem_file_, "--ram-start", "0"});
  EXPECT_NE(output.find("directory " + missing + " does not exist"), std::string::npos) << output;
}

TEST_F(CliMessagesTest, AMistypedFlagGetsTheFlagItProbablyMeant) {
  const std::string output = Fails(Handle({"--mem", mem_file_}));
  EXPECT_NE(output.find("did you mean --mem-file?"), std::string::npos) << output;
  const std::string typo =
      Fails({"serve-pages", "--lisen", "unix:x", "--mem-file", mem_file_, "--ram-start", "0"});
  EXPECT_NE(typo.find("did you mean --listen?"), std::string::npos) << typo;
}

TEST_F(CliMessagesTest, FaultAroundTakesASizeWithASuffix) {
  testing::HandlerProcess handler(FAULTLINE_CLI, dir_.file("uffd.sock"), dir_.file("handler.log"),
                                  {"--mem-file", mem_file_, "--fault-around", "256K"});
  EXPECT_TRUE(handler.started()) << handler.log_text();
}

TEST_F(CliMessagesTest, AFaultAroundThatIsNoPowerOfTwoPagesIsRefusedSayingWhy) {
  std::string output = Fails(Handle({"--mem-file", mem_file_, "--fault-around", "5000"}));
  EXPECT_NE(output.find("--fault-around 5000 is not a multiple of the page size (4096)"),
            std::string::npos)
      << output;
  output = Fails(Handle({"--mem-file", mem_file_, "--fault-around", "12K"}));
  EXPECT_NE(output.find("--fault-around 12288 is not a power of two"), std::string::npos) << output;
  output = Fails(Handle({"--mem-file", mem_file_, "--fault-around", "1Q"}));
  EXPECT_NE(output.find("--fault-around"), std::string::npos) << output;
  EXPECT_NE(output.find("unknown size suffix"), std::string::npos) << output;
}

TEST_F(CliMessagesTest, MigrateRefusesATakenListenAddressBeforeItBootsTheGuest) {
  auto address = net::parse_socket_address("tcp:127.0.0.1:0");
  ASSERT_TRUE(address.is_ok());
  auto taken = net::listen_socket(*address);
  ASSERT_TRUE(taken.is_ok()) << taken.status().to_string();
  const std::string output = Fails({"migrate", "--listen", taken->address.to_string(),
                                    "--plain-tcp", "--ram", "32M", "--quiet"});
  EXPECT_NE(output.find("--listen " + taken->address.to_string()), std::string::npos) << output;
  EXPECT_NE(output.find("in use"), std::string::npos) << output;
  EXPECT_EQ(output.find("guest:"), std::string::npos) << "the guest was booted first:\n" << output;
}

}  // namespace
}  // namespace faultline
