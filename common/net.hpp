// Addresses for every vrelay process: HOST:PORT parsing, CIDR allow-lists, socket helpers.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vrelay {

// An IPv4 or IPv6 socket address. IPv4-mapped IPv6 addresses are folded to IPv4.
struct Endpoint {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&storage); }
  std::string host() const;       // "127.0.0.1" or "::1"
  std::string to_string() const;  // "127.0.0.1:7700" or "[::1]:7700"

  static Endpoint from_sockaddr(const sockaddr* sa, socklen_t len);
  bool operator==(const Endpoint& other) const { return to_string() == other.to_string(); }
};

// Parses "HOST:PORT", "[V6]:PORT" with a numeric host; port 0..65535 ("0" = any free port).
// Returns nullopt and sets *error on bad input.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error);

// A port as the protocol accepts it: 1..5 decimal digits, no sign, within [lo, hi].
std::optional<uint16_t> parse_port(std::string_view text, uint16_t lo, uint16_t hi);

// "A.B.C.D/N", "V6/N", or a bare address (a /32 or /128).
struct Cidr {
  int family = AF_INET;
  uint8_t bytes[16]{};
  int prefix = 0;
  bool contains(const Endpoint& ep) const;
  std::string to_string() const;
  bool operator==(const Cidr&) const = default;
};
std::optional<Cidr> parse_cidr(std::string_view text, std::string* error);
bool allowed(const std::vector<Cidr>& list, const Endpoint& ep);

// "HOST:PORT" or "[V6]:PORT" (HOST a name or a numeric address, PORT 1..65535) -> host and
// port. With a default_port, "HOST", "[V6]" and a bare IPv6 address are accepted too.
bool split_host_port(std::string_view spec, std::string* host, std::string* port, std::string* error,
                     const char* default_port = nullptr);

// Connects a TCP socket (non-blocking, close-on-exec) to the first address of host:port
// that answers, within timeout_s in all. Returns it, or -1 with *error set (the reason;
// "interrupted" when `interrupt_fd`, if given, became readable first).
int connect_tcp(const std::string& host, const std::string& port, double timeout_s, std::string* error,
                int interrupt_fd = -1);

// A bound socket (SO_REUSEADDR for TCP). Throws std::runtime_error naming the address.
int bind_socket(const Endpoint& ep, int type);
// Socket options and flags, checked. set_option and set_nonblocking throw
// std::runtime_error naming what failed (for what the relay cannot run without);
// try_option returns false with errno set (for what it can do without, said by the caller).
void set_option(int fd, int level, int name, int value, const char* what);
bool try_option(int fd, int level, int name, int value);
void set_nonblocking(int fd, const char* what);
// The address a socket is bound to (resolves port 0).
Endpoint local_endpoint(int fd);

}  // namespace vrelay
