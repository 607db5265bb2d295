// Unit tests of address parsing and allow-lists.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "net.hpp"

using namespace vrelay;

namespace {

TEST(Endpoint, ParsesV4AndV6) {
  std::string error;
  EXPECT_EQ(parse_endpoint("127.0.0.1:7700", &error)->to_string(), "127.0.0.1:7700");
  EXPECT_EQ(parse_endpoint("[::1]:0", &error)->to_string(), "[::1]:0");
  EXPECT_EQ(parse_endpoint("localhost:1", &error)->to_string(), "127.0.0.1:1");
  for (auto bad : {"127.0.0.1", ":7700", "127.0.0.1:", "::1:7700", "[::1]7700", "host.example:80", "1.2.3.4:-1",
                   "1.2.3.4:65536", "1.2.3.4:0x10"}) {
    EXPECT_FALSE(parse_endpoint(bad, &error)) << bad;
    EXPECT_NE(error.find(bad), std::string::npos) << error;
  }
}

// Found by the address fuzz target: inet_pton stopped at the NUL.
TEST(Endpoint, AnEmbeddedNulIsRefused) {
  std::string error;
  EXPECT_FALSE(parse_endpoint(std::string_view("1.2.3.4\0junk:80", 15), &error));
  EXPECT_NE(error.find("NUL"), std::string::npos) << error;
  EXPECT_FALSE(parse_cidr(std::string_view("10.0.0.0\0/8", 11), &error));
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
  std::string error;
  std::vector<Cidr> list = {*parse_cidr("127.0.0.0/8", &error), *parse_cidr("192.168.1.0/25", &error),
                            *parse_cidr("::1", &error)};
  auto ep = [&](const char* s) { return *parse_endpoint(s, &error); };
  EXPECT_TRUE(allowed(list, ep("127.5.6.7:1")));
  EXPECT_TRUE(allowed(list, ep("192.168.1.127:1")));
  EXPECT_FALSE(allowed(list, ep("192.168.1.128:1")));
  EXPECT_FALSE(allowed(list, ep("10.0.0.1:1")));
  EXPECT_TRUE(allowed(list, ep("[::1]:1")));
  EXPECT_FALSE(allowed(list, ep("[::2]:1")));
  EXPECT_TRUE(parse_cidr("0.0.0.0/0", &error)->contains(ep("8.8.8.8:53")));
  EXPECT_FALSE(parse_cidr("1.2.3.4/", &error));
  EXPECT_FALSE(parse_cidr("1.2.3.4/40", &error));
  EXPECT_FALSE(parse_cidr("nonsense", &error));
}

}  // namespace
