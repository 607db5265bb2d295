// Unit tests of the configuration loader: defaults, every key, and errors naming the
// file, the line and the key.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config.hpp"

using namespace vrelay;

namespace {

std::string error_of(const std::string& yaml) {
  try {
    load_config_text(yaml, "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, EmbeddedDefaults) {
  Config c = default_config();
  EXPECT_EQ(c.control.listen.to_string(), "0.0.0.0:7700");
  EXPECT_EQ(c.ingest.listen.to_string(), "127.0.0.1:65534");
  EXPECT_EQ(c.control.max_sessions, 1024u);
  EXPECT_EQ(c.control.max_sessions_per_ip, 256u);
  EXPECT_EQ(c.control.idle_timeout_s, 300u);
  EXPECT_EQ(c.control.max_line, 1024u);
  EXPECT_EQ(c.control.port_min, 1025);
  EXPECT_EQ(c.control.port_max, 65535);
  EXPECT_EQ(c.control.orphan_grace_s, 30u);
  EXPECT_EQ(c.ingest.max_datagram, 1500u);
  EXPECT_EQ(c.instance, "default");
  ASSERT_EQ(c.ingest.allow.size(), 2u);
  EXPECT_EQ(c.ingest.allow[0].to_string(), "127.0.0.0/8");
}

TEST(Config, EmptyFileKeepsDefaults) {
  Config c = load_config_text("", "empty.yaml");
  EXPECT_EQ(c.control.listen.to_string(), "0.0.0.0:7700");
}

TEST(Config, ReadsEveryKey) {
  Config c = load_config_text(R"(
instance: edge-1
control:
  listen: "[::1]:7800"
  max_sessions: 10
  max_sessions_per_ip: 2
  idle_timeout: 0
  max_line: 512
  ports: 2000-3000
  orphan_grace: 5
  thread_stack_kib: 128
ingest:
  listen: 0.0.0.0:5000
  allow: [10.0.0.0/8, "::1"]
  max_datagram: 9000
  ring_slots: 1024
  socket_buffer: 1048576
fanout:
  max_subscribers: 64
  socket_buffer: 65536
  gso: off
  max_batch_delay: 500
  unreachable_pause: 0
log:
  level: debug
)", "full.yaml");
  EXPECT_EQ(c.instance, "edge-1");
  EXPECT_EQ(c.control.listen.to_string(), "[::1]:7800");
  EXPECT_EQ(c.control.max_sessions, 10u);
  EXPECT_EQ(c.control.max_sessions_per_ip, 2u);
  EXPECT_EQ(c.control.idle_timeout_s, 0u);
  EXPECT_EQ(c.control.max_line, 512u);
  EXPECT_EQ(c.control.port_min, 2000);
  EXPECT_EQ(c.control.port_max, 3000);
  EXPECT_EQ(c.control.orphan_grace_s, 5u);
  EXPECT_EQ(c.control.thread_stack_kib, 128u);
  EXPECT_EQ(c.ingest.listen.to_string(), "0.0.0.0:5000");
  ASSERT_EQ(c.ingest.allow.size(), 2u);
  EXPECT_EQ(c.ingest.allow[1].to_string(), "::1/128");
  EXPECT_EQ(c.ingest.max_datagram, 9000u);
  EXPECT_EQ(c.ingest.ring_slots, 1024u);
  EXPECT_EQ(c.fanout.max_subscribers, 64u);
  EXPECT_FALSE(c.fanout.gso);
  EXPECT_EQ(c.fanout.max_batch_delay_us, 500u);
  EXPECT_EQ(c.fanout.unreachable_pause_s, 0u);
  EXPECT_EQ(c.log.level, 7);
}

TEST(Config, TheRingHoldsRingSlotsAndRingBytesOfStream) {
  Config c = default_config();
  EXPECT_EQ(ring_slot_count(c), 16384u);  // 12,500,000 bytes: 9,499 datagrams of 1316 bytes
  c.ingest.ring_bytes = 0;
  EXPECT_EQ(ring_slot_count(c), 4096u);
  c.ingest.ring_bytes = 1316 * 5000;
  EXPECT_EQ(ring_slot_count(c), 8192u);
  c.ingest.ring_slots = 16;
  c.ingest.ring_bytes = 1316 * 16;
  EXPECT_EQ(ring_slot_count(c), 16u);
  c.ingest.ring_bytes = 1u << 30;
  EXPECT_EQ(ring_slot_count(c), 1u << 20);  // the most there may be
}

TEST(Config, FanoutDefaults) {
  Config c = default_config();
  EXPECT_TRUE(c.fanout.gso);
  EXPECT_EQ(c.fanout.max_batch_delay_us, 0u);
  EXPECT_EQ(c.fanout.unreachable_pause_s, 10u);
  EXPECT_TRUE(c.control.presence_to_named_only);  // presence events go to named sessions
  EXPECT_TRUE(c.fanout.fast_start);
  EXPECT_EQ(c.fanout.fast_start_rate, 4u);
  Config off = load_config_text("fanout:\n  fast_start: off\n  fast_start_rate: 10\n", "test.yaml");
  EXPECT_FALSE(off.fanout.fast_start);
  EXPECT_EQ(off.fanout.fast_start_rate, 10u);
}

TEST(Config, UnknownKeyNamesLineAndKey) {
  std::string e = error_of("control:\n  listen: 0.0.0.0:7700\n  max_sesions: 5\n");
  EXPECT_NE(e.find("test.yaml:3"), std::string::npos) << e;
  EXPECT_NE(e.find("control.max_sesions"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key"), std::string::npos) << e;
}

TEST(Config, WrongTypesAndRanges) {
  struct Case { const char* yaml; const char* key; int line; };
  for (const Case& c : {Case{"control:\n  max_sessions: many\n", "control.max_sessions", 2},
                        Case{"control:\n  max_sessions: -1\n", "control.max_sessions", 2},
                        Case{"control:\n  max_sessions: 0\n", "control.max_sessions", 2},
                        Case{"control:\n  max_sessions: [1, 2]\n", "control.max_sessions", 2},
                        Case{"control: 5\n", "control", 1},
                        Case{"\n\ningest:\n  listen: 127.0.0.1\n", "ingest.listen", 4},
                        Case{"ingest:\n  listen: 999.1.1.1:5000\n", "ingest.listen", 2},
                        Case{"ingest:\n  listen: 127.0.0.1:70000\n", "ingest.listen", 2},
                        Case{"ingest:\n  ring_slots: 1000\n", "ingest.ring_slots", 2},
                        Case{"ingest:\n  max_datagram: 70000\n", "ingest.max_datagram", 2},
                        Case{"ingest:\n  allow: 127.0.0.1\n", "ingest.allow", 2},
                        Case{"ingest:\n  allow: [127.0.0.1/33]\n", "ingest.allow", 2},
                        Case{"control:\n  ports: 3000-2000\n", "control.ports", 2},
                        Case{"log:\n  level: loud\n", "log.level", 2},
                        Case{"instance: \"a/b\"\n", "instance", 1}}) {
    std::string e = error_of(c.yaml);
    EXPECT_NE(e.find(c.key), std::string::npos) << c.yaml << " -> " << e;
    EXPECT_NE(e.find("test.yaml:" + std::to_string(c.line)), std::string::npos) << c.yaml << " -> " << e;
  }
}

TEST(Config, SyntaxErrorNamesTheLine) {
  std::string e = error_of("control:\n  listen: [unclosed\n");
  EXPECT_NE(e.find("test.yaml:"), std::string::npos) << e;
}

TEST(Config, MissingFile) {
  EXPECT_THROW(load_config_file("/nonexistent/vrelay.yaml"), ConfigError);
}

TEST(Config, BadObservabilityKeysAreClearErrors) {
  struct Case {
    const char* yaml;
    const char* message;
  } cases[] = {
      {"ingest:\n  source: camera\n", "ingest.source: expected socket or generator, got 'camera'"},
      {"ingest:\n  interval_ms: 0\n", "ingest.interval_ms: expected a whole number from 1 to 60000"},
      {"log:\n  file: relative.log\n", "log.file: expected an absolute path, got 'relative.log'"},
      {"http:\n  listen: nowhere\n", "http.listen:"},
      {"fanout:\n  gso: maybe\n", "fanout.gso: expected on or off, got 'maybe'"},
      {"fanout:\n  fast_start: yes please\n", "fanout.fast_start: expected on or off"},
      {"fanout:\n  fast_start_rate: 0\n", "fanout.fast_start_rate: expected a whole number from 1 to 100"},
      {"fanout:\n  max_batch_delay: 2000000\n", "fanout.max_batch_delay: expected a whole number from 0 to 1000000"},
      {"fanout:\n  unreachable_pause: -1\n", "fanout.unreachable_pause: expected a whole number from 0 to 86400"},
      {"ingest:\n  upstream: core\n", "ingest.upstream: 'core': expected HOST:PORT"},
      {"ingest:\n  upstream: core:http\n", "ingest.upstream: 'core:http': the port must be a number from 1 to 65535"},
      {"ingest:\n  upstream: [a, b]\n", "ingest.upstream: expected a single value"},
      {"ingest:\n  upstream: 127.0.0.1:7700\n  source: generator\n", "ingest.upstream: an edge takes its stream"},
  };
  for (const Case& c : cases) {
    try {
      load_config_text(c.yaml, "test.yaml");
      ADD_FAILURE() << c.yaml << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(c.message), std::string::npos) << e.what();
    }
  }
}

// A scalar or a list of scalars as one line, whatever its YAML style.
std::string flat(const YAML::Node& node) {
  if (!node.IsSequence()) return node.Scalar();
  std::string out = "[";
  for (const auto& item : node) out += (out.size() > 1 ? ", " : "") + item.Scalar();
  return out + "]";
}

// config/vrelay.yaml lists every key declared in common/config_keys.def with its declared
// default (but http.listen, which it turns on), and nothing else.
TEST(Config, UpstreamIsNoneByDefaultAndTakesHostPort) {
  EXPECT_EQ(default_config().ingest.upstream, "");
  EXPECT_EQ(load_config_text("ingest:\n  upstream: core.example:7700\n", "t").ingest.upstream, "core.example:7700");
  EXPECT_EQ(load_config_text("ingest:\n  upstream: \"[::1]:7700\"\n", "t").ingest.upstream, "[::1]:7700");
}

TEST(Config, TheShippedFileHoldsEveryDeclaredKeyAtItsDefault) {
  YAML::Node shipped = YAML::LoadFile(VRELAY_SOURCE_DIR "/config/vrelay.yaml");
  size_t leaves = 0;
  for (const auto& top : shipped) leaves += top.second.IsMap() ? top.second.size() : 1;
  EXPECT_EQ(leaves, config_keys().size());
  for (const ConfigKey& key : config_keys()) {
    auto dot = key.path.find('.');
    YAML::Node value = dot == std::string::npos ? shipped[key.path] : shipped[key.path.substr(0, dot)][key.path.substr(dot + 1)];
    ASSERT_TRUE(value.IsDefined()) << key.path << " is not in config/vrelay.yaml";
    if (key.path == "http.listen") continue;
    EXPECT_EQ(flat(value), flat(YAML::Load(key.fallback))) << key.path;
  }
}

// Every declared key is read: setting it to its own default is valid.
TEST(Config, EveryDeclaredDefaultLoads) {
  for (const ConfigKey& key : config_keys()) {
    auto dot = key.path.find('.');
    std::string yaml = dot == std::string::npos ? key.path + ": " + key.fallback + "\n"
                                                : key.path.substr(0, dot) + ":\n  " + key.path.substr(dot + 1) + ": " +
                                                      key.fallback + "\n";
    EXPECT_EQ(error_of(yaml), "") << yaml;
  }
}

TEST(Config, MulticastIngestKeys) {
  Config c = default_config();
  EXPECT_EQ(c.ingest.interface, "");
  EXPECT_FALSE(c.ingest.ssm_source);
  EXPECT_EQ(multicast_join_text(c.ingest), "");
  Config ssm = load_config_text(
      "ingest:\n  listen: 239.255.12.42:5500\n  interface: eth0\n  ssm_source: 10.0.0.1\n", "test.yaml");
  EXPECT_EQ(ssm.ingest.listen.to_string(), "239.255.12.42:5500");
  EXPECT_EQ(ssm.ingest.interface, "eth0");
  ASSERT_TRUE(ssm.ingest.ssm_source);
  EXPECT_EQ(ssm.ingest.ssm_source->host(), "10.0.0.1");
  EXPECT_EQ(multicast_join_text(ssm.ingest), " (joined on eth0, source 10.0.0.1)");
  Config v6 = load_config_text("ingest:\n  listen: \"[ff15::1234]:5500\"\n  interface: 2001:db8::10\n", "test.yaml");
  EXPECT_EQ(v6.ingest.interface, "2001:db8::10");
  EXPECT_FALSE(v6.ingest.ssm_source);
  EXPECT_EQ(multicast_join_text(v6.ingest), " (joined on 2001:db8::10)");
  // An empty value is the default: no source, no interface (with a unicast address).
  Config empty = load_config_text("ingest:\n  interface: \"\"\n  ssm_source: \"\"\n", "test.yaml");
  EXPECT_EQ(empty.ingest, default_config().ingest);
}

TEST(Config, MulticastIngestErrorsNameTheKey) {
  struct Case {
    const char* yaml;
    const char* message;
  } cases[] = {
      {"ingest:\n  listen: 239.255.12.42:5500\n",
       "ingest.interface: required when ingest.listen is a multicast group (239.255.12.42:5500)"},
      {"ingest:\n  listen: \"[ff15::1]:5500\"\n", "ingest.interface: required when ingest.listen is a multicast group ([ff15::1]:5500)"},
      {"ingest:\n  listen: 239.255.12.42:5500\n  interface: eth0\n  ssm_source: 2001:db8::1\n",
       "ingest.ssm_source: 2001:db8::1 is an IPv6 address but the group 239.255.12.42 is IPv4"},
      {"ingest:\n  listen: \"[ff15::1]:5500\"\n  interface: eth0\n  ssm_source: 10.0.0.1\n",
       "ingest.ssm_source: 10.0.0.1 is an IPv4 address but the group ff15::1 is IPv6"},
      {"ingest:\n  listen: 127.0.0.1:5500\n  ssm_source: 10.0.0.1\n",
       "ingest.ssm_source: only for a multicast group, but ingest.listen is the unicast address 127.0.0.1:5500"},
      {"ingest:\n  listen: 127.0.0.1:5500\n  interface: eth0\n",
       "ingest.interface: only for a multicast group, but ingest.listen is the unicast address 127.0.0.1:5500"},
      {"ingest:\n  listen: 239.255.12.42:0\n  interface: eth0\n",
       "ingest.listen: a multicast group needs the port its sender sends to, not 0 (239.255.12.42:0)"},
      {"ingest:\n  interface: eth0\n  ssm_source: somewhere\n",
       "test.yaml:3: ingest.ssm_source: bad address 'somewhere': expected a numeric IPv4 or IPv6 address"},
      {"ingest:\n  ssm_source: 239.1.1.1\n",
       "test.yaml:2: ingest.ssm_source: expected the unicast address of the sender, got the group 239.1.1.1"},
      {"ingest:\n  interface: eth0:1\n",
       "test.yaml:2: ingest.interface: expected an interface name (e.g. eth0) or one of its addresses, got 'eth0:1'"},
      {"ingest:\n  interface: [eth0]\n", "test.yaml:2: ingest.interface: expected a single value"},
  };
  for (const Case& c : cases) EXPECT_NE(error_of(c.yaml).find(c.message), std::string::npos) << c.yaml << " -> " << error_of(c.yaml);
}

// --ingest replaces ingest.listen after the file: the keys are checked against it then.
TEST(Config, MulticastKeysAreCheckedAgainstTheFinalListenAddress) {
  Config c = load_config_text("ingest:\n  listen: 239.255.12.42:5500\n  interface: eth0\n", "test.yaml");
  c.ingest.listen = *parse_endpoint("127.0.0.1:0");
  try {
    validate(c);
    ADD_FAILURE() << "an interface with a unicast address was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("ingest.interface: only for a multicast group"), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Config, OutputsAreReadWithTheirMulticastOptions) {
  Config c = load_config_text("outputs:\n"
                              "  - {name: lan, to: \"239.255.0.1:5000\", interface: lo, ttl: 4}\n"
                              "  - name: rec\n"
                              "    to: \"127.0.0.1:6000\"\n"
                              "  - {name: six, to: \"[ff15::1]:5002\"}\n",
                              "test.yaml");
  ASSERT_EQ(c.outputs.size(), 3u);
  EXPECT_EQ(c.outputs[0].name, "lan");
  EXPECT_EQ(c.outputs[0].to.to_string(), "239.255.0.1:5000");
  EXPECT_EQ(c.outputs[0].interface, "lo");
  EXPECT_EQ(c.outputs[0].ttl, 4u);
  EXPECT_EQ(c.outputs[1].to.to_string(), "127.0.0.1:6000");
  EXPECT_EQ(c.outputs[1].ttl, 0u);
  EXPECT_TRUE(c.outputs[2].to.is_multicast());
  EXPECT_FALSE(c.outputs[1].to.is_multicast());
  EXPECT_TRUE(default_config().outputs.empty());
}

TEST(Config, BadOutputsNameTheItemAndTheKey) {
  struct Case {
    const char* yaml;
    const char* expected;
  } cases[] = {
      {"outputs: lan\n", "outputs: expected a list of outputs"},
      {"outputs:\n  - lan\n", "outputs[0]: expected {name"},
      {"outputs:\n  - {to: \"127.0.0.1:5000\"}\n", "outputs[0].name: missing"},
      {"outputs:\n  - {name: a}\n", "outputs[0].to: missing"},
      {"outputs:\n  - {name: \"a b\", to: \"127.0.0.1:5000\"}\n", "outputs[0].name: expected 1 to 32"},
      {"outputs:\n  - {name: a, to: \"127.0.0.1\"}\n", "outputs[0].to:"},
      {"outputs:\n  - {name: a, to: \"127.0.0.1:0\"}\n", "outputs[0].to: '127.0.0.1:0': the port must be"},
      {"outputs:\n  - {name: a, to: \"127.0.0.1:5000\", ttl: 3}\n", "outputs[0].ttl: only for a multicast destination"},
      {"outputs:\n  - {name: a, to: \"127.0.0.1:5000\", interface: lo}\n", "outputs[0].interface: only for a multicast"},
      {"outputs:\n  - {name: a, to: \"239.1.1.1:5000\", ttl: 256}\n", "outputs[0].ttl: expected a whole number from 1 to 255"},
      {"outputs:\n  - {name: a, to: \"239.1.1.1:5000\", interface: no-such-if0}\n",
       "outputs[0].interface: no network interface is named 'no-such-if0'"},
      {"outputs:\n  - {name: a, to: \"127.0.0.1:5000\", port: 3}\n", "outputs[0].port: unknown key"},
      {"outputs:\n  - {name: a, to: \"127.0.0.1:5000\"}\n  - {name: a, to: \"127.0.0.1:5001\"}\n",
       "outputs[1].name: 'a' names another output too"},
      {"outputs:\n  - {name: a, to: \"127.0.0.1:5000\"}\n  - {name: b, to: \"127.0.0.1:5000\"}\n",
       "outputs[1].to: output 'a' sends to 127.0.0.1:5000 already"},
  };
  for (const Case& c : cases) {
    std::string e = error_of(c.yaml);
    EXPECT_NE(e.find(c.expected), std::string::npos) << c.yaml << " -> " << e;
    EXPECT_NE(e.find("test.yaml:"), std::string::npos) << e;
  }
}
