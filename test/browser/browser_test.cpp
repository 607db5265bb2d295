// Browser tests of the status page (label "browser"): a real vrelayd with HTTP on port 0, one
// subscriber and a live stream, and Debian's chromium in headless mode (no network, no
// sandbox as root) rendering http://127.0.0.1:PORT/. They assert on the DOM after the
// page's scripts ran (--dump-dom) and write a screenshot (status_page.png in the build
// folder) for people to look at. Every wait is bounded; only processes started here are
// stopped, by their IDs.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

struct Output {
  int status = -1;       // exit status; -1 if it had to be killed
  std::string out;       // standard output
  std::string log_path;  // standard error
};

// Runs chromium headless with the flags a closed, GPU-less machine needs (no sandbox, no GPU,
// no background networking) plus `args`, in a process group of its own, a fresh profile
// folder, and at most `limit`; the group is killed if it overruns.
Output chromium(const std::vector<std::string>& args, const std::string& name, std::chrono::seconds limit = 90s) {
  char profile[] = "/tmp/vrelay-chromium.XXXXXX";
  if (!mkdtemp(profile)) throw std::runtime_error("mkdtemp");
  std::vector<std::string> argv = {CHROMIUM_PATH, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                   "--no-first-run", "--disable-background-networking", "--disable-component-update",
                                   "--disable-sync", std::string("--user-data-dir=") + profile};
  argv.insert(argv.end(), args.begin(), args.end());
  Output result;
  result.log_path = std::string(ARTIFACT_DIR) + "/" + name + ".chromium.log";
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    dup2(out[1], 1);
    int log = open(result.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log >= 0) dup2(log, 2);
    std::vector<char*> c;
    for (auto& a : argv) c.push_back(a.data());
    c.push_back(nullptr);
    execv(c[0], c.data());
    fprintf(stderr, "cannot run %s: %s (scripts/install-deps.sh installs chromium)\n", c[0], strerror(errno));
    _exit(127);
  }
  close(out[1]);
  setpgid(pid, pid);  // also from here: no race with the child's own call
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  auto deadline = Clock::now() + limit;
  int status = 0;
  bool exited = false;
  // Reads until chromium's main process exits (its helpers may keep the pipe open).
  while (!exited && Clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    poll(&p, 1, 50);  // also the poll interval of the bounded wait for its exit
    char buf[65536];
    ssize_t n;
    while ((n = read(out[0], buf, sizeof buf)) > 0) result.out.append(buf, size_t(n));
    exited = waitpid(pid, &status, WNOHANG) == pid;
  }
  if (exited) {
    char buf[65536];
    ssize_t n;
    while ((n = read(out[0], buf, sizeof buf)) > 0) result.out.append(buf, size_t(n));
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  } else {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  if (kill(-pid, 0) == 0) kill(-pid, SIGKILL);  // helpers left in chromium's own group
  close(out[0]);
  std::error_code ignored;
  std::filesystem::remove_all(profile, ignored);
  return result;
}

std::string strip_tags(const std::string& html) {
  std::string out;
  bool in_tag = false;
  for (char c : html) {
    if (c == '<') in_tag = true;
    else if (c == '>') in_tag = false;
    else if (!in_tag) out += c;
  }
  return out;
}

// "1", "1,234": a count above 0 as the page writes it.
bool positive_count(std::string text) {
  std::erase(text, ',');
  return !text.empty() && text[0] != '0' && text.find_first_not_of("0123456789") == std::string::npos;
}

