// Integration tests of the HTTP endpoint (the http process, http.listen), simplest first:
// off by default; /metrics checked by a strict parser of the Prometheus text format and
// against known traffic; /status.json with the same figures; 404 and 405; the command-line
// override; a killed http process is restarted; silent or hostile clients block no one;
// /stream: the bytes of the ring in order, from a key frame after the PAT and PMT, a reader
// that stops is cut while another loses nothing, http.max_streams, the gauge.
// The HTTP client is a plain TCP socket written here, so nothing is hidden by a library.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <endian.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "counter_stream.hpp"
#include "harness.hpp"
#include "mpegts.hpp"
#include "stats_view.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

const char* kHttpYaml = "http:\n  listen: 127.0.0.1:0\n";

// ---------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client.

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : int(left);
}

int connect_to(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += size_t(n);
  }
  return true;
}

// Everything the peer sends until it closes, or until the deadline; false on timeout.
bool read_to_eof(int fd, std::string* out, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
    char buf[8192];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0) return false;
    out->append(buf, size_t(n));
  }
}

struct HttpReply {
  int status = 0;                              // 0: no valid reply
  std::string error;                           // why status is 0
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

std::ostream& operator<<(std::ostream& os, const HttpReply& r) {
  return os << "HTTP " << r.status << (r.error.empty() ? "" : " (" + r.error + ")") << ", "
            << r.body.size() << " bytes: " << r.body.substr(0, 300);
}

// Parses a whole HTTP/1.1 response; the body must be exactly Content-Length bytes (none
// for HEAD).
HttpReply parse_reply(const std::string& raw, bool head) {
  HttpReply r;
  auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos) {
    r.error = "no end of headers in " + std::to_string(raw.size()) + " bytes";
    return r;
  }
  std::istringstream lines(raw.substr(0, end + 2));
  std::string line;
  std::getline(lines, line);
  bool status_ok = line.size() >= 14 && line.rfind("HTTP/1.1 ", 0) == 0 && line[9] >= '1' && line[9] <= '5' &&
                   isdigit(static_cast<unsigned char>(line[10])) && isdigit(static_cast<unsigned char>(line[11])) &&
                   line[12] == ' ' && line.back() == '\r';
  if (!status_ok) {
    r.error = "bad status line '" + line + "'";
    return r;
  }
  int status = std::stoi(line.substr(9, 3));
  while (std::getline(lines, line) && !line.empty()) {
    if (line.back() != '\r' || line.find(':') == std::string::npos) {
      r.error = "bad header line '" + line + "'";
      return r;
    }
    std::string name = line.substr(0, line.find(':'));
    for (char& c : name) c = char(tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(line.find(':') + 1);
    value = value.substr(value.find_first_not_of(' '));
    value.pop_back();  // CR
    if (r.headers.count(name)) {
      r.error = "header " + name + " twice";
      return r;
    }
    r.headers[name] = value;
  }
  r.body = raw.substr(end + 4);
  if (!head) {
    if (!r.headers.count("content-length")) {
      r.error = "no Content-Length";
      return r;
    }
    if (std::to_string(r.body.size()) != r.headers["content-length"]) {
      r.error = "Content-Length " + r.headers["content-length"] + " but " + std::to_string(r.body.size()) + " bytes";
      return r;
    }
  } else if (!r.body.empty()) {
    r.error = "a body after HEAD";
    return r;
  }
  r.status = status;
  return r;
}

HttpReply request(uint16_t port, const std::string& method, const std::string& path, const std::string& body = "",
                  std::chrono::milliseconds limit = 5000ms) {
  HttpReply r;
  int fd = connect_to(port);
  if (fd < 0) {
    r.error = std::string("connect: ") + strerror(errno);
    return r;
  }
  std::string text = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!body.empty()) text += "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  text += "\r\n" + body;
  std::string raw;
  bool sent = send_all(fd, text);
  bool complete = sent && read_to_eof(fd, &raw, limit);
  close(fd);
  if (!sent) r.error = "send failed";
  else if (!complete) r.error = "no complete reply within the limit (got " + std::to_string(raw.size()) + " bytes)";
  else r = parse_reply(raw, method == "HEAD");
  return r;
}

HttpReply get(uint16_t port, const std::string& path) { return request(port, "GET", path); }

// ---------------------------------------------------------------------------------------
// A strict parser of the Prometheus text exposition format 0.0.4, as promtool checks it:
// every family has one HELP and one TYPE (counter or gauge here) before its samples, which
// are contiguous; valid metric and label names; escaped label values; values that parse;
// counters named *_total and never negative; no series twice.

struct Series {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> help, type;  // per family
  std::vector<Series> series;
  std::string error;  // "" when valid

  // The value of the one series with this name whose labels include `want`; NaN if there
  // is none, or more than one.
  double value(const std::string& name, const std::map<std::string, std::string>& want = {}) const {
    double found = NAN;
    int matches = 0;
    for (const Series& s : series) {
      if (s.name != name) continue;
      bool ok = true;
      for (const auto& [k, v] : want) ok = ok && s.labels.count(k) && s.labels.at(k) == v;
      if (ok) {
        found = s.value;
        ++matches;
      }
    }
    return matches == 1 ? found : NAN;
  }
};

// [a-zA-Z_:][a-zA-Z0-9_:]* for metrics; [a-zA-Z_][a-zA-Z0-9_]*, not __*, for labels.
bool name_ok(const std::string& s, bool colon) {
  if (s.empty() || isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || (colon && c == ':'))) return false;
  return true;
}
bool metric_name(const std::string& s) { return name_ok(s, true); }
bool label_name(const std::string& s) { return name_ok(s, false) && s.rfind("__", 0) != 0; }

