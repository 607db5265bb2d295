// Address parsing and socket helpers shared by every vrelay process.
#include "net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace vrelay {

uint16_t Endpoint::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

void Endpoint::set_port(uint16_t port) {
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

std::string Endpoint::host() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf, sizeof buf);
  else if (family() == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf, sizeof buf);
  return buf;
}

std::string Endpoint::to_string() const {
  if (family() == AF_INET6) return "[" + host() + "]:" + std::to_string(port());
  return host() + ":" + std::to_string(port());
}

bool Endpoint::is_wildcard() const {
  if (family() == AF_INET) return reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr == htonl(INADDR_ANY);
  if (family() == AF_INET6) return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
  return false;
}

bool Endpoint::is_multicast() const {
  if (family() == AF_INET) return IN_MULTICAST(ntohl(reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr));
  if (family() == AF_INET6) return IN6_IS_ADDR_MULTICAST(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
  return false;
}

Endpoint Endpoint::from_sockaddr(const sockaddr* sa, socklen_t len) {
  Endpoint ep;
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      sockaddr_in in{};
      in.sin_family = AF_INET;
      in.sin_port = in6->sin6_port;
      std::memcpy(&in.sin_addr, in6->sin6_addr.s6_addr + 12, 4);
      std::memcpy(&ep.storage, &in, sizeof in);
      ep.length = sizeof in;
      return ep;
    }
  }
  len = std::min<socklen_t>(len, sizeof ep.storage);
  std::memcpy(&ep.storage, sa, len);
  ep.length = len;
  return ep;
}

std::optional<uint16_t> parse_port(std::string_view text, uint16_t lo, uint16_t hi) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + uint32_t(c - '0');
  }
  if (value < lo || value > hi) return std::nullopt;
  return uint16_t(value);
}

namespace {

// A numeric IPv4 or IPv6 host and a port; nullopt if the host is neither.
std::optional<Endpoint> numeric_endpoint(const std::string& host, uint16_t port) {
  Endpoint ep;
  sockaddr_in in{};
  sockaddr_in6 in6{};
  if (inet_pton(AF_INET, host.c_str(), &in.sin_addr) == 1) {
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    std::memcpy(&ep.storage, &in, sizeof in);
    ep.length = sizeof in;
  } else if (inet_pton(AF_INET6, host.c_str(), &in6.sin6_addr) == 1) {
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    std::memcpy(&ep.storage, &in6, sizeof in6);
    ep.length = sizeof in6;
  } else {
    return std::nullopt;
  }
  return ep;
}

}  // namespace

Result<Endpoint> parse_endpoint(std::string_view text) {
  auto fail = [&](const std::string& why) { return Failure{"bad address '" + std::string(text) + "': " + why}; };
  // inet_pton reads up to a NUL: "1.2.3.4\0junk:80" must not pass as 1.2.3.4:80.
  if (text.find('\0') != std::string_view::npos) return fail("it contains a NUL byte");
  std::string host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return fail("expected [IPv6]:PORT");
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("expected HOST:PORT");
    host = std::string(text.substr(0, colon));
    if (host.find(':') != std::string::npos) return fail("write an IPv6 address as [ADDR]:PORT");
    port_text = text.substr(colon + 1);
  }
  if (host == "localhost") host = "127.0.0.1";
  auto port = parse_port(port_text, 0, 65535);
  if (!port) return fail("port must be a number from 0 to 65535");
  auto ep = numeric_endpoint(host, *port);
  if (!ep) return fail("host must be a numeric IPv4 or IPv6 address");
  return *ep;
}

Result<Endpoint> parse_address(std::string_view text) {
  if (text.find('\0') == std::string_view::npos)
    if (auto ep = numeric_endpoint(std::string(text), 0)) return *ep;
  return Failure{"bad address '" + std::string(text) + "': expected a numeric IPv4 or IPv6 address"};
}