std::string chromium_log(const Output& o) {
  std::ifstream in(o.log_path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.size() > 3000 ? text.substr(text.size() - 3000) : text;
}

// The text inside the element with this id (tags removed), or nullopt.
std::optional<std::string> element_text(const std::string& dom, const std::string& id) {
  auto at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return std::nullopt;
  auto start = dom.find('>', at);
  if (start == std::string::npos) return std::nullopt;
  auto tag_start = dom.rfind('<', at);
  std::string tag = dom.substr(tag_start + 1, dom.find_first_of(" >", tag_start) - tag_start - 1);
  auto end = dom.find("</" + tag + ">", start);
  if (end == std::string::npos) return std::nullopt;
  return strip_tags(dom.substr(start + 1, end - start - 1));
}

std::string opening_tag(const std::string& dom, const std::string& id) {
  auto at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  auto start = dom.rfind('<', at);
  return dom.substr(start, dom.find('>', at) - start + 1);
}

// The cells of the subscribers row whose data-port is `port`.
std::vector<std::string> subscriber_row(const std::string& dom, uint16_t port) {
  std::vector<std::string> cells;
  auto at = dom.find("data-port=\"" + std::to_string(port) + "\"");
  if (at == std::string::npos) return cells;
  auto end = dom.find("</tr>", at);
  std::string row = dom.substr(at, end - at);
  for (size_t at_td = row.find("<td"); at_td != std::string::npos; at_td = row.find("<td", at_td + 1)) {
    size_t open_end = row.find('>', at_td), close = row.find("</td>", at_td);
    if (open_end == std::string::npos || close == std::string::npos) break;
    cells.push_back(strip_tags(row.substr(open_end + 1, close - open_end - 1)));
  }
  return cells;
}

// An attribute of the opening tag with this id: data-points="12" -> "12"; "" if absent.
std::string attribute(const std::string& dom, const std::string& id, const std::string& name) {
  std::string tag = opening_tag(dom, id);
  auto at = tag.find(" " + name + "=\"");
  if (at == std::string::npos) return "";
  at += name.size() + 3;
  return tag.substr(at, tag.find('"', at) - at);
}

// A relay with HTTP on port 0, one subscriber (session "ana"), and a stream of 50 datagrams a second that
// keeps flowing (and being drained from the sink) while the browser looks.
class LiveRelay {
 public:
  LiveRelay() : relay_("http:\n  listen: 127.0.0.1:0\n") {
    session_ = std::make_unique<Session>(relay_.control_port());
    EXPECT_EQ(session_->command("NAME ana"), "OK");  // the subscriber row shows it
    EXPECT_EQ(session_->command("CONECTAR " + std::to_string(sink_.port())), "OK");
    UdpSource first(relay_.ingest_port());
    first.send(test_payload(0));
    EXPECT_TRUE(is_payload(sink_.receive(), 0)) << "the stream does not reach the subscriber";
    streamer_ = std::thread([this] {
      UdpSource source(relay_.ingest_port());
      auto next = Clock::now();
      for (uint64_t i = 1; !stop_.load(); ++i) {
        source.send(test_payload(i));
        sink_.drain();
        next += 20ms;
        std::this_thread::sleep_until(next);  // the pace of the stream, not a synchronization
      }
    });
  }
  ~LiveRelay() {
    stop_ = true;
    streamer_.join();
  }
  Relay& relay() { return relay_; }
  uint16_t sink_port() const { return sink_.port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(relay_.http_port()) + "/"; }

 private:
  Relay relay_;
  UdpSink sink_;
  std::unique_ptr<Session> session_;
  std::atomic<bool> stop_{false};
  std::thread streamer_;
};

TEST(StatusPage, RendersTheSourceAndTheSubscriberRow) {
  LiveRelay live;
  ASSERT_NE(live.relay().http_port(), 0);
  // The source's bitrate gauge covers a whole second: wait for its first reading.
  ASSERT_TRUE(wait_until([&] { return live.relay().shm().stats().ingest.rate_bytes.load() > 0; }, 5000ms));
  // A viewer of /stream, which the page counts apart from the subscribers.
  int viewer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(live.relay().http_port());
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  const std::string get = "GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  ASSERT_EQ(connect(viewer, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(send(viewer, get.data(), get.size(), MSG_NOSIGNAL), ssize_t(get.size()));
  ASSERT_TRUE(wait_until([&] { return live.relay().counters()["http.streams"] == 1; }));
  Output o = chromium({"--virtual-time-budget=5000", "--dump-dom", live.url()}, "dump-dom");
  close(viewer);
  ASSERT_EQ(o.status, 0) << chromium_log(o);
  const std::string& dom = o.out;
  ASSERT_NE(dom.find("</html>"), std::string::npos) << "no DOM on stdout:\n" << chromium_log(o);

  EXPECT_EQ(element_text(dom, "instance").value_or("?"), live.relay().instance());
  EXPECT_EQ(element_text(dom, "source-state").value_or("?"), "live");
  EXPECT_NE(opening_tag(dom, "source-state").find("badge live"), std::string::npos) << opening_tag(dom, "source-state");
  EXPECT_EQ(element_text(dom, "subscriber-count").value_or("?"), "1");
  EXPECT_EQ(element_text(dom, "stream-viewers").value_or("?"), "1");
  EXPECT_EQ(element_text(dom, "stream-detail").value_or("?"), "1 since start \u00b7 0 cut \u00b7 0 refused");
  // Not MPEG-TS: no key frame, no GOP, and so no fast start.
  EXPECT_EQ(element_text(dom, "key-frames").value_or("?"), "0");
  EXPECT_EQ(element_text(dom, "fast-starts").value_or("?"), "no GOP yet \u00b7 0 fast starts");
  std::string bitrate = element_text(dom, "bitrate").value_or("?");
  // Under --virtual-time-budget the page's polls come milliseconds apart in real time, so
  // the bitrate shown is the ingest.rate_bytes gauge: about 50 datagrams/s, never 0.
  EXPECT_TRUE(!bitrate.empty() && isdigit(static_cast<unsigned char>(bitrate[0])) && bitrate.ends_with("bit/s") &&
              bitrate.find(' ') != std::string::npos && !bitrate.starts_with("0 "))
      << "bitrate '" << bitrate << "'";
  EXPECT_EQ(dom.find("class=\"unreachable"), std::string::npos) << "the page says the relay is unreachable";

  auto cells = subscriber_row(dom, live.sink_port());
  ASSERT_EQ(cells.size(), 8u) << "no subscriber row with data-port=\"" << live.sink_port() << "\" in\n"
                              << element_text(dom, "subscribers").value_or("(no table)");
  EXPECT_EQ(cells[0], "ana") << "the name of the session that subscribed";
  EXPECT_EQ(cells[1], "127.0.0.1");
  EXPECT_EQ(cells[2], std::to_string(live.sink_port()));
  EXPECT_EQ(cells[3], "playing");
  EXPECT_TRUE(positive_count(cells[5])) << "datagrams cell '" << cells[5] << "'";
  EXPECT_EQ(cells[7], "0") << "errors";

  // Every process row, http included, shows "ready".
  for (const char* role : {"ingest", "fanout", "control", "http"}) {
    auto at = dom.find("data-role=\"" + std::string(role) + "\"");
    ASSERT_NE(at, std::string::npos) << role;
    std::string row = dom.substr(at, dom.find("</tr>", at) - at);
    EXPECT_NE(row.find(">ready<"), std::string::npos) << row;
  }
  // The data came from the relay: datagrams in is a number above 0.
  std::string in = element_text(dom, "ingest-datagrams").value_or("");
  EXPECT_TRUE(positive_count(in)) << "ingest-datagrams '" << in << "'";
}

// The chart opens with the relay's history (kept by ingest in shared memory), not only
// with what the page polled itself: its first rendering already has those points.
TEST(StatusPage, ChartOpensWithTheRelaysHistory) {
  LiveRelay live;
  constexpr uint64_t kSamples = 3;
  const StreamInfo& stream = live.relay().shm().stream();
  ASSERT_TRUE(wait_until([&] { return stream.bitrate_samples.load() >= kSamples; }, 10000ms));
  // A short budget: the page's first poll, hardly more.
  Output o = chromium({"--virtual-time-budget=500", "--dump-dom", live.url()}, "history");
  ASSERT_EQ(o.status, 0) << chromium_log(o);
  const std::string& dom = o.out;
  ASSERT_NE(dom.find("</html>"), std::string::npos) << "no DOM on stdout:\n" << chromium_log(o);
  std::string tag = opening_tag(dom, "bitrate-chart");
  std::string seeded = attribute(dom, "bitrate-chart", "data-seeded"), points = attribute(dom, "bitrate-chart", "data-points");
  ASSERT_FALSE(seeded.empty()) << "the page did not render: " << tag;
  EXPECT_GE(std::stoul(seeded), kSamples) << tag;      // from the relay's history...
  EXPECT_GE(std::stoul(points), std::stoul(seeded)) << tag;  // ...all drawn
  EXPECT_NE(dom.find("data-owner=\"ana\""), std::string::npos) << element_text(dom, "subscribers").value_or("");
}

// A fixed output (outputs:) has a row under its name, tagged as an output.
TEST(StatusPage, ShowsAnOutputUnderItsName) {
  UdpSink sink;
  Relay relay("http:\n  listen: 127.0.0.1:0\noutputs:\n  - {name: lan, to: \"127.0.0.1:" + std::to_string(sink.port()) +
              "\"}\n");
  ASSERT_TRUE(wait_until([&] { return relay.counters().subscribers().size() == 1; }));
  Output o = chromium({"--virtual-time-budget=2000", "--dump-dom", "http://127.0.0.1:" + std::to_string(relay.http_port()) + "/"},
                      "output");
  ASSERT_EQ(o.status, 0) << chromium_log(o);
  const std::string& dom = o.out;
  auto at = dom.find("data-owner=\"lan\"");
  ASSERT_NE(at, std::string::npos) << element_text(dom, "subscribers").value_or("(no table)");
  std::string row = dom.substr(at, dom.find("</tr>", at) - at);
  EXPECT_NE(row.find(">output</span>"), std::string::npos) << row;
  EXPECT_NE(row.find(">" + std::to_string(sink.port()) + "<"), std::string::npos) << row;
}

TEST(StatusPage, ShowsAStalledSourceAsAnAlert) {
  Relay relay("http:\n  listen: 127.0.0.1:0\ningest:\n  stall_timeout: 1\n");
  UdpSource source(relay.ingest_port());
  source.send(test_payload(0));
  Stats& stats = relay.shm().stats();
  ASSERT_TRUE(wait_until([&] { return stats.ingest.stalls.load() == 1u; }, 5000ms));
  Output o = chromium({"--virtual-time-budget=5000", "--dump-dom",
                       "http://127.0.0.1:" + std::to_string(relay.http_port()) + "/"}, "stalled");
  ASSERT_EQ(o.status, 0) << chromium_log(o);
  EXPECT_EQ(element_text(o.out, "source-state").value_or("?"), "stalled");
  EXPECT_NE(opening_tag(o.out, "source-state").find("badge stalled"), std::string::npos);
  EXPECT_NE(opening_tag(o.out, "source-card").find("alert"), std::string::npos) << opening_tag(o.out, "source-card");
}

TEST(StatusPage, ShowsRelayUnreachableWhenStatusJsonFails) {
  // The page itself from a file: its fetch of status.json fails, as when the relay is gone.
  Output o = chromium({"--virtual-time-budget=5000", "--dump-dom", std::string("file://") + STATUS_HTML_PATH},
                      "unreachable");
  ASSERT_EQ(o.status, 0) << chromium_log(o);
  ASSERT_NE(o.out.find("</html>"), std::string::npos) << chromium_log(o);
  EXPECT_NE(o.out.find("<body class=\"unreachable\">"), std::string::npos) << o.out.substr(0, 3000);
  EXPECT_NE(element_text(o.out, "unreachable").value_or("").find("Relay unreachable"), std::string::npos);
  EXPECT_EQ(element_text(o.out, "updated").value_or("?"), "never reached");
  EXPECT_EQ(element_text(o.out, "unreachable-detail").value_or("?"), "No figures received yet");
}

// PNG: signature, then the IHDR chunk with width and height (big-endian).
TEST(StatusPage, Screenshot) {
  LiveRelay live;
  std::string png = std::string(ARTIFACT_DIR) + "/status_page.png";
  std::filesystem::remove(png);
  Output o = chromium({"--virtual-time-budget=5000", "--window-size=1280,900", "--screenshot=" + png, live.url()},
                      "screenshot");
  ASSERT_EQ(o.status, 0) << chromium_log(o);
  std::ifstream in(png, std::ios::binary);
  ASSERT_TRUE(in) << png << " was not written\n" << chromium_log(o);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GE(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(bytes.substr(12, 4), "IHDR");
  auto be32 = [&](size_t at) {
    return uint32_t(uint8_t(bytes[at])) << 24 | uint32_t(uint8_t(bytes[at + 1])) << 16 |
           uint32_t(uint8_t(bytes[at + 2])) << 8 | uint32_t(uint8_t(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1280u);
  EXPECT_EQ(be32(20), 900u);
  // A blank or error page compresses to a few kB; the status page with its tables does not.
  EXPECT_GT(bytes.size(), 20000u) << png;
  EXPECT_LT(bytes.size(), 5000000u) << png;
  std::cout << "screenshot: " << png << " (" << bytes.size() << " bytes)\n";
}

}  // namespace
