// Unit tests of address parsing and allow-lists.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "net.hpp"

using namespace vrelay;

namespace {

TEST(Endpoint, ParsesV4AndV6) {
  EXPECT_EQ(parse_endpoint("127.0.0.1:7700")->to_string(), "127.0.0.1:7700");
  EXPECT_EQ(parse_endpoint("[::1]:0")->to_string(), "[::1]:0");
  EXPECT_EQ(parse_endpoint("localhost:1")->to_string(), "127.0.0.1:1");
  for (auto bad : {"127.0.0.1", ":7700", "127.0.0.1:", "::1:7700", "[::1]7700", "host.example:80", "1.2.3.4:-1",
                   "1.2.3.4:65536", "1.2.3.4:0x10"}) {
    auto ep = parse_endpoint(bad);
    ASSERT_FALSE(ep) << bad;
    EXPECT_NE(ep.error().find(bad), std::string::npos) << ep.error();
  }
  EXPECT_EQ(parse_endpoint("1.2.3.4").error(), "bad address '1.2.3.4': expected HOST:PORT");
}

// Found by the address fuzz target: inet_pton stopped at the NUL.
TEST(Endpoint, AnEmbeddedNulIsRefused) {
  auto ep = parse_endpoint(std::string_view("1.2.3.4\0junk:80", 15));
  ASSERT_FALSE(ep);
  EXPECT_NE(ep.error().find("NUL"), std::string::npos) << ep.error();
  auto net = parse_cidr(std::string_view("10.0.0.0\0/8", 11));
  ASSERT_FALSE(net);
  EXPECT_EQ(net.error(), "bad network: it contains a NUL byte");
}

TEST(Endpoint, FoldsV4MappedV6ToV4) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(9);
  inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr);
  Endpoint ep = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&in6), sizeof in6);
  EXPECT_EQ(ep.family(), AF_INET);
  EXPECT_EQ(ep.to_string(), "10.1.2.3:9");
}

TEST(Cidr, Matches) {
  std::vector<Cidr> list = {*parse_cidr("127.0.0.0/8"), *parse_cidr("192.168.1.0/25"), *parse_cidr("::1")};
  auto ep = [&](const char* s) { return *parse_endpoint(s); };
  EXPECT_TRUE(allowed(list, ep("127.5.6.7:1")));
  EXPECT_TRUE(allowed(list, ep("192.168.1.127:1")));
  EXPECT_FALSE(allowed(list, ep("192.168.1.128:1")));
  EXPECT_FALSE(allowed(list, ep("10.0.0.1:1")));
  EXPECT_TRUE(allowed(list, ep("[::1]:1")));
  EXPECT_FALSE(allowed(list, ep("[::2]:1")));
  EXPECT_TRUE(parse_cidr("0.0.0.0/0")->contains(ep("8.8.8.8:53")));
  EXPECT_FALSE(parse_cidr("1.2.3.4/"));
  EXPECT_EQ(parse_cidr("1.2.3.4/40").error(), "bad prefix length in '1.2.3.4/40'");
  EXPECT_EQ(parse_cidr("nonsense").error(), "bad network 'nonsense': expected ADDRESS[/PREFIX]");
}

TEST(HostPort, SplitsNamesAndAddresses) {
  auto hp = split_host_port("relay.example:7701");
  ASSERT_TRUE(hp) << hp.error();
  EXPECT_EQ(hp->host, "relay.example");
  EXPECT_EQ(hp->port, "7701");
  hp = split_host_port("[::1]:7702");
  ASSERT_TRUE(hp) << hp.error();
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, "7702");
  hp = split_host_port("::1", "7700");
  ASSERT_TRUE(hp) << hp.error();
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, "7700");
  EXPECT_EQ(split_host_port("::1").error(), "'::1': expected HOST:PORT (an IPv6 address in brackets)");
  EXPECT_EQ(split_host_port("h:0").error(), "'h:0': the port must be a number from 1 to 65535");
  EXPECT_EQ(split_host_port("[::1").error(), "'[::1': missing ']'");
}

TEST(ConnectTcp, ARefusedConnectionSaysWhy) {
  // A port bound but not listening refuses.
  int fd = bind_socket(*parse_endpoint("127.0.0.1:0"), SOCK_STREAM);
  std::string port = std::to_string(local_endpoint(fd).port());
  bool interrupted = true;
  auto connected = connect_tcp("127.0.0.1", port, 5, -1, &interrupted);
  close(fd);
  ASSERT_FALSE(connected);
  EXPECT_EQ(connected.error(), strerror(ECONNREFUSED));
  EXPECT_FALSE(interrupted);
}