// A Go ParseFloat number as the format allows it, in decimal; NaN, +Inf, -Inf.
bool parse_value(const std::string& text, double* value) {
  if (text == "NaN") return *value = NAN, true;
  if (text == "+Inf" || text == "Inf") return *value = INFINITY, true;
  if (text == "-Inf") return *value = -INFINITY, true;
  if (text.empty() || text.find_first_not_of("0123456789.eE+-") != std::string::npos ||
      text.find_first_of("0123456789") == std::string::npos)
    return false;
  char* end = nullptr;
  *value = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

bool digits(const std::string& s, size_t from = 0) {
  return s.size() > from && s.find_first_not_of("0123456789", from) == std::string::npos;
}

Exposition parse_prometheus(const std::string& text) {
  Exposition e;
  auto fail = [&](size_t line_no, const std::string& line, const std::string& why) {
    e.error = "line " + std::to_string(line_no) + " '" + line + "': " + why;
    return e;
  };
  if (text.empty() || text.back() != '\n') return fail(0, "", "the exposition does not end with a newline");
  std::set<std::string> done;  // families whose samples are over
  std::set<std::string> keys;  // series seen
  std::string current;         // family of the previous sample
  std::istringstream in(text);
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    for (char c : line)
      if (static_cast<unsigned char>(c) < 0x20) return fail(n, line, "control character");
    if (line[0] == '#') {
      size_t name_end = line.find(' ', 7);
      if ((line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) && name_end != std::string::npos &&
          name_end > 7) {
        std::string kind = line.substr(2, 4), name = line.substr(7, name_end - 7), rest = line.substr(name_end + 1);
        if (!metric_name(name)) return fail(n, line, "invalid metric name");
        auto& table = kind == "HELP" ? e.help : e.type;
        if (table.count(name)) return fail(n, line, "second " + kind + " for " + name);
        if (done.count(name) || current == name) return fail(n, line, kind + " after the samples of " + name);
        if (kind == "TYPE" && rest != "counter" && rest != "gauge") return fail(n, line, "TYPE is not counter or gauge");
        if (kind == "TYPE" && rest == "counter" && (name.size() < 6 || name.compare(name.size() - 6, 6, "_total") != 0))
          return fail(n, line, "a counter not named *_total");
        if (kind == "HELP") {
          for (size_t i = 0; i < rest.size(); ++i)
            if (rest[i] == '\\' && (i + 1 == rest.size() || (rest[i + 1] != '\\' && rest[i + 1] != 'n')))
              return fail(n, line, "bad escape in HELP");
            else if (rest[i] == '\\')
              ++i;
          if (rest.empty()) return fail(n, line, "empty HELP");
        }
        table[name] = rest;
        continue;
      }
      if (line.rfind("# HELP", 0) == 0 || line.rfind("# TYPE", 0) == 0) return fail(n, line, "malformed HELP/TYPE");
      continue;  // another comment
    }
    Series s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!metric_name(s.name)) return fail(n, line, "invalid metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        size_t eq = line.find('=', i);
        if (eq == std::string::npos) return fail(n, line, "label without '='");
        std::string key = line.substr(i, eq - i);
        if (!label_name(key)) return fail(n, line, "invalid label name '" + key + "'");
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') return fail(n, line, "label value not quoted");
        ++i;
        std::string value;
        while (true) {
          if (i >= line.size()) return fail(n, line, "unterminated label value");
          char c = line[i++];
          if (c == '"') break;
          if (c == '\\') {
            if (i >= line.size()) return fail(n, line, "unterminated escape");
            char d = line[i++];
            if (d == 'n') value += '\n';
            else if (d == '\\' || d == '"') value += d;
            else return fail(n, line, "bad escape in a label value");
          } else {
            value += c;
          }
        }
        if (s.labels.count(key)) return fail(n, line, "label " + key + " twice");
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
        else if (i >= line.size() || line[i] != '}') return fail(n, line, "expected ',' or '}'");
      }
    }
    if (i >= line.size() || line[i] != ' ') return fail(n, line, "expected one space before the value");
    std::string rest = line.substr(i + 1);
    std::string value_text = rest.substr(0, rest.find(' '));
    if (rest.find(' ') != std::string::npos) {
      std::string stamp = rest.substr(rest.find(' ') + 1);
      if (!digits(stamp, stamp.rfind('-', 0) == 0 ? 1 : 0)) return fail(n, line, "bad timestamp");
    }
    if (!parse_value(value_text, &s.value)) return fail(n, line, "value '" + value_text + "' is not a number");
    // Counters and gauges: the sample is named as its family.
    const std::string& family = s.name;
    if (!e.help.count(family)) return fail(n, line, "sample before (or without) the HELP of " + family);
    if (!e.type.count(family)) return fail(n, line, "sample before (or without) the TYPE of " + family);
    if (done.count(family)) return fail(n, line, "samples of " + family + " are not contiguous");
    if (current != family) {
      if (!current.empty()) done.insert(current);
      current = family;
    }
    if (e.type[family] == "counter" && !(s.value >= 0)) return fail(n, line, "a counter below 0 or NaN");
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) key += "\x01" + k + "=" + v;
    if (!keys.insert(key).second) return fail(n, line, "the same series twice");
    e.series.push_back(std::move(s));
  }
  for (const auto& [name, type] : e.type)
    if (!e.help.count(name)) return fail(n, "", "TYPE without HELP for " + name);
  for (const auto& [name, help] : e.help)
    if (!e.type.count(name)) return fail(n, "", "HELP without TYPE for " + name);
  return e;
}

