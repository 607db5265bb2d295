// Loads vrelay.yaml with yaml-cpp: every key is known, typed and range-checked, and every
// error names the file, the line and the key.
#include "config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "protocol.hpp"
#include "shm.hpp"

namespace vrelay {
namespace {

// "control" "listen" -> "control.listen"; a top-level key has no section.
std::string key_path(const char* section, const char* key) {
  return *section ? std::string(section) + "." + key : std::string(key);
}

Endpoint endpoint_or_die(const std::string& text) {
  auto ep = parse_endpoint(text);
  if (!ep) throw ConfigError(ep.error());
  return *ep;
}

// A moderator token: the file's first line, surrounding whitespace removed. The token itself
// never appears in an error message.
Result<std::string> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Failure{"cannot read the token file " + path};
  std::string token;
  std::getline(in, token);
  auto first = token.find_first_not_of(" \t\r");
  auto last = token.find_last_not_of(" \t\r");
  token = first == std::string::npos ? "" : token.substr(first, last - first + 1);
  for (char ch : token)
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f)
      return Failure{"the token in " + path + " contains spaces or control bytes"};
  if (token.size() < 8) return Failure{"the token in " + path + " is shorter than 8 characters"};
  return token;
}

struct Loader {
  std::string origin;

  [[noreturn]] void fail(const YAML::Node& node, const std::string& key, const std::string& what) {
    std::ostringstream out;
    out << origin;
    if (node.Mark().line >= 0) out << ":" << node.Mark().line + 1;
    out << ": " << key << ": " << what;
    throw ConfigError(out.str());
  }

  std::string scalar(const YAML::Node& node, const std::string& key) {
    if (!node.IsScalar()) fail(node, key, "expected a single value");
    return node.Scalar();
  }

