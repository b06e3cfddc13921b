#include "support/firecracker_client.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "os_linux/uffd.h"

namespace faultline::testing {
namespace {

Result<UniqueFd> connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return io_error("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return io_error("connect " + path, errno);
  }
  return fd;
}

Status send_with_fd(int connection, std::string_view bytes, int fd) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n = ::sendmsg(connection, &msg, MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(bytes.size())) return io_error("sendmsg", errno);
  return Status::ok();
}

}  // namespace

FirecrackerClient::FirecrackerClient(FirecrackerOptions options) : options_(std::move(options)) {
  const uint64_t page = options_.huge_pages ? (2ull << 20) : options_.page_size;
  // Regions are laid out with a gap of one page between them, like a VM whose
  // RAM is split around an MMIO hole.
  uint64_t reservation_size = page;
  for (const auto& r : options_.regions) reservation_size += r.size + page;
  auto reservation = AnonymousMemory::map(reservation_size, "guest address space",
                                          {.reserve_only = true, .no_reserve = true});
  if (!reservation.is_ok()) {
    setup_ = reservation.status();
    return;
  }
  reservation_ = std::move(reservation).value();
  uint64_t cursor = (page - reinterpret_cast<uint64_t>(reservation_.data()) % page) % page;
  const AnonymousMemoryOptions region_options{
      .no_reserve = true,
      .pages = options_.huge_pages ? PageBacking::kHugeTlb2M : PageBacking::kSmallPages};
  for (const auto& r : options_.regions) {
    auto at = reservation_.map_within(
        cursor, r.size, options_.huge_pages ? "guest memory on huge pages" : "guest memory",
        region_options);
    if (!at.is_ok()) {
      setup_ = at.status();
      return;
    }
    regions_.push_back(at->data());
    cursor += r.size + page;
  }
  uint64_t features = options_.uffd_features;
  if (options_.huge_pages) features |= UFFD_FEATURE_MISSING_HUGETLBFS;
  auto uffd = linux_uffd::open(features);
  if (!uffd.is_ok()) {
    setup_ = uffd.status();
    return;
  }
  uffd_ = std::move(uffd).value();
  for (size_t i = 0; i < regions_.size(); ++i) {
    auto registered = linux_uffd::register_missing(uffd_.get(), regions_[i], region_size(i));
    if (!registered.is_ok()) {
      setup_ = registered.status();
      return;
    }
  }
}

FirecrackerClient::~FirecrackerClient() {
  exit_vm();
}

void FirecrackerClient::exit_vm() {
  connection_.reset();
  uffd_.reset();
  reservation_ = {};
}

std::string FirecrackerClient::mappings_json() const {
  const uint64_t page = options_.huge_pages ? (2ull << 20) : options_.page_size;
  nlohmann::json mappings = nlohmann::json::array();
  for (size_t i = 0; i < regions_.size(); ++i) {
    nlohmann::json m = {{"base_host_virt_addr", reinterpret_cast<uint64_t>(regions_[i])},
                        {"size", region_size(i)},
                        {"offset", region_offset(i)}};
    if (options_.page_size_field == PageSizeField::kBoth) m["page_size"] = page;
    if (options_.page_size_field != PageSizeField::kNone) m["page_size_kib"] = page;  // bytes!
    mappings.push_back(m);
  }
  return mappings.dump();
}

Status FirecrackerClient::connect_and_send(const std::string& socket_path) {
  if (!setup_.is_ok()) return setup_;
  auto connection = connect_unix(socket_path);
  if (!connection.is_ok()) return connection.status();
  connection_ = std::move(connection).value();
  return send_with_fd(connection_.get(), mappings_json(), uffd_.get());
}

Result<UniqueFd> send_handshake(const std::string& socket_path, std::string_view bytes, int fd) {
  auto connection = connect_unix(socket_path);
  if (!connection.is_ok()) return connection.status();
  Status sent = send_with_fd(connection->get(), bytes, fd);
  if (!sent.is_ok()) return sent;
  return connection;
}

bool send_and_expect_hang_up(const std::string& socket_path, std::string_view bytes, int fd,
                             bool close_after_sending) {
  auto connection = send_handshake(socket_path, bytes, fd);
  if (!connection.is_ok()) return false;
  if (close_after_sending) {
    ::shutdown(connection->get(), SHUT_WR);
  }
  pollfd pfd{connection->get(), POLLIN, 0};
  while (::poll(&pfd, 1, 10000) > 0) {
    char c;
    ssize_t n = ::read(connection->get(), &c, 1);
    if (n <= 0) return true;  // closed by the handler
  }
  return false;
}

}  // namespace faultline::testing