Result<Cidr> parse_cidr(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return Failure{"bad network: it contains a NUL byte"};
  Cidr c;
  std::string addr(text);
  int max_prefix = 32;
  std::string prefix_text;
  if (auto slash = addr.find('/'); slash != std::string::npos) {
    prefix_text = addr.substr(slash + 1);
    addr.resize(slash);
  }
  if (inet_pton(AF_INET, addr.c_str(), c.bytes) == 1) {
    c.family = AF_INET;
  } else if (inet_pton(AF_INET6, addr.c_str(), c.bytes) == 1) {
    c.family = AF_INET6;
    max_prefix = 128;
  } else {
    return Failure{"bad network '" + std::string(text) + "': expected ADDRESS[/PREFIX]"};
  }
  c.prefix = max_prefix;
  if (!prefix_text.empty() || text.find('/') != std::string_view::npos) {
    auto p = parse_port(prefix_text, 0, uint16_t(max_prefix));
    if (!p) return Failure{"bad prefix length in '" + std::string(text) + "'"};
    c.prefix = *p;
  }
  return c;
}

bool Cidr::contains(const Endpoint& ep) const {
  const uint8_t* a = nullptr;
  if (ep.family() != family) return false;
  if (family == AF_INET)
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&ep.storage)->sin_addr);
  else
    a = reinterpret_cast<const sockaddr_in6*>(&ep.storage)->sin6_addr.s6_addr;
  int full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(a, bytes, size_t(full)) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = uint8_t(0xFF << (8 - rest));
  return (a[full] & mask) == (bytes[full] & mask);
}

std::string Cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  inet_ntop(family, bytes, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

bool allowed(const std::vector<Cidr>& list, const Endpoint& ep) {
  for (const auto& c : list)
    if (c.contains(ep)) return true;
  return false;
}

bool try_option(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value) == 0;
}

void set_option(int fd, int level, int name, int value, const char* what) {
  if (!try_option(fd, level, name, value))
    throw std::runtime_error(std::string("cannot set ") + what + ": " + std::strerror(errno));
}

void set_nonblocking(int fd, const char* what) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    throw std::runtime_error(std::string("cannot make ") + what + " non-blocking: " + std::strerror(errno));
}