  uint32_t number(const YAML::Node& node, const std::string& key, uint64_t lo, uint64_t hi) {
    std::string s = scalar(node, key);
    uint64_t v = 0;
    bool ok = !s.empty() && s.size() <= 10;
    for (char c : s) ok = ok && c >= '0' && c <= '9';
    if (ok) v = std::stoull(s);
    if (!ok || v < lo || v > hi)
      fail(node, key, "expected a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                          ", got '" + s + "'");
    return uint32_t(v);
  }

  bool on_off(const YAML::Node& node, const std::string& key) {
    std::string s = scalar(node, key);
    if (s == "on" || s == "true") return true;
    if (s == "off" || s == "false") return false;
    fail(node, key, "expected on or off, got '" + s + "'");
  }

  Endpoint address(const YAML::Node& node, const std::string& key) {
    auto ep = parse_endpoint(scalar(node, key));
    if (!ep) fail(node, key, ep.error());
    return *ep;
  }

  // A user or group name as useradd(8) takes them ("" = the default); whether it exists is
  // checked where it is used, on the host that runs vrelayd.
  std::string account_name(const YAML::Node& node, const std::string& key) {
    std::string s = scalar(node, key);
    bool ok = s.size() <= 32 && (s.empty() || s[0] != '-');
    for (char ch : s) ok = ok && (isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.');
    if (!ok) fail(node, key, "expected an account name (letters, digits, '_', '-', '.'), got '" + s + "'");
    return s;
  }

  // ---- the keys that are not plain numbers or switches (VRELAY_OTHER in config_keys.def)

  void read__instance(const YAML::Node& n, const std::string& k, Config& c) {
    c.instance = scalar(n, k);
    if (Status valid = Segment::valid_instance_name(c.instance); !valid) fail(n, k, valid.error());
  }
  void read__user(const YAML::Node& n, const std::string& k, Config& c) { c.user = account_name(n, k); }
  void read__group(const YAML::Node& n, const std::string& k, Config& c) { c.group = account_name(n, k); }
  void read_control_listen(const YAML::Node& n, const std::string& k, Config& c) { c.control.listen = address(n, k); }
  void read_control_ports(const YAML::Node& n, const std::string& k, Config& c) {
    std::string s = scalar(n, k);
    auto dash = s.find('-');
    auto lo = parse_port(s.substr(0, dash), 1, 65535);
    auto hi = dash == std::string::npos ? lo : parse_port(s.substr(dash + 1), 1, 65535);
    if (!lo || !hi || *lo > *hi) fail(n, k, "expected a port range LOW-HIGH within 1-65535, got '" + s + "'");
    c.control.port_min = *lo;
    c.control.port_max = *hi;
  }
  void read_control_presence_events(const YAML::Node& n, const std::string& k, Config& c) {
    std::string s = scalar(n, k);
    if (s != "all" && s != "named") fail(n, k, "expected all or named, got '" + s + "'");
    c.control.presence_to_named_only = s == "named";
  }
  void read_ingest_listen(const YAML::Node& n, const std::string& k, Config& c) { c.ingest.listen = address(n, k); }
  void read_ingest_interface(const YAML::Node& n, const std::string& k, Config& c) {
    c.ingest.interface = scalar(n, k);
    if (c.ingest.interface.empty()) return;
    if (Status valid = check_interface_spec(c.ingest.interface); !valid) fail(n, k, valid.error());
  }
  void read_ingest_ssm_source(const YAML::Node& n, const std::string& k, Config& c) {
    std::string s = scalar(n, k);
    c.ingest.ssm_source.reset();
    if (s.empty()) return;
    auto source = parse_address(s);
    if (!source) fail(n, k, source.error());
    if (source->is_multicast()) fail(n, k, "expected the unicast address of the sender, got the group " + s);
    c.ingest.ssm_source = *source;
  }
  void read_ingest_allow(const YAML::Node& n, const std::string& k, Config& c) {
    if (!n.IsSequence()) fail(n, k, "expected a list of networks, e.g. [127.0.0.0/8, ::1]");
    if (n.size() == 0) fail(n, k, "the list is empty: no sender could stream (allow 0.0.0.0/0 for anyone)");
    c.ingest.allow.clear();
    for (const auto& item : n) {
      auto cidr = parse_cidr(scalar(item, k));
      if (!cidr) fail(item, k, cidr.error());
      c.ingest.allow.push_back(*cidr);
    }
  }
  void read_ingest_ring_slots(const YAML::Node& n, const std::string& k, Config& c) {
    c.ingest.ring_slots = number(n, k, 16, 1 << 20);
    if (c.ingest.ring_slots & (c.ingest.ring_slots - 1)) fail(n, k, "must be a power of two");
  }
  void read_ingest_source(const YAML::Node& n, const std::string& k, Config& c) {
    std::string s = scalar(n, k);
    if (s != "socket" && s != "generator") fail(n, k, "expected socket or generator, got '" + s + "'");
    c.ingest.source = s == "socket" ? Config::Ingest::Source::kSocket : Config::Ingest::Source::kGenerator;
  }
  void read_ingest_upstream(const YAML::Node& n, const std::string& k, Config& c) {
    std::string s = scalar(n, k);
    if (!s.empty())
      if (auto split = split_host_port(s); !split) fail(n, k, split.error() + ", or \"\" for none");
    c.ingest.upstream = s;
  }
  void read_moderators_token_files(const YAML::Node& n, const std::string& k, Config& c) {
    if (!n.IsSequence()) fail(n, k, "expected a list of file paths");
    c.moderators.token_files.clear();
    c.moderators.tokens.clear();
    for (const auto& item : n) {
      std::string path = scalar(item, k);
      auto token = read_token_file(path);
      if (!token) fail(item, k, token.error());
      c.moderators.token_files.push_back(path);
      c.moderators.tokens.push_back(std::move(*token));
    }
  }
  void read_http_listen(const YAML::Node& n, const std::string& k, Config& c) {
    std::string s = scalar(n, k);
    c.http.enabled = s != "off";
    if (c.http.enabled) c.http.listen = address(n, k);
  }
  // A list of {name, to, interface, ttl}: names and destinations unique, interface and ttl
  // only for a multicast destination, the interface one this host has.
  void read__outputs(const YAML::Node& n, const std::string& k, Config& c) {
    if (!n.IsSequence()) fail(n, k, "expected a list of outputs, e.g. [{name: lan, to: \"239.255.0.1:5000\"}]");
    c.outputs.clear();
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node& item = n[i];
      std::string at = k + "[" + std::to_string(i) + "]";
      if (!item.IsMap()) fail(item, at, "expected {name: NAME, to: \"HOST:PORT\"} with optional interface and ttl");
      Config::Output out;
      YAML::Node to;  // read once the item is known whole
      bool has_to = false;
      for (const auto& kv : item) {
        std::string field = kv.first.Scalar(), key = at + "." + field;
        if (field == "name") out.name = output_name(kv.second, key);
        else if (field == "to") to = kv.second, has_to = true;
        else if (field == "interface") out.interface = scalar(kv.second, key);
        else if (field == "ttl") out.ttl = number(kv.second, key, 1, 255);
        else fail(kv.first, key, "unknown key (an output has name, to, interface and ttl)");
      }
      if (out.name.empty()) fail(item, at + ".name", "missing: every output needs a name");
      if (!has_to) fail(item, at + ".to", "missing: where the output sends, HOST:PORT");
      auto ep = resolve_endpoint(scalar(to, at + ".to"));
      if (!ep) fail(to, at + ".to", ep.error());
      out.to = *ep;
      if (!out.to.is_multicast() && (!out.interface.empty() || out.ttl))
        fail(item, at + (out.ttl ? ".ttl" : ".interface"), "only for a multicast destination, and " + out.to.to_string() + " is not one");
      if (!out.interface.empty())
        if (auto found = find_interface(out.interface); !found) fail(item, at + ".interface", found.error());
      for (const Config::Output& other : c.outputs) {
        if (other.name == out.name) fail(item, at + ".name", "'" + out.name + "' names another output too");
        if (other.to == out.to) fail(item, at + ".to", "output '" + other.name + "' sends to " + out.to.to_string() + " already");
      }
      c.outputs.push_back(std::move(out));
    }
  }
  // As a session's NAME: 1 to 32 of A-Z a-z 0-9 _ . - (vrelay-protocol(7)).
  std::string output_name(const YAML::Node& node, const std::string& key) {
    std::string s = scalar(node, key);
    if (!protocol::is_name(s)) fail(node, key, "expected 1 to 32 of A-Z a-z 0-9 _ . -, got '" + s + "'");
    return s;
  }
  void read_log_level(const YAML::Node& n, const std::string& k, Config& c) {
    int level = parse_log_level(scalar(n, k));
    if (level < 0) fail(n, k, "expected one of error, warning, notice, info, debug");
    c.log.level = level;
  }
  void read_log_file(const YAML::Node& n, const std::string& k, Config& c) {
    c.log.file = scalar(n, k);
    if (!c.log.file.empty() && c.log.file[0] != '/') fail(n, k, "expected an absolute path, got '" + c.log.file + "'");
  }

  // ---- every key, from config_keys.def

  using Reader = void (*)(Loader&, const YAML::Node&, const std::string&, Config&);
  static const std::map<std::string, Reader>& readers() {
    static const std::map<std::string, Reader> table = {
#define VRELAY_NUMBER(section, key, member, lo, hi, fallback, help)                              \
  {key_path(#section, #key), [](Loader& l, const YAML::Node& n, const std::string& k, Config& c) { \
     c.member = l.number(n, k, lo, hi);                                                            \
   }},
#define VRELAY_SWITCH(section, key, member, fallback, help)                                      \
  {key_path(#section, #key), [](Loader& l, const YAML::Node& n, const std::string& k, Config& c) { \
     c.member = l.on_off(n, k);                                                                    \
   }},
#define VRELAY_OTHER(section, key, fallback, help)                                               \
  {key_path(#section, #key), [](Loader& l, const YAML::Node& n, const std::string& k, Config& c) { \
     l.read_##section##_##key(n, k, c);                                                            \
   }},
#include "config_keys.def"
#undef VRELAY_NUMBER
#undef VRELAY_SWITCH
#undef VRELAY_OTHER
    };
    return table;
  }

  // A top-level key, or a section holding keys: every name must be declared.
  void load(const YAML::Node& root, Config& c) {
    if (root.IsNull()) return;  // an empty file keeps the defaults
    if (!root.IsMap()) fail(root, "(top level)", "expected a mapping of keys");
    const auto& table = readers();
    for (const auto& top : root) {
      std::string name = top.first.Scalar();
      if (auto it = table.find(name); it != table.end()) {
        it->second(*this, top.second, name, c);
        continue;
      }
      if (table.lower_bound(name + ".") == table.lower_bound(name + "/"))  // no key NAME.*
        fail(top.first, name, "unknown key");
      if (!top.second.IsMap()) fail(top.second, name, "expected a mapping of keys");
      for (const auto& kv : top.second) {
        std::string full = name + "." + kv.first.Scalar();
        auto it = table.find(full);
        if (it == table.end()) fail(kv.first, full, "unknown key");
        it->second(*this, kv.second, full, c);
      }
    }
  }
};

}  // namespace

