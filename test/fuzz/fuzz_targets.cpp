// The fuzz targets (fuzz_targets.hpp). Besides "no crash, no sanitizer report", each checks
// what its code promises (a property that does not hold aborts with the reason on stderr):
// lines that do not depend on how reads cut the stream, replies that stay one valid line,
// addresses that read back as they print, a bit-by-bit allow-list check, segment parts
// that lie inside the mapping, key frames that never point ahead.
#include "fuzz_targets.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "control_client.hpp"
#include "mpegts.hpp"
#include "net.hpp"
#include "protocol.hpp"
#include "shm.hpp"
#include "stats_view.hpp"

namespace vrelay::fuzz {
namespace {

void expect(bool holds, const char* property) {
  if (holds) return;
  std::fprintf(stderr, "fuzz: property does not hold: %s\n", property);
  std::abort();  // a crash to libFuzzer and to the driver, input saved
}

std::string_view as_text(const uint8_t* data, size_t size) { return {reinterpret_cast<const char*>(data), size}; }

// ---- control: a session's bytes

// One line of text ending in CR LF, with no other CR or LF: a reply can never split in two.
bool one_line(std::string_view s) {
  return s.size() >= 2 && s.substr(s.size() - 2) == "\r\n" && s.substr(0, s.size() - 2).find_first_of("\r\n") == std::string_view::npos;
}

// The reply the relay would give: parse, then OK with the arguments (as ECHO does: they
// come back to the client) or the error. Both forms must stay one valid line.
void answer(std::string_view line) {
  protocol::Parsed p = protocol::parse(line);
  if (!p.ok && !p.spec && p.message.empty()) return;  // a blank line gets no reply
  protocol::Reply reply;
  if (p.ok) {
    std::string text;
    for (std::string_view arg : p.args) {
      (void)parse_port(arg, 1025, 65535);
      if (!text.empty()) text += ' ';
      text += arg;
    }
    reply = protocol::ok(text);
  } else {
    reply = protocol::err(p.error, p.message);
  }
  std::string as_line = protocol::render(reply, false);
  expect(one_line(as_line), "a text reply is one line");
  expect(protocol::is_clean_text(std::string_view(as_line).substr(0, as_line.size() - 2)),
         "a text reply to a clean line is clean UTF-8 text");
  std::string as_json = protocol::render(reply, true);
  expect(one_line(as_json), "a JSON reply is one line");
  auto parsed = nlohmann::json::parse(as_json, nullptr, false);
  expect(!parsed.is_discarded() && parsed.value("text", std::string("\x01")) == reply.text,
         "a JSON reply parses back with its text");
}

// What a LineReader hands on, in order.
struct Recorder : protocol::LineReader::Sink {
  Recorder(size_t max_line, bool replies) : max_line(max_line), replies(replies) {}
  size_t max_line;
  bool replies;
  std::vector<std::string> events;

  void on_line(std::string_view line) override {
    expect(line.size() + 1 <= max_line, "a line fits max_line, LF included");
    events.push_back("line " + std::string(line));
    if (replies) answer(line);
  }
  void on_line_too_long() override { events.push_back("too long"); }
  void on_telnet_reply(std::string_view bytes) override {
    expect(bytes.size() == 3 && uint8_t(bytes[0]) == 255 && (uint8_t(bytes[1]) == 252 || uint8_t(bytes[1]) == 254),
           "a telnet answer is IAC WONT or DONT, then the option");
    events.push_back("telnet " + std::string(bytes));
  }
};

}  // namespace

int control(const uint8_t* data, size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  // The default line limit: all of it in one read, and cut into reads of 1-7 bytes where the
  // bytes say. TCP cuts anywhere, also inside a telnet sequence or a UTF-8 character.
  Recorder whole(1024, true), cut(1024, false);
  protocol::LineReader one_read(1024), many_reads(1024);
  one_read.feed(bytes, size, whole);
  for (size_t at = 0; at < size;) {
    size_t n = std::min<size_t>(size - at, 1 + data[at] % 7);
    many_reads.feed(bytes + at, n, cut);
    at += n;
  }
  expect(whole.events == cut.events, "the lines do not depend on how reads cut the stream");
  // The smallest limit control.max_line allows: the over-long path (the replies were checked).
  Recorder small(64, false);
  protocol::LineReader short_lines(64);
  short_lines.feed(bytes, size, small);
  return 0;
}

// ---- config: a vrelay.yaml

int config(const uint8_t* data, size_t size) {
  Config c;
  try {
    c = load_config_text(std::string(as_text(data, size)), "fuzz.yaml");
  } catch (const ConfigError&) {
    return 0;
  }
  // What vrelay.yaml(5) promises of a configuration that loads.
  expect(Segment::valid_instance_name(c.instance).ok(), "instance is a valid name");
  expect(!c.ingest.allow.empty(), "ingest.allow is not empty");
  expect(c.control.port_min >= 1 && c.control.port_min <= c.control.port_max, "control.ports is a range");
  expect(c.control.max_line >= 64 && c.control.max_line <= 65536, "control.max_line is in range");
  expect(c.ingest.max_datagram >= 188 && c.ingest.max_datagram <= 65507, "ingest.max_datagram is in range");
  uint32_t slots = c.ingest.ring_slots;
  expect(slots >= 16 && slots <= (1u << 20) && (slots & (slots - 1)) == 0, "ingest.ring_slots is a power of two in range");
  uint32_t ring = ring_slot_count(c);
  expect(ring >= slots && ring <= (1u << 20) && (ring & (ring - 1)) == 0, "the ring is a power of two in range");
  expect(c.moderators.tokens.size() == c.moderators.token_files.size(), "one token per token file");
  return 0;
}

// ---- address: HOST:PORT, ADDRESS/PREFIX, ports

namespace {
// Cidr::contains, the slow way: the first `prefix` bits, one by one.
bool contains_bitwise(const Cidr& net, const Endpoint& ep) {
  if (ep.family() != net.family) return false;
  const uint8_t* a = net.family == AF_INET
                         ? reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&ep.storage)->sin_addr)
                         : reinterpret_cast<const sockaddr_in6*>(&ep.storage)->sin6_addr.s6_addr;
  for (int bit = 0; bit < net.prefix; ++bit) {
    int mask = 0x80 >> (bit % 8);
    if ((a[bit / 8] & mask) != (net.bytes[bit / 8] & mask)) return false;
  }
  return true;
}
}  // namespace