// The parser must be able to fail: each of these breaks one rule.
TEST(Prometheus, TheTestParserRejectsBrokenExpositions) {
  const std::string ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\na_total{x=\"2\"} 4\n";
  ASSERT_EQ(parse_prometheus(ok).error, "");
  EXPECT_EQ(parse_prometheus(ok).value("a_total", {{"x", "2"}}), 4);
  for (const std::string& bad : {
           std::string("# TYPE a_total counter\na_total 1\n"),                            // no HELP
           std::string("# HELP a_total A.\na_total 1\n# TYPE a_total counter\n"),          // TYPE late
           std::string("# HELP a A.\n# TYPE a counter\na 1\n"),                           // counter without _total
           std::string("# HELP a A.\n# TYPE a summary\na 1\n"),                           // other type
           std::string("# HELP a A.\n# HELP a A.\n# TYPE a gauge\na 1\n"),                // HELP twice
           std::string("# HELP a A.\n# TYPE a gauge\na 1\na 2\n"),                        // same series twice
           std::string("# HELP a A.\n# TYPE a gauge\na one\n"),                           // not a number
           std::string("# HELP a A.\n# TYPE a gauge\na{1x=\"v\"} 1\n"),                   // label name
           std::string("# HELP a A.\n# TYPE a gauge\na{x=\"v\\q\"} 1\n"),                 // escape
           std::string("# HELP 9a A.\n# TYPE 9a gauge\n9a 1\n"),                          // metric name
           std::string("# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n"),
           std::string("# HELP a_total A.\n# TYPE a_total counter\na_total -1\n"),         // negative counter
           std::string("# HELP a A.\n# TYPE a gauge\na 1"),                               // no final newline
       })
    EXPECT_NE(parse_prometheus(bad).error, "") << bad;
}

// ---------------------------------------------------------------------------------------

// Listening TCP sockets held by process `pid` (from /proc/net/tcp{,6} and its fds).
int listening_sockets_of(pid_t pid) {
  std::set<std::string> inodes;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* entry = readdir(d)) {
      char target[256];
      ssize_t n = readlink((dir + "/" + entry->d_name).c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      std::string t = target;
      if (t.rfind("socket:[", 0) == 0) inodes.insert(t.substr(8, t.size() - 9));
    }
    closedir(d);
  }
  int count = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // heading
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      f >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      if (state == "0A" && inodes.count(inode)) ++count;  // TCP_LISTEN
    }
  }
  return count;
}