int bind_socket(const Endpoint& ep, int type) {
  int fd = socket(ep.family(), type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket(" + ep.to_string() + "): " + std::strerror(errno));
  try {
    if (type == SOCK_STREAM) set_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    if (ep.family() == AF_INET6) set_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY");  // [::] serves IPv4 too
  } catch (...) {
    close(fd);
    throw;
  }
  if (bind(fd, ep.addr(), ep.length) != 0) {
    int e = errno;
    close(fd);
    throw std::runtime_error("cannot bind " + ep.to_string() + ": " + std::strerror(e));
  }
  return fd;
}

Endpoint local_endpoint(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

Result<HostPort> split_host_port(std::string_view spec, const char* default_port) {
  auto fail = [&](const std::string& why) { return Failure{"'" + std::string(spec) + "': " + why}; };
  std::string_view h, p;
  bool has_port = true;
  if (!spec.empty() && spec.front() == '[') {  // [V6]:PORT or [V6]
    size_t close = spec.find(']');
    if (close == std::string_view::npos) return fail("missing ']'");
    h = spec.substr(1, close - 1);
    std::string_view after = spec.substr(close + 1);
    if (after.empty()) has_port = false;
    else if (after.front() == ':') p = after.substr(1);
    else return fail("expected ':PORT' after ']'");
  } else {
    size_t colon = spec.find(':');
    if (colon == std::string_view::npos || spec.find(':', colon + 1) != std::string_view::npos) {
      h = spec;  // a name, an IPv4 address or a bare IPv6 address: no port
      has_port = false;
    } else {
      h = spec.substr(0, colon);
      p = spec.substr(colon + 1);
    }
  }
  if (!has_port && !default_port) return fail("expected HOST:PORT (an IPv6 address in brackets)");
  if (h.empty()) return fail("missing host");
  if (has_port && !parse_port(p, 1, 65535)) return fail("the port must be a number from 1 to 65535");
  return HostPort{std::string(h), has_port ? std::string(p) : default_port};
}

Result<Endpoint> resolve_endpoint(std::string_view text) {
  auto hp = split_host_port(text);
  if (!hp) return Failure{hp.error()};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  int rc = getaddrinfo(hp->host.c_str(), hp->port.c_str(), &hints, &list);
  if (rc != 0) return Failure{"cannot resolve '" + hp->host + "': " + gai_strerror(rc)};
  Endpoint ep = Endpoint::from_sockaddr(list->ai_addr, list->ai_addrlen);
  freeaddrinfo(list);
  return ep;
}

Result<int> connect_tcp(const std::string& host, const std::string& port, double timeout_s, int interrupt_fd,
                        bool* interrupted, const Endpoint* from) {
  if (interrupted) *interrupted = false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &list);
  if (rc != 0) return Failure{"cannot resolve '" + host + "': " + gai_strerror(rc)};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  std::string last = "no address";
  int fd = -1;
  for (addrinfo* ai = list; ai && fd < 0; ai = ai->ai_next) {
    if (from && from->family() != ai->ai_family) {
      last = "no address of the family of " + from->host();
      continue;
    }
    int s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0) {
      last = strerror(errno);
      continue;
    }
    if (from && ::bind(s, from->addr(), from->length) != 0) {
      last = "cannot bind to " + from->to_string() + ": " + strerror(errno);
      ::close(s);
      continue;
    }
    if (::connect(s, ai->ai_addr, ai->ai_addrlen) == 0) {
      fd = s;
      break;
    }
    if (errno != EINPROGRESS) {
      last = strerror(errno);
      ::close(s);
      continue;
    }
    pollfd waits[2] = {{s, POLLOUT, 0}, {interrupt_fd, POLLIN, 0}};
    int n;
    do {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      n = poll(waits, interrupt_fd >= 0 ? 2 : 1, left.count() > 0 ? int(left.count()) + 1 : 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0 && interrupt_fd >= 0 && (waits[1].revents & POLLIN)) {
      last = "interrupted";
      if (interrupted) *interrupted = true;
      ::close(s);
      break;
    }
    if (n == 0) {
      char text[64];
      snprintf(text, sizeof text, "no answer within %g s", timeout_s);
      last = text;
      ::close(s);
      break;  // the deadline covers every address
    }
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (n < 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0) so_error = errno;
    if (so_error != 0) {
      last = strerror(so_error);
      ::close(s);
      continue;
    }
    fd = s;
  }
  freeaddrinfo(list);
  if (fd < 0) return Failure{last};
  return fd;
}

// ---- multicast ingest

Status check_interface_spec(std::string_view spec) {
  if (parse_address(spec)) return {};
  // What the kernel takes as a device name (dev_valid_name), control bytes excluded too.
  bool ok = !spec.empty() && spec.size() < IFNAMSIZ && spec != "." && spec != "..";
  for (char ch : spec) ok = ok && ch != '/' && ch != ':' && static_cast<unsigned char>(ch) > ' ' && ch != 0x7f;
  if (!ok) return Failure{"expected an interface name (e.g. eth0) or one of its addresses, got '" + std::string(spec) + "'"};
  return {};
}

namespace {

Result<Interface> interface_with_address(const Endpoint& address) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return Failure{std::string("cannot list the network interfaces: ") + std::strerror(errno)};
  std::optional<std::string> name;
  for (ifaddrs* entry = list; entry && !name; entry = entry->ifa_next) {
    const sockaddr* sa = entry->ifa_addr;
    if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) continue;
    socklen_t length = sa->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (sa->sa_family == address.family() && Endpoint::from_sockaddr(sa, length).host() == address.host())
      name = entry->ifa_name;
  }
  freeifaddrs(list);
  if (!name) return Failure{"no network interface has the address " + address.host()};
  unsigned index = if_nametoindex(name->c_str());
  if (index == 0) return Failure{"the interface " + *name + " of " + address.host() + " is gone: " + std::strerror(errno)};
  return Interface{index, *name};
}

}  // namespace