// ingest.upstream: the session leaves from the ingest's own address, so the upstream sends
// the stream there.
TEST(ConnectTcp, LeavesFromTheGivenAddress) {
  int listener = bind_socket(*parse_endpoint("127.0.0.1:0"), SOCK_STREAM);
  ASSERT_EQ(listen(listener, 1), 0);
  std::string port = std::to_string(local_endpoint(listener).port());
  Endpoint from = *parse_endpoint("127.0.0.2:0");
  auto connected = connect_tcp("127.0.0.1", port, 5, -1, nullptr, &from);
  ASSERT_TRUE(connected) << connected.error();
  int accepted = accept(listener, nullptr, nullptr);
  ASSERT_GE(accepted, 0);
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  ASSERT_EQ(getpeername(accepted, reinterpret_cast<sockaddr*>(&peer), &length), 0);
  EXPECT_EQ(Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&peer), length).host(), "127.0.0.2");
  close(accepted);
  close(*connected);

  Endpoint v6 = *parse_endpoint("[::1]:0");  // no IPv4 address of that family to try
  auto refused = connect_tcp("127.0.0.1", port, 5, -1, nullptr, &v6);
  close(listener);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), "no address of the family of ::1");
}

TEST(Endpoint, TellsAWildcard) {
  EXPECT_TRUE(parse_endpoint("0.0.0.0:7700")->is_wildcard());
  EXPECT_TRUE(parse_endpoint("[::]:7700")->is_wildcard());
  EXPECT_FALSE(parse_endpoint("127.0.0.1:7700")->is_wildcard());
  EXPECT_FALSE(parse_endpoint("[::1]:7700")->is_wildcard());
}

TEST(Endpoint, KnowsMulticastGroups) {
  for (auto group : {"224.0.0.1:1", "239.255.12.42:5500", "239.255.255.255:1", "[ff02::1]:1", "[ff15::1234]:5500"})
    EXPECT_TRUE(parse_endpoint(group)->is_multicast()) << group;
  for (auto unicast : {"223.255.255.255:1", "240.0.0.1:1", "127.0.0.1:1", "0.0.0.0:1", "[::1]:1", "[fe80::1]:1", "[::]:1"})
    EXPECT_FALSE(parse_endpoint(unicast)->is_multicast()) << unicast;
}

TEST(Address, ParsesANumericAddressWithoutPort) {
  auto v4 = parse_address("10.0.0.1");
  ASSERT_TRUE(v4) << v4.error();
  EXPECT_EQ(v4->to_string(), "10.0.0.1:0");
  auto v6 = parse_address("2001:db8::10");
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(v6->family(), AF_INET6);
  EXPECT_EQ(v6->host(), "2001:db8::10");
  for (auto bad : {"", "10.0.0.1:5", "[::1]", "host.example", "10.0.0"}) {
    auto address = parse_address(bad);
    ASSERT_FALSE(address) << bad;
    EXPECT_EQ(address.error(), "bad address '" + std::string(bad) + "': expected a numeric IPv4 or IPv6 address");
  }
  EXPECT_FALSE(parse_address(std::string_view("10.0.0.1\0x", 10)));
}

TEST(Interface, NamesAndAddressesAreCheckedAsText) {
  for (auto good : {"eth0", "enp0s31f6", "br-lan.42", "abcdefghijklmno", "10.0.0.1", "fe80::1", "2001:db8::10"})
    EXPECT_TRUE(check_interface_spec(good)) << good;
  for (auto bad : {"", "eth0:1", "a/b", "has space", "abcdefghijklmnop", ".", "..", "tab\there"}) {
    Status checked = check_interface_spec(bad);
    ASSERT_FALSE(checked) << bad;
    EXPECT_EQ(checked.error(), "expected an interface name (e.g. eth0) or one of its addresses, got '" + std::string(bad) + "'");
  }
}

// Looked up on this host: the loopback interface exists in every network namespace.
TEST(Interface, IsFoundByNameOrByAddress) {
  auto by_name = find_interface("lo");
  ASSERT_TRUE(by_name) << by_name.error();
  EXPECT_GT(by_name->index, 0u);
  EXPECT_EQ(by_name->name, "lo");
  auto by_address = find_interface("127.0.0.1");
  ASSERT_TRUE(by_address) << by_address.error();
  EXPECT_EQ(by_address->index, by_name->index);
  EXPECT_EQ(by_address->name, "lo");
  EXPECT_EQ(find_interface("nope0").error(), "no network interface is named 'nope0'");
  EXPECT_EQ(find_interface("192.0.2.77").error(), "no network interface has the address 192.0.2.77");
  EXPECT_EQ(find_interface("a/b").error(), "expected an interface name (e.g. eth0) or one of its addresses, got 'a/b'");
}

// What is refused before any socket joins anything (joining is tested in a network
// namespace: test/integration/netns_test.cpp).
TEST(Multicast, RefusesAUnicastGroupAndASourceOfTheOtherFamily) {
  auto unicast = bind_multicast(*parse_endpoint("127.0.0.1:5500"), 1, std::nullopt);
  ASSERT_FALSE(unicast);
  EXPECT_EQ(unicast.error(), "127.0.0.1:5500 is not a multicast group");
  auto mixed = bind_multicast(*parse_endpoint("239.255.12.42:5500"), 1, *parse_address("2001:db8::1"));
  ASSERT_FALSE(mixed);
  EXPECT_EQ(mixed.error(), "the source 2001:db8::1 and the group 239.255.12.42 are not of one family");
}

}  // namespace