// Child processes of `pid` whose title is `title`.
int children_titled(pid_t pid, const std::string& title) {
  int count = 0;
  DIR* d = opendir("/proc");
  while (dirent* entry = d ? readdir(d) : nullptr) {
    if (!isdigit(static_cast<unsigned char>(entry->d_name[0]))) continue;
    std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    auto close_paren = text.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(text.substr(close_paren + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != pid) continue;
    std::ifstream cmd(std::string("/proc/") + entry->d_name + "/cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    if (cmdline.substr(0, cmdline.find('\0')) == title) ++count;
  }
  if (d) closedir(d);
  return count;
}

TEST(Setup, HttpIsOffByDefault) {
  Relay relay;
  EXPECT_EQ(relay.ready_line().find("http="), std::string::npos) << relay.ready_line();
  EXPECT_EQ(relay.http_port(), 0);
  EXPECT_EQ(relay.child_pid(kHttp), 0);
  EXPECT_EQ(relay.shm().process(kHttp).state.load(), uint32_t(ProcessState::kStopped));
  EXPECT_STREQ(relay.shm().header().http_address, "");
  EXPECT_EQ(children_titled(relay.pid(), "vrelayd: http"), 0);
  EXPECT_EQ(children_titled(relay.pid(), "vrelayd: control"), 1);  // the lookup works
  EXPECT_EQ(listening_sockets_of(relay.pid()), 1) << "only the control socket listens";
}

TEST(Setup, HttpListenStartsTheHttpProcessOnItsOwnSocket) {
  Relay relay(kHttpYaml);
  ASSERT_NE(relay.http_port(), 0) << relay.ready_line();
  // The ready line keeps its fields and order and ends with http=.
  std::string tail = " http=127.0.0.1:" + std::to_string(relay.http_port());
  EXPECT_EQ(relay.ready_line().rfind(tail), relay.ready_line().size() - tail.size()) << relay.ready_line();
  EXPECT_NE(relay.ready_line().find(" pid=" + std::to_string(relay.pid()) + tail), std::string::npos);
  EXPECT_EQ(std::string(relay.shm().header().http_address), "127.0.0.1:" + std::to_string(relay.http_port()));
  pid_t http = relay.child_pid(kHttp);
  ASSERT_GT(http, 0);
  EXPECT_EQ(relay.shm().process(kHttp).state.load(), uint32_t(ProcessState::kReady));
  EXPECT_EQ(children_titled(relay.pid(), "vrelayd: http"), 1);
  EXPECT_EQ(listening_sockets_of(relay.pid()), 2) << "control and http";
  EXPECT_EQ(listening_sockets_of(http), 1) << "the http process keeps the http socket alone";
  EXPECT_EQ(listening_sockets_of(relay.child_pid(kControl)), 1) << "the control process does not hold the http socket";
}

TEST(Setup, CommandLineOverridesHttpListen) {
  ProgramResult help = run_vrelayd({"--help"});
  EXPECT_NE(help.output().find("--http HOST:PORT"), std::string::npos) << help.output();
  ProgramResult bad = run_vrelayd({"--http", "nonsense", "--check-config"});
  EXPECT_EQ(bad.status, 2) << bad.output();
  EXPECT_NE(bad.output().find("http address"), std::string::npos) << bad.output();
  EXPECT_EQ(run_vrelayd({"--http", "127.0.0.1:99999", "--check-config"}).status, 2);
  EXPECT_EQ(run_vrelayd({"--http", "off", "--check-config"}).status, 0);
  EXPECT_EQ(run_vrelayd({"--http", "[::1]:0", "--check-config"}).status, 0);
  {
    Relay relay("", {"--http", "127.0.0.1:0"});
    EXPECT_NE(relay.http_port(), 0) << relay.ready_line();
    EXPECT_EQ(get(relay.http_port(), "/metrics").status, 200);
  }
  {
    Relay relay(kHttpYaml, {"--http", "off"});
    EXPECT_EQ(relay.http_port(), 0) << relay.ready_line();
    EXPECT_EQ(relay.child_pid(kHttp), 0);
  }
}

// One subscriber on a sink, `count` datagrams through the relay, all received; waits until
// the fan-out has counted them, so every reader sees the same figures.
struct Traffic {
  Viewer viewer;
  uint64_t datagrams = 0, bytes = 0;

  Traffic(Relay& relay, uint64_t count) : viewer(relay) {
    UdpSource source(relay.ingest_port());
    for (uint64_t i = 0; i < count; ++i) {
      source.send(test_payload(i));
      bytes += test_payload(i).size();
    }
    for (uint64_t i = 0; i < count; ++i) EXPECT_TRUE(is_payload(viewer.sink.receive(), i));
    datagrams = count;
    EXPECT_TRUE(wait_until([&] {
      Counters c = relay.counters();
      return c["fanout.sent_datagrams"] == count && c.subscribers().size() == 1 && c.subscribers()[0].datagrams == count;
    })) << "the fan-out did not count the " << count << " datagrams";
  }
};

// Prometheus' own linter on what /metrics serves, subscriber series included: the format,
// and its naming rules (base units, _total on counters, snake_case).
TEST(Metrics, PromtoolFindsNoProblem) {
  ASSERT_EQ(run_program({"/bin/sh", "-c", "command -v promtool"}).status, 0)
      << "promtool is missing (scripts/install-deps.sh takes it out of the Debian package prometheus)";
  Relay relay(kHttpYaml);
  Traffic traffic(relay, 5);
  HttpReply r = get(relay.http_port(), "/metrics");
  ASSERT_EQ(r.status, 200) << r;
  std::string path = "/tmp/vrelay-metrics-" + std::to_string(getpid()) + ".txt";
  std::ofstream(path) << r.body;
  ProgramResult lint = run_program({"/bin/sh", "-c", "exec promtool check metrics < \"$0\"", path});
  EXPECT_EQ(lint.status, 0) << "promtool: " << lint.output() << "\n" << r.body;
  EXPECT_EQ(lint.output(), "");
  unlink(path.c_str());
}

TEST(Metrics, ValidPrometheusTextThatCountsTheTraffic) {
  Relay relay(kHttpYaml);
  Traffic traffic(relay, 25);
  HttpReply r = get(relay.http_port(), "/metrics");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.header("cache-control"), "no-store");
  Exposition m = parse_prometheus(r.body);
  ASSERT_EQ(m.error, "") << r.body;

  EXPECT_EQ(m.value("vrelay_ingest_datagrams_total"), 25);
  EXPECT_EQ(m.value("vrelay_ingest_bytes_total"), double(traffic.bytes));
  EXPECT_EQ(m.value("vrelay_fanout_datagrams_total"), 25);
  EXPECT_EQ(m.value("vrelay_fanout_sent_datagrams_total"), 25);
  EXPECT_EQ(m.value("vrelay_fanout_sent_bytes_total"), double(traffic.bytes));
  EXPECT_EQ(m.value("vrelay_fanout_send_errors_total"), 0);
  EXPECT_EQ(m.value("vrelay_fanout_playing"), 1);
  EXPECT_EQ(m.value("vrelay_control_subscribers"), 1);
  EXPECT_EQ(m.value("vrelay_control_sessions_open"), 1);
  std::map<std::string, std::string> sub = {{"address", "127.0.0.1"}, {"port", std::to_string(traffic.viewer.sink.port())}};
  EXPECT_EQ(m.value("vrelay_subscriber_playing", sub), 1);
  EXPECT_EQ(m.value("vrelay_subscriber_datagrams_total", sub), 25);
  EXPECT_EQ(m.value("vrelay_subscriber_bytes_total", sub), double(traffic.bytes));
  EXPECT_EQ(m.value("vrelay_subscriber_errors_total", sub), 0);
  EXPECT_EQ(m.value("vrelay_info", {{"instance", relay.instance()}}), 1);
  for (const char* role : {"ingest", "fanout", "control", "http"}) {
    EXPECT_EQ(m.value("vrelay_process_ready", {{"process", role}}), 1) << role;
    EXPECT_EQ(m.value("vrelay_process_restarts_total", {{"process", role}}), 0) << role;
  }
  EXPECT_GE(m.value("vrelay_uptime_seconds"), 0);
  // Every counter of counters.def is there (the http group too), HELP and TYPE included.
  for (size_t i = 0; i < kCounterCount; ++i) {
    std::string name = metric_name(kCounters[i]);
    EXPECT_FALSE(std::isnan(m.value(name))) << name;
    EXPECT_EQ(m.type[name], kCounters[i].kind == CounterKind::counter && name.find("_seconds") == std::string::npos
                                ? "counter" : "gauge") << name;
  }
  // This request is counted once it is answered: the next scrape sees it.
  Exposition again = parse_prometheus(get(relay.http_port(), "/metrics").body);
  ASSERT_EQ(again.error, "");
  EXPECT_EQ(again.value("vrelay_http_requests_total"), m.value("vrelay_http_requests_total") + 1);
  EXPECT_GE(again.value("vrelay_http_connections_total"), 2);
}

TEST(StatusJson, TheSameFiguresAsJson) {
  Relay relay(kHttpYaml);
  Traffic traffic(relay, 40);
  HttpReply r = get(relay.http_port(), "/status.json");
  ASSERT_EQ(r.status, 200) << r;
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("cache-control"), "no-store");
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.body;
  EXPECT_EQ(j["instance"], relay.instance());
  EXPECT_EQ(j["supervisor_pid"], relay.pid());
  EXPECT_EQ(j["source"], "live");
  EXPECT_EQ(j["counters"]["ingest.datagrams"], 40u);
  EXPECT_EQ(j["counters"]["ingest.bytes"], traffic.bytes);
  EXPECT_EQ(j["counters"]["fanout.sent_datagrams"], 40u);
  EXPECT_EQ(j["counters"]["fanout.sent_bytes"], traffic.bytes);
  EXPECT_TRUE(j["counters"].contains("http.requests"));
  ASSERT_EQ(j["processes"].size(), size_t(kRoleCount));
  for (const auto& p : j["processes"]) {
    EXPECT_EQ(p["state"], "ready") << p;
    EXPECT_GT(p["pid"].get<int>(), 0) << p;
  }
  EXPECT_EQ(j["processes"][int(kHttp)]["role"], "http");
  EXPECT_EQ(j["processes"][int(kHttp)]["pid"], relay.child_pid(kHttp));
  ASSERT_EQ(j["subscribers"].size(), 1u) << j["subscribers"];
  const auto& sub = j["subscribers"][0];
  EXPECT_EQ(sub["address"], "127.0.0.1");
  EXPECT_EQ(sub["port"], traffic.viewer.sink.port());
  EXPECT_EQ(sub["state"], "playing");
  EXPECT_EQ(sub["datagrams"], 40u);
  EXPECT_EQ(sub["bytes"], traffic.bytes);
  EXPECT_EQ(sub["errors"], 0u);
}

