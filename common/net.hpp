// Addresses for every vrelay process: HOST:PORT parsing, CIDR allow-lists, socket helpers.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "result.hpp"

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
  bool is_wildcard() const;       // 0.0.0.0 or :: (any address of the host)

  // A multicast group: IPv4 224.0.0.0/4 or IPv6 ff00::/8.
  bool is_multicast() const;

  static Endpoint from_sockaddr(const sockaddr* sa, socklen_t len);
  bool operator==(const Endpoint& other) const { return to_string() == other.to_string(); }
};

// Parses "HOST:PORT", "[V6]:PORT" with a numeric host; port 0..65535 ("0" = any free port).
Result<Endpoint> parse_endpoint(std::string_view text);

// A numeric IPv4 or IPv6 address without a port ("10.0.0.1", "2001:db8::1"): port 0.
Result<Endpoint> parse_address(std::string_view text);

// A port as the protocol accepts it: 1..5 decimal digits, no sign, within [lo, hi].
std::optional<uint16_t> parse_port(std::string_view text, uint16_t lo, uint16_t hi);

// "HOST:PORT" or "[V6]:PORT" with HOST a name or a numeric address: the first address it
// resolves to (numeric ones without asking DNS).
Result<Endpoint> resolve_endpoint(std::string_view text);

// "A.B.C.D/N", "V6/N", or a bare address (a /32 or /128).
struct Cidr {
  int family = AF_INET;
  uint8_t bytes[16]{};
  int prefix = 0;
  bool contains(const Endpoint& ep) const;
  std::string to_string() const;
  bool operator==(const Cidr&) const = default;
};
Result<Cidr> parse_cidr(std::string_view text);
bool allowed(const std::vector<Cidr>& list, const Endpoint& ep);

// "HOST:PORT" or "[V6]:PORT" (HOST a name or a numeric address, PORT 1..65535) -> host and
// port. With a default_port, "HOST", "[V6]" and a bare IPv6 address are accepted too.
struct HostPort {
  std::string host, port;  // the host without brackets; the port as digits
};
Result<HostPort> split_host_port(std::string_view spec, const char* default_port = nullptr);

// Connects a TCP socket (non-blocking, close-on-exec) to the first address of host:port
// that answers, within timeout_s in all, and returns it (the caller closes it). When
// `interrupt_fd`, if given, becomes readable first, it fails with "interrupted" and sets
// *interrupted (if given; it is cleared otherwise). With `from` (its port 0 = any), the
// socket is bound to that address before it connects, and only addresses of its family
// are tried.
Result<int> connect_tcp(const std::string& host, const std::string& port, double timeout_s, int interrupt_fd = -1,
                        bool* interrupted = nullptr, const Endpoint* from = nullptr);

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

// ---- multicast ingest

// A network interface as the configuration names it: its name ("eth0") or one of its
// addresses. check_interface_spec only reads the text (the configuration may be checked on
// another host); find_interface looks the interface up on this one.
Status check_interface_spec(std::string_view spec);
struct Interface {
  unsigned index = 0;
  std::string name;  // "eth0", also when it was found by an address
};
Result<Interface> find_interface(const std::string& spec);

// A UDP socket bound to a multicast group's address and port (it hears that group only),
// a member of the group on one interface: any-source (MCAST_JOIN_GROUP), or with `source`
// only that sender (MCAST_JOIN_SOURCE_GROUP, source-specific multicast). SO_REUSEADDR, so
// that several sockets of the host can join the same group and port. Close-on-exec,
// blocking; the caller closes it.
Result<int> bind_multicast(const Endpoint& group, unsigned interface_index, const std::optional<Endpoint>& source);

}  // namespace vrelay