Result<Interface> find_interface(const std::string& spec) {
  if (Status valid = check_interface_spec(spec); !valid) return Failure{valid.error()};
  if (auto address = parse_address(spec)) return interface_with_address(*address);
  unsigned index = if_nametoindex(spec.c_str());
  if (index == 0) return Failure{"no network interface is named '" + spec + "'"};
  return Interface{index, spec};
}

namespace {

// The socket options of a multicast ingest socket, before its bind.
Status prepare_multicast(int fd, const Endpoint& group) {
  auto failed = [](const char* what) { return Failure{std::string("cannot set ") + what + ": " + std::strerror(errno)}; };
  if (!try_option(fd, SOL_SOCKET, SO_REUSEADDR, 1)) return failed("SO_REUSEADDR");
  // Without this, Linux hands the socket the datagrams of every group any socket of the
  // host joined on its port (the bind to the group's address filters them too).
  if (group.family() == AF_INET) {
    if (!try_option(fd, IPPROTO_IP, IP_MULTICAST_ALL, 0)) return failed("IP_MULTICAST_ALL");
  } else {
    if (!try_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1)) return failed("IPV6_V6ONLY");
    if (!try_option(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)) return failed("IPV6_MULTICAST_ALL");
  }
  return {};
}

// The group's address as bind() takes it: an interface- or link-local IPv6 group needs
// its interface (the scope), others must not have one.
Endpoint bind_address(const Endpoint& group, unsigned interface_index) {
  Endpoint local = group;
  if (group.family() == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&local.storage);
    bool scoped = IN6_IS_ADDR_MC_LINKLOCAL(&in6->sin6_addr) || IN6_IS_ADDR_MC_NODELOCAL(&in6->sin6_addr);
    in6->sin6_scope_id = scoped ? interface_index : 0;
  }
  return local;
}

Status join(int fd, const Endpoint& group, unsigned interface_index, const std::optional<Endpoint>& source) {
  int level = group.family() == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
  int rc;
  if (source) {
    group_source_req request{};
    request.gsr_interface = interface_index;
    std::memcpy(&request.gsr_group, &group.storage, group.length);
    std::memcpy(&request.gsr_source, &source->storage, source->length);
    rc = setsockopt(fd, level, MCAST_JOIN_SOURCE_GROUP, &request, sizeof request);
  } else {
    group_req request{};
    request.gr_interface = interface_index;
    std::memcpy(&request.gr_group, &group.storage, group.length);
    rc = setsockopt(fd, level, MCAST_JOIN_GROUP, &request, sizeof request);
  }
  if (rc == 0) return {};
  int error = errno;
  return Failure{"cannot join " + group.host() + (source ? " (source " + source->host() + ")" : "") +
                 " on interface index " + std::to_string(interface_index) + ": " + std::strerror(error)};
}

}  // namespace

Result<int> bind_multicast(const Endpoint& group, unsigned interface_index, const std::optional<Endpoint>& source) {
  if (!group.is_multicast()) return Failure{group.to_string() + " is not a multicast group"};
  if (source && source->family() != group.family())
    return Failure{"the source " + source->host() + " and the group " + group.host() + " are not of one family"};
  int fd = socket(group.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Failure{"socket(" + group.to_string() + "): " + std::strerror(errno)};
  Status done = prepare_multicast(fd, group);
  Endpoint local = bind_address(group, interface_index);
  if (done && bind(fd, local.addr(), local.length) != 0) {
    int error = errno;
    done = Failure{"cannot bind " + group.to_string() + ": " + std::strerror(error)};
  }
  if (done) done = join(fd, group, interface_index, source);
  if (!done) {
    close(fd);
    return Failure{done.error()};
  }
  return fd;
}

}  // namespace vrelay