nlohmann::json status_json(uint16_t http_port) {
  HttpReply r = get(http_port, "/status.json");
  EXPECT_EQ(r.status, 200) << r;
  return nlohmann::json::parse(r.body, nullptr, false);
}

// A subscription shows the name of the control session that owns it, and follows a NAME.
TEST(StatusJson, SubscriberShowsTheNameOfItsSession) {
  Relay relay(kHttpYaml);
  Session ana(relay.control_port());
  ASSERT_EQ(ana.command("NAME ana"), "OK");
  UdpSink sink;
  ASSERT_EQ(ana.command("CONECTAR " + std::to_string(sink.port())), "OK");
  nlohmann::json j = status_json(relay.http_port());
  ASSERT_EQ(j["subscribers"].size(), 1u) << j;
  EXPECT_EQ(j["subscribers"][0]["owner_name"], "ana");
  EXPECT_EQ(j["subscribers"][0]["orphan"], false);

  ASSERT_EQ(ana.command("NAME bob"), "OK");  // the slot is rewritten before the OK
  j = status_json(relay.http_port());
  ASSERT_EQ(j["subscribers"].size(), 1u) << j;
  EXPECT_EQ(j["subscribers"][0]["owner_name"], "bob");

  Viewer guest(relay);  // no NAME: the guest name given at connect
  j = status_json(relay.http_port());
  ASSERT_EQ(j["subscribers"].size(), 2u) << j;
  for (const auto& sub : j["subscribers"]) {
    if (sub["port"] == guest.sink.port()) EXPECT_EQ(sub["owner_name"].get<std::string>().rfind("guest-", 0), 0u) << sub;
    else EXPECT_EQ(sub["owner_name"], "bob") << sub;
  }
  Counters c = relay.counters();  // vrelaystat's and the tests' reading of the segment too
  ASSERT_EQ(c.subscribers().size(), 2u);
}

// The daemon keeps the source's rate of the last ten minutes, one sample a second, and a
// restarted http process serves it whole.
TEST(StatusJson, HistoryOfTheSourceRate) {
  Relay relay("http:\n  listen: 127.0.0.1:0\ningest:\n  source: generator\n  interval_ms: 10\n");
  auto started = Clock::now();
  constexpr size_t kSeconds = 3;
  nlohmann::json history;
  EXPECT_TRUE(wait_until([&] {
    history = status_json(relay.http_port())["history"];
    return history["bytes_per_s"].size() >= kSeconds;
  }, 15000ms)) << history;
  double ran_s = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(history["interval_s"], 1);
  const auto& samples = history["bytes_per_s"];
  ASSERT_GE(samples.size(), kSeconds) << history;
  EXPECT_LE(double(samples.size()), ran_s + 2) << "one sample a second, not more";
  // 100 datagrams a second: the newest full second carries the generator's rate.
  EXPECT_GT(samples[samples.size() - 1].get<uint64_t>(), 0u) << history;

  pid_t old_pid = relay.child_pid(kHttp);
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kHttp, old_pid)) << relay.log();
  nlohmann::json after = status_json(relay.http_port())["history"];
  EXPECT_GE(after["bytes_per_s"].size(), samples.size()) << after;
}

// ---------------------------------------------------------------------------------------
// GET /stream: the stream over HTTP.

// A /stream client: sends the request, reads the reply's headers, then the body as it
// comes, chunked transfer coding undone (or close-delimited without it).
class StreamClient {
 public:
  // receive_buffer: SO_RCVBUF before connecting (0 = the kernel's default), for a client
  // that stops reading.
  explicit StreamClient(uint16_t port, const std::string& method = "GET", int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        !send_all(fd_, method + " /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) {
      error = std::string("connect or send: ") + strerror(errno);
      return;
    }
    auto deadline = Clock::now() + 5000ms;
    while (raw_.find("\r\n\r\n") == std::string::npos)
      if (!fill(deadline)) {
        error = "no complete headers within 5 s (got '" + raw_.substr(0, 200) + "')";
        return;
      }
    size_t end = raw_.find("\r\n\r\n");
    reply = parse_reply(raw_.substr(0, end + 4), true);
    raw_.erase(0, end + 4);
    chunked_ = reply.header("transfer-encoding") == "chunked";
  }
  ~StreamClient() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads until `body` holds `size` bytes at least; false if the stream ended or the time
  // ran out first.
  bool read_body(size_t size, std::chrono::milliseconds limit = 5000ms) {
    auto deadline = Clock::now() + limit;
    while (true) {
      decode();
      if (body.size() >= size) return true;
      if (ended || !fill(deadline)) return false;
    }
  }
  // Reads whatever comes until the connection ends (true) or the time runs out (false).
  bool read_to_end(std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    while (!closed_) {
      decode();
      if (!fill(deadline) && !closed_) return false;
    }
    decode();
    return true;
  }

  HttpReply reply;      // status and headers
  std::string error;    // why there is no reply
  std::string body;     // decoded so far
  bool ended = false;   // the last chunk came (a regular end), or the connection closed
  bool complete = false;  // the last chunk came: the server ended the response normally

 private:
  // More raw bytes, within the deadline; false on timeout, end or error (closed_ set then).
  bool fill(Clock::time_point deadline) {
    if (fd_ < 0 || closed_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      ended = true;
      return false;
    }
    raw_.append(buf, size_t(n));
    return true;
  }
  // Moves what raw_ holds of the body into `body`.
  void decode() {
    if (!chunked_) {
      body += raw_;
      raw_.clear();
      return;
    }
    while (!complete) {
      if (chunk_left_ == 0) {
        size_t line_end = raw_.find("\r\n");
        if (line_end == std::string::npos) return;
        if (after_chunk_) {  // the CRLF that ends a chunk's data
          raw_.erase(0, 2);
          after_chunk_ = false;
          continue;
        }
        chunk_left_ = std::stoull(raw_.substr(0, line_end), nullptr, 16);
        raw_.erase(0, line_end + 2);
        if (chunk_left_ == 0) {
          complete = ended = true;
          return;
        }
      }
      size_t take = std::min<size_t>(chunk_left_, raw_.size());
      if (take == 0) return;
      body.append(raw_, 0, take);
      raw_.erase(0, take);
      chunk_left_ -= take;
      after_chunk_ = chunk_left_ == 0;
    }
  }