int address(const uint8_t* data, size_t size) {
  std::string_view text = as_text(data, size);
  // Addresses print as they read back: the ready line, logs and vrelaystat show them so.
  if (auto ep = parse_endpoint(text)) {
    auto again = parse_endpoint(ep->to_string());
    expect(again && again->to_string() == ep->to_string(), "an endpoint reads back as it prints");
  } else {
    expect(!ep.error().empty(), "a refused endpoint says why");
  }
  if (auto net = parse_cidr(text)) {
    expect(net->prefix >= 0 && net->prefix <= (net->family == AF_INET ? 32 : 128), "a prefix fits its family");
    auto again = parse_cidr(net->to_string());
    expect(again && again->to_string() == net->to_string(), "a network reads back as it prints");
  } else {
    expect(!net.error().empty(), "a refused network says why");
  }
  (void)parse_port(text, 0, 65535);
  (void)parse_port(text, 1025, 65535);
  if (auto split = split_host_port(text)) expect(parse_port(split->port, 1, 65535).has_value(), "a split port is a port");
  if (auto split = split_host_port(text, "7700")) expect(!split->host.empty(), "a split host is not empty");
  // "NETWORK\nHOST:PORT": would ingest.allow let this sender stream?
  if (auto nl = text.find('\n'); nl != std::string_view::npos) {
    auto net = parse_cidr(text.substr(0, nl));
    auto sender = parse_endpoint(text.substr(nl + 1));
    if (net && sender) expect(net->contains(*sender) == contains_bitwise(*net, *sender), "Cidr::contains matches bit by bit");
  }
  return 0;
}

// ---- shm: a segment, as vrelaystat and the HTTP child map it

