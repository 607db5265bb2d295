// The client side of the control protocol (man/vrelay-protocol.7), shared by vrelayctl,
// vrelay-probe and the test harness: what a line from the relay is (a reply or an event, in
// text or JSON form), the greeting, and a blocking session whose every wait has a deadline.
#pragma once
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net.hpp"
#include "result.hpp"

namespace vrelay::control {

using Clock = std::chrono::steady_clock;
Clock::time_point deadline_after(double seconds);

// ---- lines (pure, no I/O) ----

// One line from the relay.
struct Line {
  enum class Kind { kOk, kErr, kEvent, kOther } kind = Kind::kOther;
  std::string type;  // EVENT: its type in upper case (MSG, JOIN...); ERR: the error word
  std::string text;  // OK: the text after "OK "; ERR: the human text; EVENT: what follows the
                     // type (JSON: the "text" member)
  bool is_event() const { return kind == Kind::kEvent; }
};
// A text-form line: "OK ...", "ERR word ...", "EVENT TYPE ...".
Line classify_text(std::string_view line);
// A JSON-form line: {"ok":true|false,...} is a reply, {"event":...} an event. nullopt when
// the line is not a JSON object.
std::optional<Line> classify_json(std::string_view line);
// Either form: a line that starts with '{' and is a JSON object is read as JSON.
Line classify(std::string_view line);

// Splits off the first n words of text (spaces and tabs); the rest keeps its inner
// whitespace. Returns false if text has fewer than n words (rest may then be empty).
bool take_words(std::string_view text, size_t n, std::vector<std::string>* words, std::string* rest);

// The greeting, "EVENT HELLO vrelay <version> <name>": the relay's version and the name of
// this session. Anything else is not a vrelay relay, and the failure says so.
struct Hello {
  std::string version, name;
};
Result<Hello> parse_hello(std::string_view line);

// ---- a blocking session ----

// A control connection read with poll(): lines end with LF (a CR before it is removed).
// Every wait ends at a deadline, or early when the interrupt fd (if set) becomes readable.
// A deadline already past reads only what has come, without waiting.
class Client {
 public:
  enum class Read { kLine, kTimeout, kClosed, kError };  // kError: *error says why
  using EventFn = std::function<void(const std::string& event)>;

  // A line longer than max_line is a protocol error, so the buffer stays bounded.
  explicit Client(size_t max_line = 64 * 1024) : max_line_(max_line) {}
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects to host:port (a name or a numeric address, see connect_tcp) within timeout_s.
  // When the interrupt fd wakes first it fails with "interrupted" and interrupted() is set.
  // With `from`, the connection leaves from that address (see connect_tcp).
  Status connect(const std::string& host, const std::string& port, double timeout_s, const Endpoint* from = nullptr);
  void adopt(int fd);  // a socket connected by the caller (blocking or not)
  void close();

  // Reads the greeting and checks it (see parse_hello).
  Read read_hello(Clock::time_point deadline, Hello* hello, std::string* line, std::string* error);
  Read read_line(Clock::time_point deadline, std::string* line, std::string* error);
  // The next line that is not an event; events read meanwhile go to on_event (if set).
  Read read_reply(Clock::time_point deadline, std::string* reply, const EventFn& on_event, std::string* error);
  // send_line(command), then read_reply.
  Read command(const std::string& command, Clock::time_point deadline, std::string* reply, const EventFn& on_event,
               std::string* error);

  // Sends bytes as they are (send_line adds CR LF); a full socket buffer is waited for, 5 s
  // at most: a few bytes into an idle connection never take long.
  Status send_bytes(std::string_view bytes);
  Status send_line(std::string_view line) { return send_bytes(std::string(line) + "\r\n"); }

  // One recv() into the buffer once the socket is readable: kLine when bytes came. On
  // kError, errno is recv's.
  Read receive(Clock::time_point deadline, std::string* error);
  // Up to count bytes already received, out of the buffer (raw bytes, e.g. telnet's).
  std::string take_bytes(size_t count);
  size_t buffered() const { return buffer_.size(); }

  void set_interrupt_fd(int fd) { interrupt_fd_ = fd; }
  bool interrupted() const { return interrupted_; }
  int fd() const { return fd_; }
  bool connected() const { return fd_ >= 0; }

 private:
  bool take_line(std::string* line);
  // poll() on fd_ for `events` and on the interrupt fd: 0 timeout, 1 ready, -1 interrupted
  // or failed (*error set).
  int wait_for(short events, Clock::time_point deadline, std::string* error);

  size_t max_line_;
  int fd_ = -1, interrupt_fd_ = -1;
  bool interrupted_ = false;
  std::string buffer_;
};

}  // namespace vrelay::control