  int fd_ = -1;
  std::string raw_;
  bool chunked_ = false, closed_ = false, after_chunk_ = false;
  uint64_t chunk_left_ = 0;
};

// The counter datagrams of a byte stream, which must be nothing else.
std::vector<CounterDatagram> counter_datagrams(const std::string& bytes) {
  std::vector<CounterDatagram> out;
  for (size_t at = 0; at + kCounterDatagramSize <= bytes.size(); at += kCounterDatagramSize) {
    auto d = decode_counter(bytes.data() + at, kCounterDatagramSize);
    if (!d) {
      ADD_FAILURE() << "no counter datagram at byte " << at;
      break;
    }
    out.push_back(*d);
  }
  return out;
}

const char* kGeneratorYaml = "http:\n  listen: 127.0.0.1:0\ningest:\n  source: generator\n  interval_ms: 2\n";

TEST(Stream, TheGeneratorsDatagramsArriveWholeAndInOrder) {
  Relay relay(kGeneratorYaml);
  ASSERT_TRUE(wait_until([&] { return relay.counters()["ingest.datagrams"] >= 5; }));
  StreamClient client(relay.http_port());
  ASSERT_EQ(client.reply.status, 200) << client.error << client.reply;
  EXPECT_EQ(client.reply.header("content-type"), "video/mp2t");
  EXPECT_EQ(client.reply.header("cache-control"), "no-store");
  EXPECT_EQ(client.reply.header("content-length"), "");
  EXPECT_EQ(client.reply.header("transfer-encoding"), "chunked");
  constexpr size_t kCount = 300;  // 0.6 s of the generator
  ASSERT_TRUE(client.read_body(kCount * kCounterDatagramSize)) << client.body.size() << " bytes";
  std::vector<CounterDatagram> got = counter_datagrams(client.body);
  ASSERT_GE(got.size(), kCount);
  // No key frames: it started live, at the ring's head, and lost nothing since.
  EXPECT_GE(got[0].index, 5u);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].index, got[0].index + i) << "datagram " << i;
    ASSERT_EQ(got[i].value, counter_value(got[i].index));
  }
  Counters c = relay.counters();
  EXPECT_EQ(c["http.streams"], 1u);
  EXPECT_EQ(c["http.streams_opened"], 1u);
  EXPECT_GE(c["http.stream_bytes"], client.body.size());
  EXPECT_EQ(c["http.stream_cut"], 0u);
  nlohmann::json j = status_json(relay.http_port());
  EXPECT_EQ(j["stream_viewers"], 1u);
  client.close();
  EXPECT_TRUE(wait_until([&] { return relay.counters()["http.streams"] == 0; })) << "the gauge goes back to 0";
  EXPECT_EQ(relay.counters()["http.stream_cut"], 0u) << "a client that leaves is not cut";
}

TEST(Stream, HeadAnswersTheHeadersOnly) {
  Relay relay(kGeneratorYaml);
  HttpReply head = request(relay.http_port(), "HEAD", "/stream");
  ASSERT_EQ(head.status, 200) << head;
  EXPECT_EQ(head.header("content-type"), "video/mp2t");
  EXPECT_EQ(head.header("cache-control"), "no-store");
  EXPECT_EQ(head.header("content-length"), "");
  Counters c = relay.counters();
  EXPECT_EQ(c["http.streams_opened"], 0u);
  EXPECT_EQ(c["http.streams"], 0u);
}

// A stream opened mid-stream of MPEG-TS with key frames begins with the PAT, then the PMT,
// then the datagrams from a key frame on (the last one, or the one before it if the last
// is less than a second old), then goes on live: no gap, no repeat.
TEST(Stream, OpenedMidStreamItBeginsWithTheTablesThenAKeyFrame) {
  if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg and ffprobe are needed (scripts/install-deps.sh)";
  constexpr size_t kDatagram = 7 * kTsPacketSize;
  EncodedVideo video = encode_video("http-stream", "-c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -bf 0");
  ASSERT_EQ(video.key_positions.size(), 4u);
  std::vector<uint64_t> keys;
  for (uint64_t p : video.key_positions) keys.push_back(p / kDatagram);
  uint64_t count = video.bytes.size() / kDatagram, join = (keys[2] + keys[3]) / 2;
  auto datagrams = [&](uint64_t first, uint64_t end) {
    return std::string(reinterpret_cast<const char*>(video.bytes.data() + first * kDatagram), (end - first) * kDatagram);
  };
  Relay relay(kHttpYaml);
  UdpSource source(relay.ingest_port());
  auto send = [&](uint64_t first, uint64_t end) {
    for (uint64_t i = first; i < end; ++i) source.send(datagrams(i, i + 1));
    ASSERT_TRUE(wait_until([&] { return relay.counters()["ingest.datagrams"] == end; }));
  };
  send(0, join);
  StreamClient client(relay.http_port());
  ASSERT_EQ(client.reply.status, 200) << client.error << client.reply;
  ASSERT_TRUE(client.read_body(2 * kTsPacketSize + kDatagram)) << client.body.size();
  const uint8_t* body = reinterpret_cast<const uint8_t*>(client.body.data());
  EXPECT_EQ(ts_pid(body), 0) << "the PAT first";
  const StreamInfo& info = relay.shm().stream();
  uint64_t pmt_word0 = info.pmt[0].load();
  std::string pmt(reinterpret_cast<const char*>(&pmt_word0), 8);
  EXPECT_EQ(ts_pid(body + kTsPacketSize), ts_pid(reinterpret_cast<const uint8_t*>(pmt.data()))) << "then the PMT";
  EXPECT_EQ(client.body.substr(kTsPacketSize + 4, 100), [&] {  // the PMT's section, as ingest keeps it
    std::string packet;
    for (size_t w = 0; w < kTablePacketWords; ++w) {
      uint64_t word = info.pmt[w].load();
      packet.append(reinterpret_cast<const char*>(&word), 8);
    }
    return packet.substr(4, 100);
  }());
  // Then a key frame's datagram: the one before the last (all of it came within a second).
  std::string rest = client.body.substr(2 * kTsPacketSize);
  uint64_t start = rest.compare(0, kDatagram, datagrams(keys[1], keys[1] + 1)) == 0   ? keys[1]
                   : rest.compare(0, kDatagram, datagrams(keys[2], keys[2] + 1)) == 0 ? keys[2]
                                                                                       : count;
  ASSERT_NE(start, count) << "the stream does not go on with a key frame";
  send(join, count);
  size_t expected = 2 * kTsPacketSize + (count - start) * kDatagram;
  ASSERT_TRUE(client.read_body(expected)) << client.body.size() << " of " << expected;
  EXPECT_TRUE(client.body.substr(2 * kTsPacketSize) == datagrams(start, count)) << "a gap or a repeat";
  EXPECT_EQ(client.body.size(), expected);
}