uint32_t ring_slot_count(const Config& config) {
  constexpr uint64_t kMostSlots = 1 << 20;
  uint64_t wanted = std::max<uint64_t>(config.ingest.ring_slots, (config.ingest.ring_bytes + kRingBytesPerSlot - 1) / kRingBytesPerSlot);
  uint64_t slots = config.ingest.ring_slots;
  while (slots < wanted && slots < kMostSlots) slots *= 2;
  return uint32_t(slots);
}

int parse_log_level(const std::string& name) {
  static const std::map<std::string, int> levels = {
      {"error", 3}, {"warning", 4}, {"notice", 5}, {"info", 6}, {"debug", 7}};
  auto it = levels.find(name);
  return it == levels.end() ? -1 : it->second;
}

Config default_config() {
  // The defaults of config_keys.def, read as a file holding them would be.
  YAML::Node defaults(YAML::NodeType::Map);
  for (const ConfigKey& key : config_keys()) {
    std::string path = key.path, section, name = path;
    if (auto dot = path.find('.'); dot != std::string::npos) {
      section = path.substr(0, dot);
      name = path.substr(dot + 1);
    }
    (section.empty() ? defaults : defaults[section])[name] = YAML::Load(key.fallback);
  }
  Config c;
  Loader{"(embedded defaults)"}.load(defaults, c);
  c.http.listen = endpoint_or_die("127.0.0.1:7701");  // where http turns on when --http does not say
  return c;
}

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = {
#define VRELAY_NUMBER(section, key, member, lo, hi, fallback, help) \
  {key_path(#section, #key), "a whole number from " #lo " to " #hi, fallback, help},
#define VRELAY_SWITCH(section, key, member, fallback, help) {key_path(#section, #key), "on or off", fallback, help},
#define VRELAY_OTHER(section, key, fallback, help) {key_path(#section, #key), "", fallback, help},
#include "config_keys.def"
#undef VRELAY_NUMBER
#undef VRELAY_SWITCH
#undef VRELAY_OTHER
  };
  return keys;
}

Config load_config_text(const std::string& yaml, const std::string& origin) {
  Config c = default_config();
  Loader loader{origin};
  try {
    loader.load(YAML::Load(yaml), c);
  } catch (const YAML::Exception& e) {
    std::ostringstream out;
    out << origin << ":" << e.mark.line + 1 << ": " << e.msg;
    throw ConfigError(out.str());
  }
  validate(c);
  return c;
}

Config load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read the configuration file");
  std::stringstream text;
  text << in.rdbuf();
  return load_config_text(text.str(), path);
}

