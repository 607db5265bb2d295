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

namespace vrelay {
namespace {

Endpoint endpoint_or_die(const std::string& text) {
  std::string error;
  auto ep = parse_endpoint(text, &error);
  if (!ep) throw ConfigError(error);
  return *ep;
}

// A moderator token: the file's first line, surrounding whitespace removed. The token itself
// never appears in an error message.
std::string read_token_file(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read the token file " + path;
    return "";
  }
  std::string token;
  std::getline(in, token);
  auto first = token.find_first_not_of(" \t\r");
  auto last = token.find_last_not_of(" \t\r");
  token = first == std::string::npos ? "" : token.substr(first, last - first + 1);
  if (token.size() < 8) *error = "the token in " + path + " is shorter than 8 characters";
  for (char ch : token)
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) *error = "the token in " + path + " contains spaces or control bytes";
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
    std::string error;
    auto ep = parse_endpoint(scalar(node, key), &error);
    if (!ep) fail(node, key, error);
    return *ep;
  }

  using Handler = std::function<void(const YAML::Node&, const std::string&)>;

  void section(const YAML::Node& node, const std::string& prefix, const std::map<std::string, Handler>& keys) {
    if (!node.IsMap()) fail(node, prefix.empty() ? "(top level)" : prefix, "expected a mapping of keys");
    for (const auto& kv : node) {
      std::string name = kv.first.Scalar();
      std::string full = prefix.empty() ? name : prefix + "." + name;
      auto it = keys.find(name);
      if (it == keys.end()) fail(kv.first, full, "unknown key");
      it->second(kv.second, full);
    }
  }

  void load(const YAML::Node& root, Config& c) {
    if (root.IsNull()) return;  // an empty file keeps the defaults
    section(root, "", {
      {"instance", [&](const YAML::Node& n, const std::string& k) {
         c.instance = scalar(n, k);
         bool ok = !c.instance.empty() && c.instance.size() <= 32;
         for (char ch : c.instance) ok = ok && (isalnum((unsigned char)ch) || ch == '-' || ch == '_');
         if (!ok) fail(n, k, "expected 1 to 32 letters, digits, '-' or '_'");
       }},
      {"control", [&](const YAML::Node& n, const std::string& k) {
         section(n, k, {
           {"listen", [&](const YAML::Node& v, const std::string& kk) { c.control.listen = address(v, kk); }},
           {"max_sessions", [&](const YAML::Node& v, const std::string& kk) { c.control.max_sessions = number(v, kk, 1, 1000000); }},
           {"max_sessions_per_ip", [&](const YAML::Node& v, const std::string& kk) { c.control.max_sessions_per_ip = number(v, kk, 1, 1000000); }},
           {"idle_timeout", [&](const YAML::Node& v, const std::string& kk) { c.control.idle_timeout_s = number(v, kk, 0, 86400 * 365); }},
           {"max_line", [&](const YAML::Node& v, const std::string& kk) { c.control.max_line = number(v, kk, 64, 65536); }},
           {"orphan_grace", [&](const YAML::Node& v, const std::string& kk) { c.control.orphan_grace_s = number(v, kk, 0, 86400); }},
           {"thread_stack_kib", [&](const YAML::Node& v, const std::string& kk) { c.control.thread_stack_kib = number(v, kk, 64, 65536); }},
           {"rate_limit", [&](const YAML::Node& v, const std::string& kk) { c.control.rate_limit = number(v, kk, 1, 1000000); }},
           {"rate_burst", [&](const YAML::Node& v, const std::string& kk) { c.control.rate_burst = number(v, kk, 1, 1000000); }},
           {"outbox_bytes", [&](const YAML::Node& v, const std::string& kk) { c.control.outbox_bytes = number(v, kk, 4096, 1 << 30); }},
           {"presence_events", [&](const YAML::Node& v, const std::string& kk) {
              std::string s = scalar(v, kk);
              if (s != "all" && s != "named") fail(v, kk, "expected all or named, got '" + s + "'");
              c.control.presence_to_named_only = s == "named";
            }},
           {"ports", [&](const YAML::Node& v, const std::string& kk) {
              std::string s = scalar(v, kk);
              auto dash = s.find('-');
              auto lo = parse_port(s.substr(0, dash), 1, 65535);
              auto hi = dash == std::string::npos ? lo : parse_port(s.substr(dash + 1), 1, 65535);
              if (!lo || !hi || *lo > *hi) fail(v, kk, "expected a port range LOW-HIGH within 1-65535, got '" + s + "'");
              c.control.port_min = *lo;
              c.control.port_max = *hi;
            }},
         });
       }},
      {"ingest", [&](const YAML::Node& n, const std::string& k) {
         section(n, k, {
           {"listen", [&](const YAML::Node& v, const std::string& kk) { c.ingest.listen = address(v, kk); }},
           {"max_datagram", [&](const YAML::Node& v, const std::string& kk) { c.ingest.max_datagram = number(v, kk, 188, 65507); }},
           {"ring_slots", [&](const YAML::Node& v, const std::string& kk) {
              c.ingest.ring_slots = number(v, kk, 16, 1 << 20);
              if (c.ingest.ring_slots & (c.ingest.ring_slots - 1)) fail(v, kk, "must be a power of two");
            }},
           {"ring_bytes", [&](const YAML::Node& v, const std::string& kk) { c.ingest.ring_bytes = number(v, kk, 0, 1 << 30); }},
           {"socket_buffer", [&](const YAML::Node& v, const std::string& kk) { c.ingest.socket_buffer = number(v, kk, 4096, 1 << 30); }},
           {"stall_timeout", [&](const YAML::Node& v, const std::string& kk) { c.ingest.stall_timeout_s = number(v, kk, 1, 3600); }},
           {"source", [&](const YAML::Node& v, const std::string& kk) {
              std::string s = scalar(v, kk);
              if (s != "socket" && s != "generator") fail(v, kk, "expected socket or generator, got '" + s + "'");
              c.ingest.source = s == "socket" ? Config::Ingest::Source::kSocket : Config::Ingest::Source::kGenerator;
            }},
           {"interval_ms", [&](const YAML::Node& v, const std::string& kk) { c.ingest.interval_ms = number(v, kk, 1, 60000); }},
           {"allow", [&](const YAML::Node& v, const std::string& kk) {
              if (!v.IsSequence()) fail(v, kk, "expected a list of networks, e.g. [127.0.0.0/8, ::1]");
              if (v.size() == 0) fail(v, kk, "the list is empty: no sender could stream (allow 0.0.0.0/0 for anyone)");
              c.ingest.allow.clear();
              for (const auto& item : v) {
                std::string error;
                auto cidr = parse_cidr(scalar(item, kk), &error);
                if (!cidr) fail(item, kk, error);
                c.ingest.allow.push_back(*cidr);
              }
            }},
         });
       }},
      {"fanout", [&](const YAML::Node& n, const std::string& k) {
         section(n, k, {
           {"max_subscribers", [&](const YAML::Node& v, const std::string& kk) { c.fanout.max_subscribers = number(v, kk, 1, 65536); }},
           {"socket_buffer", [&](const YAML::Node& v, const std::string& kk) { c.fanout.socket_buffer = number(v, kk, 4096, 1 << 30); }},
           {"gso", [&](const YAML::Node& v, const std::string& kk) { c.fanout.gso = on_off(v, kk); }},
           {"max_batch_delay", [&](const YAML::Node& v, const std::string& kk) { c.fanout.max_batch_delay_us = number(v, kk, 0, 1000000); }},
           {"unreachable_pause", [&](const YAML::Node& v, const std::string& kk) { c.fanout.unreachable_pause_s = number(v, kk, 0, 86400); }},
           {"fast_start", [&](const YAML::Node& v, const std::string& kk) { c.fanout.fast_start = on_off(v, kk); }},
           {"fast_start_rate", [&](const YAML::Node& v, const std::string& kk) { c.fanout.fast_start_rate = number(v, kk, 1, 100); }},
         });
       }},
      {"moderators", [&](const YAML::Node& n, const std::string& k) {
         section(n, k, {
           {"token_files", [&](const YAML::Node& v, const std::string& kk) {
              if (!v.IsSequence()) fail(v, kk, "expected a list of file paths");
              c.moderators.token_files.clear();
              c.moderators.tokens.clear();
              for (const auto& item : v) {
                std::string path = scalar(item, kk);
                std::string error;
                std::string token = read_token_file(path, &error);
                if (!error.empty()) fail(item, kk, error);
                c.moderators.token_files.push_back(path);
                c.moderators.tokens.push_back(token);
              }
            }},
         });
       }},
      {"log", [&](const YAML::Node& n, const std::string& k) {
         section(n, k, {
           {"level", [&](const YAML::Node& v, const std::string& kk) {
              int level = parse_log_level(scalar(v, kk));
              if (level < 0) fail(v, kk, "expected one of error, warning, notice, info, debug");
              c.log.level = level;
            }},
           {"file", [&](const YAML::Node& v, const std::string& kk) {
              c.log.file = scalar(v, kk);
              if (!c.log.file.empty() && c.log.file[0] != '/') fail(v, kk, "expected an absolute path, got '" + c.log.file + "'");
            }},
         });
       }},
      {"http", [&](const YAML::Node& n, const std::string& k) {
         section(n, k, {
           {"listen", [&](const YAML::Node& v, const std::string& kk) {
              std::string s = scalar(v, kk);
              c.http.enabled = s != "off";
              if (c.http.enabled) c.http.listen = address(v, kk);
            }},
         });
       }},
    });
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
  Config c;
  c.control.listen = endpoint_or_die("0.0.0.0:7700");
  c.ingest.listen = endpoint_or_die("127.0.0.1:65534");
  c.http.listen = endpoint_or_die("127.0.0.1:7701");  // used only when http.listen turns it on
  std::string error;
  c.ingest.allow = {*parse_cidr("127.0.0.0/8", &error), *parse_cidr("::1/128", &error)};
  return c;
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

void validate(const Config& c) {
  if (c.ingest.allow.empty()) throw ConfigError("ingest.allow: the list is empty, no sender could stream");
}

}  // namespace vrelay