// A record of the cut test's source: 1316 bytes, its index in the first 8 (big-endian),
// the rest its low byte.
std::string record(uint64_t index) {
  std::string r(1316, char(index & 0xFF));
  uint64_t be = htobe64(index);
  std::memcpy(r.data(), &be, 8);
  return r;
}

// A reader that stops reading is cut off (and counted) once it falls http.stream_buffer
// behind; a second reader loses nothing meanwhile, and /metrics keeps answering at once.
TEST(Stream, AReaderThatStopsIsCutWhileAnotherLosesNothing) {
  Relay relay("http:\n  listen: 127.0.0.1:0\n  stream_buffer: 262144\n");
  uint16_t port = relay.http_port();
  StreamClient stuck(port, "GET", 4096);
  StreamClient good(port);
  ASSERT_EQ(stuck.reply.status, 200) << stuck.error;
  ASSERT_EQ(good.reply.status, 200) << good.error;
  ASSERT_TRUE(wait_until([&] { return relay.counters()["http.streams"] == 2; }));
  UdpSource source(relay.ingest_port());
  constexpr uint64_t kBurst = 64, kMaxRecords = 40000;  // 52 MB at most
  auto started = Clock::now();
  uint64_t sent = 0;
  std::chrono::milliseconds slowest_metrics{0};
  while (relay.counters()["http.stream_cut"] == 0 && sent < kMaxRecords && Clock::now() - started < 30s) {
    for (uint64_t i = 0; i < kBurst; ++i) source.send(record(sent++));
    ASSERT_TRUE(wait_until([&] { return relay.counters()["ingest.datagrams"] == sent; })) << "ingest dropped some";
    ASSERT_TRUE(good.read_body(sent * 1316)) << "the good reader got " << good.body.size() << " of " << sent * 1316;
    if (sent % 1024 == 0) {
      auto before = Clock::now();
      EXPECT_EQ(get(port, "/metrics").status, 200);
      slowest_metrics = std::max(slowest_metrics, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - before));
    }
  }
  Counters c = relay.counters();
  ASSERT_EQ(c["http.stream_cut"], 1u) << "not cut after " << sent << " records";
  EXPECT_EQ(c["http.streams"], 1u) << "the good reader is still on";
  EXPECT_LT(slowest_metrics, 1000ms);
  auto before = Clock::now();
  HttpReply metrics = get(port, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_LT(Clock::now() - before, 1000ms);
  // The stuck reader's connection ends (its response unfinished) once it reads again.
  EXPECT_TRUE(stuck.read_to_end(10000ms)) << "the cut connection did not close";
  EXPECT_FALSE(stuck.complete) << "a cut response must not end like a complete one";
  // The good one got every record, in order, from the first.
  ASSERT_EQ(good.body.size(), sent * 1316);
  for (uint64_t i = 0; i < sent; ++i)
    ASSERT_TRUE(good.body.compare(i * 1316, 1316, record(i)) == 0) << "record " << i;
  EXPECT_NE(relay.log().find("cut off"), std::string::npos) << relay.log();
  EXPECT_TRUE(wait_until([&] { return relay.counters()["http.streams"] == 1; }));
}

TEST(Stream, OverMaxStreamsThe503IsCountedAndTheGaugeFalls) {
  Relay relay("http:\n  listen: 127.0.0.1:0\n  max_streams: 2\ningest:\n  source: generator\n  interval_ms: 5\n");
  uint16_t port = relay.http_port();
  auto one = std::make_unique<StreamClient>(port);
  auto two = std::make_unique<StreamClient>(port);
  ASSERT_EQ(one->reply.status, 200) << one->error;
  ASSERT_EQ(two->reply.status, 200) << two->error;
  HttpReply refused = get(port, "/stream");
  EXPECT_EQ(refused.status, 503) << refused;
  EXPECT_EQ(refused.header("content-type"), "text/plain; charset=utf-8");
  EXPECT_NE(refused.body.find("http.max_streams"), std::string::npos) << refused.body;
  EXPECT_EQ(get(port, "/metrics").status, 200) << "room for /metrics besides the streams";
  Counters c = relay.counters();
  EXPECT_EQ(c["http.streams_refused"], 1u);
  EXPECT_EQ(c["http.streams"], 2u);
  EXPECT_EQ(c["http.streams_opened"], 2u);
  ASSERT_TRUE(one->read_body(10 * kCounterDatagramSize)) << "the first two still stream";
  ASSERT_TRUE(two->read_body(10 * kCounterDatagramSize));
  one.reset();
  EXPECT_TRUE(wait_until([&] { return relay.counters()["http.streams"] == 1; }));
  StreamClient three(port);  // a place is free again
  EXPECT_EQ(three.reply.status, 200) << three.error;
  two.reset();
  three.close();
  EXPECT_TRUE(wait_until([&] { return relay.counters()["http.streams"] == 0; }));
  EXPECT_EQ(relay.counters()["http.stream_cut"], 0u);
}