namespace {

const char* family_name(const Endpoint& ep) { return ep.family() == AF_INET ? "IPv4" : "IPv6"; }

// ingest.interface and ingest.ssm_source against ingest.listen (the command line's
// --ingest included): both only for a group, which needs the interface. Whether the
// interface exists is seen when the socket joins.
void validate_multicast(const Config::Ingest& in) {
  std::string listen = in.listen.to_string();
  if (!in.listen.is_multicast()) {
    if (!in.interface.empty())
      throw ConfigError("ingest.interface: only for a multicast group, but ingest.listen is the unicast address " + listen);
    if (in.ssm_source)
      throw ConfigError("ingest.ssm_source: only for a multicast group, but ingest.listen is the unicast address " + listen);
    return;
  }
  if (in.interface.empty())
    throw ConfigError("ingest.interface: required when ingest.listen is a multicast group (" + listen + ")");
  if (in.listen.port() == 0)
    throw ConfigError("ingest.listen: a multicast group needs the port its sender sends to, not 0 (" + listen + ")");
  if (in.ssm_source && in.ssm_source->family() != in.listen.family())
    throw ConfigError("ingest.ssm_source: " + in.ssm_source->host() + " is an " + family_name(*in.ssm_source) +
                      " address but the group " + in.listen.host() + " is " + family_name(in.listen));
}

}  // namespace

void validate(const Config& c) {
  if (c.ingest.allow.empty()) throw ConfigError("ingest.allow: the list is empty, no sender could stream");
  if (!c.ingest.upstream.empty() && c.ingest.source == Config::Ingest::Source::kGenerator)
    throw ConfigError("ingest.upstream: an edge takes its stream from the upstream; it cannot have ingest.source: generator");
  validate_multicast(c.ingest);
}

std::string multicast_join_text(const Config::Ingest& ingest) {
  if (!ingest.listen.is_multicast()) return "";
  std::string source = ingest.ssm_source ? ", source " + ingest.ssm_source->host() : "";
  return " (joined on " + ingest.interface + source + ")";
}

}  // namespace vrelay