namespace {
constexpr size_t kMostMapped = 1 << 20;

// The segment as a file in /dev/shm, for Segment::open: one per fuzzing process, removed at exit.
const std::string& scratch_instance() {
  static const std::string instance = [] {
    std::string name = "fuzz-" + std::to_string(getpid());
    std::atexit([] { Segment::remove("fuzz-" + std::to_string(getpid())); });
    return name;
  }();
  return instance;
}

// What vrelaystat -j and /status.json do with a segment that passed the check.
void open_and_render(const char* bytes, size_t mapped) {
  const std::string& instance = scratch_instance();
  int fd = shm_open(("/" + Segment::shm_name(instance)).c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  expect(fd >= 0, "the scratch segment can be created");
  bool written = ftruncate(fd, off_t(mapped)) == 0 && pwrite(fd, bytes, mapped, 0) == ssize_t(mapped);
  close(fd);
  expect(written, "the scratch segment can be written");
  std::unique_ptr<Segment> segment;
  try {
    segment = Segment::open(instance, true);
  } catch (const SegmentError& e) {
    std::fprintf(stderr, "fuzz: %s\n", e.what());
    expect(false, "a segment that passed check_header opens");
  }
  Snapshot snapshot = take_snapshot(*segment, true);
  (void)snapshot_json(snapshot).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  (void)prometheus_text(snapshot);
}
}  // namespace

int shm(const uint8_t* data, size_t size) {
  // The input: the size of the mapping (4 bytes, little-endian; 1 MiB at most here), then
  // the segment's first bytes. The rest of the mapping is zeros, as in a new segment.
  if (size < 4) return 0;
  size_t mapped = std::min<size_t>(kMostMapped, uint32_t(data[0]) | uint32_t(data[1]) << 8 | uint32_t(data[2]) << 16 |
                                                    uint32_t(data[3]) << 24);
  // Exactly `mapped` bytes, so that ASan sees a read past the mapping; aligned as a mapping
  // is (Header is alignas(64)).
  void* memory = nullptr;
  expect(posix_memalign(&memory, 4096, std::max<size_t>(mapped, 1)) == 0, "memory");
  std::unique_ptr<char, decltype(&std::free)> base(static_cast<char*>(memory), &std::free);
  std::memset(base.get(), 0, mapped);
  std::memcpy(base.get(), data + 4, std::min(mapped, size - 4));

  bool starting = false, other_version = false;
  Status usable = check_header(base.get(), mapped, &starting, &other_version);
  expect(!(starting && other_version), "starting and other_version exclude each other");
  expect(!(usable && (starting || other_version)), "only a refused segment is starting or of another version");
  if (!usable) {
    expect(!usable.error().empty(), "a refused segment says why");
    return 0;
  }
  // Accepted: the parts that readers reach lie inside the mapping.
  const Header& h = *reinterpret_cast<const Header*>(base.get());
  expect(h.total_size <= mapped, "the segment fits the mapping");
  expect(h.processes_offset + kRoleCount * sizeof(ProcessSlot) <= h.stats_offset, "the process slots fit");
  expect(h.stats_offset + sizeof(Stats) <= h.subscribers_offset, "the counters fit");
  expect(h.subscribers_offset + uint64_t(h.max_subscribers) * sizeof(SubscriberSlot) <= h.ring_offset,
         "the subscriber table fits");
  expect(h.ring_offset + sizeof(RingControl) <= h.total_size, "the ring control fits");
  open_and_render(base.get(), mapped);
  return 0;
}

// ---- mpegts: a source's datagrams

int mpegts(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte says how the rest is cut into datagrams: 0-6, 1 to 7 whole TS packets (7
  // x 188 = 1316 bytes, what VLC and ffmpeg send); 7, RTP carrying 7 packets (12 + 1316);
  // 8-255, that many bytes.
  uint8_t rule = data[0];
  size_t cut = rule < 7 ? (rule + 1u) * kTsPacketSize : rule == 7 ? 12 + 7 * kTsPacketSize : rule;
  TsInspector inspector;
  uint64_t index = 0;
  for (size_t at = 1; at < size; at += cut, ++index) {
    // A copy of exactly the datagram, so that ASan sees a read past its end.
    std::vector<uint8_t> datagram(data + at, data + std::min(size, at + cut));
    const uint8_t* d = datagram.data();
    size_t n = datagram.size();
    RtpPacket rtp;
    if (parse_rtp(d, n, &rtp)) expect(rtp.payload_offset + rtp.payload_length <= n, "the RTP payload lies inside the datagram");
    size_t ts_length = 0;
    if (const uint8_t* ts = ts_packets(d, n, &ts_length))
      expect(ts >= d && ts + ts_length <= d + n && ts_length % kTsPacketSize == 0, "the TS packets lie inside the datagram");
    TsInspector::Result r = inspector.inspect(d, n, index);
    expect(!r.key_frame_from || *r.key_frame_from <= index, "a key frame began in this datagram or an earlier one");
    expect(!r.transport_stream || ts_length > 0, "a transport stream datagram holds TS packets");
    if (inspector.has_tables())  // what a new viewer is sent first
      expect(inspector.pat()[0] == kTsSync && ts_pid(inspector.pat().data()) == 0 && inspector.pmt()[0] == kTsSync,
             "the kept PAT and PMT are TS packets, the PAT on PID 0");
    (void)codec_name(inspector.codec());
  }
  return 0;
}

// ---- replies: lines from a relay, as vrelayctl and vrelay-probe read them

int replies(const uint8_t* data, size_t size) {
  std::string_view text = as_text(data, size);
  for (size_t start = 0; start <= text.size();) {
    size_t end = std::min(text.find('\n', start), text.size());
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // as Client::read_line
    control::Line l = control::classify(line);
    if (l.is_event())
      expect(std::none_of(l.type.begin(), l.type.end(), [](char c) { return c >= 'a' && c <= 'z'; }),
             "an event type is upper case");
    (void)control::classify_text(line);
    (void)control::classify_json(line);
    if (auto hello = control::parse_hello(line); !hello) expect(!hello.error().empty(), "a refused greeting says why");
    std::vector<std::string> words;
    std::string rest;
    for (size_t n = 0; n <= 3; ++n)
      if (control::take_words(line, n, &words, &rest)) expect(words.size() == n, "take_words takes n words");
    start = end + 1;
  }
  return 0;
}

}  // namespace vrelay::fuzz