// MHD does not see a suspended connection close: the http process asks itself, once a
// second, so a viewer that leaves while the source is silent is not counted for long.
TEST(Stream, AViewerLeavingWhileTheSourceIsSilentIsNotCountedLong) {
  Relay relay(kHttpYaml);  // no source at all: the ring's head never moves
  StreamClient client(relay.http_port());
  ASSERT_EQ(client.reply.status, 200) << client.error;
  ASSERT_TRUE(wait_until([&] { return relay.counters()["http.streams"] == 1; }));
  client.close();
  EXPECT_TRUE(wait_until([&] { return relay.counters()["http.streams"] == 0; }, 3000ms));
  EXPECT_EQ(relay.counters()["http.stream_cut"], 0u);
}

// http.max_streams and http.stream_buffer are the http process's: a reload that changes
// one replaces it (its viewers reconnect).
TEST(Stream, AReloadChangingAStreamKeyReplacesTheHttpProcess) {
  Relay relay(kHttpYaml);
  pid_t old = relay.child_pid(kHttp);
  std::ofstream(relay.config_path()) << kHttpYaml << "  max_streams: 3\n";
  ASSERT_EQ(kill(relay.pid(), SIGHUP), 0);
  ASSERT_TRUE(relay.wait_restarted(kHttp, old)) << relay.log();
  EXPECT_EQ(relay.counters()["supervisor.reloads"], 1u);
  EXPECT_EQ(get(relay.http_port(), "/metrics").status, 200);
}

TEST(Routes, StatusPageNotFoundAndMethodNotAllowed) {
  Relay relay(kHttpYaml);
  uint16_t port = relay.http_port();
  HttpReply page = get(port, "/");
  ASSERT_EQ(page.status, 200) << page;
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(page.header("cache-control"), "no-store");
  EXPECT_EQ(page.body.rfind("<!DOCTYPE html>", 0), 0u);
  for (const char* id : {"id=\"source-state\"", "id=\"subscribers\"", "id=\"subscriber-count\"", "status.json"})
    EXPECT_NE(page.body.find(id), std::string::npos) << id;
  // Self-contained: nothing loaded from another host.
  EXPECT_EQ(page.body.find("http://"), std::string::npos);
  EXPECT_EQ(page.body.find("https://"), std::string::npos);

  HttpReply head = request(port, "HEAD", "/metrics");
  EXPECT_EQ(head.status, 200) << head;
  EXPECT_EQ(head.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  HttpReply with_body = request(port, "GET", "/status.json", "a body a GET does not need");  // ignored
  EXPECT_EQ(with_body.status, 200) << with_body;

  for (const char* path : {"/nope", "/metrics/", "/status.json.bak", "/%2e%2e/metrics", "/../etc/passwd"}) {
    HttpReply r = get(port, path);
    EXPECT_EQ(r.status, 404) << path << ": " << r;
    EXPECT_EQ(r.header("content-type"), "text/plain; charset=utf-8") << path;
    EXPECT_NE(r.body.find("/metrics"), std::string::npos) << path;
    EXPECT_LT(r.body.size(), 200u);
  }
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS"}) {
    HttpReply r = request(port, method, "/metrics", std::string(method) == "POST" ? "a=1" : "");
    EXPECT_EQ(r.status, 405) << method << ": " << r;
    EXPECT_EQ(r.header("allow"), "GET, HEAD") << method;
  }
  // 5 not found + 4 refused methods = 9 errors; the 3 answers above plus these 9 = 12.
  Exposition m = parse_prometheus(get(port, "/metrics").body);
  ASSERT_EQ(m.error, "");
  EXPECT_EQ(m.value("vrelay_http_errors_total"), 9);
  EXPECT_EQ(m.value("vrelay_http_requests_total"), 12);
}

TEST(Supervision, KilledHttpProcessIsRestartedAndServesAgain) {
  Relay relay(kHttpYaml);
  ASSERT_EQ(get(relay.http_port(), "/metrics").status, 200);
  pid_t old_pid = relay.child_pid(kHttp);
  ASSERT_GT(old_pid, 0);
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(relay.wait_restarted(kHttp, old_pid)) << relay.log();
  HttpReply r = get(relay.http_port(), "/metrics");  // the same socket, never closed
  ASSERT_EQ(r.status, 200) << r;
  Exposition m = parse_prometheus(r.body);
  ASSERT_EQ(m.error, "");
  EXPECT_EQ(m.value("vrelay_process_restarts_total", {{"process", "http"}}), 1);
  EXPECT_EQ(m.value("vrelay_supervisor_child_restarts_total"), 1);
  Counters c = relay.counters();  // the restarts of every process at one moment
  EXPECT_EQ(c.process(kHttp).restarts, 1u);
  for (Role other : {kIngest, kFanout, kControl}) EXPECT_EQ(c.process(other).restarts, 0u) << role_name(other);
}

TEST(Clients, SilentAndHostileClientsDoNotBlockOthers) {
  Relay relay(kHttpYaml);
  uint16_t port = relay.http_port();
  std::vector<int> silent;
  for (int i = 0; i < 8; ++i) {
    int fd = connect_to(port);
    ASSERT_GE(fd, 0);
    silent.push_back(fd);
  }
  int partial = connect_to(port);  // half a request line, then nothing
  ASSERT_TRUE(send_all(partial, "GET /metr"));
  // Each request below must be answered within 2 s although those clients hold connections.
  for (int i = 0; i < 5; ++i) {
    auto start = Clock::now();
    HttpReply r = request(port, "GET", "/status.json", "", 2000ms);
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_LT(Clock::now() - start, 2000ms);
  }
  // Headers larger than the per-connection memory: refused, and nobody else notices.
  int huge = connect_to(port);
  std::string raw;
  send_all(huge, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: " + std::string(64 * 1024, 'a') + "\r\n\r\n");
  EXPECT_TRUE(read_to_eof(huge, &raw, 5000ms)) << "the server neither refused nor closed";
  EXPECT_EQ(raw.find("HTTP/1.1 200"), std::string::npos) << raw.substr(0, 200);
  close(huge);
  EXPECT_EQ(get(port, "/metrics").status, 200);
  // The silent clients are still connected (the idle timeout is longer): they were served
  // alongside, not cut off to make room.
  for (int fd : silent) {
    pollfd p{fd, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 0), 0) << "a silent client was disconnected early";
    close(fd);
  }
  close(partial);
  EXPECT_EQ(relay.restarts(kHttp), 0u);
}

}  // namespace
