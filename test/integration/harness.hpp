// Integration-test harness: starts a real vrelayd on port 0 and talks to it over real
// sockets on 127.0.0.1. Every wait has a deadline and ends on an event (a line, a datagram,
// a counter), never on a sleep.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "control_client.hpp"
#include "shm.hpp"
#include "stats_view.hpp"

namespace vrelay::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Polls `condition` every millisecond until it holds or `limit` passes.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit = 5000ms);

// Every counter, process slot and subscriber of a relay, read in one pass (take_snapshot).
// Assertions on several counters compare figures of one moment, not of successive reads
// between which the relay moved on.
class Counters {
 public:
  Counters() = default;  // empty: any read throws until one is assigned
  explicit Counters(const Segment& segment) : snapshot_(take_snapshot(segment)) {}
  // The counter as vrelaystat names it ("fanout.sent_datagrams"). An unknown name throws
  // (the test fails): Snapshot::counter reads it as 0, which an EXPECT_EQ(.., 0u) would pass.
  uint64_t operator[](std::string_view name) const;
  // The slot of a process the relay runs (pid, state, restarts); another role throws.
  ProcessView process(Role role) const;
  const std::vector<SubscriberView>& subscribers() const { return snapshot_.subscribers; }
  const Snapshot& snapshot() const { return snapshot_; }

 private:
  Snapshot snapshot_;
};

class Relay {
 public:
  // Starts `vrelayd -F` on 127.0.0.1 port 0 with a unique instance name, optional YAML
  // configuration text and extra arguments (which may give --control, --ingest or the
  // positional "127.0.0.1 PORT" form instead); waits for the ready line.
  explicit Relay(const std::string& yaml = "", std::vector<std::string> extra_args = {},
                 std::vector<std::string> environment = {});  // NAME=VALUE, added
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  uint16_t control_port() const { return control_port_; }
  uint16_t ingest_port() const { return ingest_port_; }
  uint16_t http_port() const { return http_port_; }  // 0 unless http.listen is on
  pid_t pid() const { return pid_; }
  const std::string& instance() const { return instance_; }
  const std::string& ready_line() const { return ready_line_; }
  const std::string& config_path() const { return config_path_; }  // "" without YAML text
  // Mapped read-only, checked; mapped again when a reload resized it (the segments it
  // replaced stay mapped, so references taken before stay valid).
  Segment& shm();
  pid_t child_pid(Role role);      // from shared memory
  Counters counters();             // all of them, now, in one snapshot
  uint64_t restarts(Role role);
  // Waits until a new process (not `old_pid`) of this role is ready; false at the limit.
  bool wait_restarted(Role role, pid_t old_pid, std::chrono::milliseconds limit = 10000ms);
  // SIGTERM, then waits (bounded) for the exit status; returns it (-1 on timeout).
  int stop(std::chrono::milliseconds limit = 10000ms);
  std::string log() const;         // what vrelayd wrote on stderr

 private:
  pid_t pid_ = -1;
  uint16_t control_port_ = 0, ingest_port_ = 0, http_port_ = 0;
  std::string instance_, ready_line_, log_path_, config_path_;
  std::unique_ptr<Segment> shm_;
  std::vector<std::unique_ptr<Segment>> replaced_shm_;
};

// SIGHUP, then waits (bounded) for the supervisor to count the outcome; true if the new
// configuration is in force, false if the reload was refused. The outcome is read from the
// snapshot that showed it.
bool hangup(Relay& relay);

// A control session.
class Session {
 public:
  // receive_buffer: SO_RCVBUF before connecting (0 = the kernel's default).
  explicit Session(uint16_t port, bool expect_hello = true, int receive_buffer = 0);
  ~Session();
  void send_raw(const std::string& bytes);
  // Sends one line (CRLF added) and returns its reply line without CRLF; events that
  // arrive meanwhile are kept for next_event().
  std::string command(const std::string& line);
  // The next line that is not an EVENT (events are kept); nullopt on timeout or close.
  std::optional<std::string> reply(std::chrono::milliseconds limit = 5000ms);
  // The next EVENT line, kept or new; replies read meanwhile are an error (nullopt).
  std::optional<std::string> next_event(std::chrono::milliseconds limit = 5000ms);
  // The next event of this type ("MSG"), skipping others; nullopt if none comes in time.
  std::optional<std::string> wait_event(const std::string& type, std::chrono::milliseconds limit = 5000ms);
  // The next line as it comes, event or not; nullopt on timeout or close.
  std::optional<std::string> read_line(std::chrono::milliseconds limit = 5000ms);
  // Raw bytes available within the limit (for telnet replies).
  std::string read_bytes(size_t count, std::chrono::milliseconds limit = 5000ms);
  bool closed_by_peer(std::chrono::milliseconds limit = 5000ms);  // EOF seen
  void close();
  std::string hello;

 private:
  control::Client client_{size_t(1) << 24};  // long lines (a LIST of thousands) are fine here
  std::deque<std::string> events_;
};

// A UDP socket on 127.0.0.1 that viewers' datagrams reach.
class UdpSink {
 public:
  UdpSink();
  ~UdpSink();
  uint16_t port() const { return port_; }
  // The next datagram; from_port, if given, is set to the port it came from.
  std::optional<std::string> receive(std::chrono::milliseconds limit = 5000ms, uint16_t* from_port = nullptr);
  size_t drain();  // datagrams already waiting, without blocking
 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A viewer: a UDP sink subscribed to the relay by its own control session (CONECTAR).
// receive_buffer: the session's SO_RCVBUF (see Session), for a viewer that reads it slowly.
struct Viewer {
  explicit Viewer(Relay& relay, int receive_buffer = 0);
  UdpSink sink;
  Session session;
};

// Sends datagrams to the relay's ingest, from 127.0.0.1 or another loopback address.
class UdpSource {
 public:
  explicit UdpSource(uint16_t ingest_port, const char* from = "127.0.0.1");
  ~UdpSource();
  void send(const std::string& payload);
 private:
  int fd_ = -1;
  uint16_t port_;
};

// Programs under test (vrelayd, vrelaystat, vrelay-probe, bash, ...) are started only here.
// args[0] is the program's path. In `environment`, NAME=VALUE is added (or replaces) and
// NAME alone is removed from the test's own.

// Starts a program under test: its stdout into a pipe (*stdout_fd, the read end, for its
// ready line), its stderr into log_path. Returns its pid.
pid_t start_program(std::vector<std::string> args, const std::string& log_path, int* stdout_fd,
                    std::vector<std::string> environment = {});
// The first line that comes on fd within the limit, without its newline ("" if none).
std::string read_first_line(int fd, std::chrono::milliseconds limit);

// A program under test in the background, its output read while it runs and after it
// ended. Its stdin is /dev/null and its stdout and stderr go each to a file of its own (a
// program never blocks on a test that is not reading); or, with a terminal, all three are
// a pty whose master the test reads (out()) and writes (terminal()).
class Program {
 public:
  struct Terminal {
    unsigned short rows = 24, columns = 80;
  };
  explicit Program(std::vector<std::string> args, std::vector<std::string> environment = {},
                   std::optional<Terminal> terminal = std::nullopt);
  ~Program();  // SIGKILL if it still runs; its files are removed
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  pid_t pid() const { return pid_; }        // -1 once it has ended and was reaped
  int terminal() const { return master_; }  // the pty's master; -1 without a terminal
  const std::string& out();                 // its stdout (or the terminal) so far
  std::string err() const;                  // its stderr so far ("" with a terminal)
  bool running();                           // false once it has ended (it is then reaped)
  void signal(int signo);
  // Waits (bounded) for its end: its exit status, 128 + the signal that ended it, or -1 if
  // it still ran at the limit (it is then killed). Once ended, returns that status again.
  int wait(std::chrono::milliseconds limit = 10000ms);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  int master_ = -1, out_fd_ = -1;  // read ends: the pty, or the stdout file
  std::string dir_, out_;
};

// A program run to its end (run_program).
struct ProgramResult {
  int status = -1;       // as Program::wait: exit status, 128 + signal, -1 if it did not end in time
  std::string out, err;  // what it wrote on stdout and on stderr
  std::string output() const { return out + err; }  // both, for a message that may be on either
};
ProgramResult run_program(std::vector<std::string> args, std::chrono::milliseconds limit = 10000ms,
                          std::vector<std::string> environment = {});
// vrelayd itself, not as a Relay: for command lines and configurations it refuses.
ProgramResult run_vrelayd(std::vector<std::string> args, std::chrono::milliseconds limit = 10000ms);

// What a shell command prints on stdout: for tools (ffmpeg, ffprobe), not programs under
// test, whose status and stderr matter (run_program).
std::string run_command(const std::string& command);

// 4 s of ffmpeg's testsrc (320x240, 25 frames/s) encoded with `codec_args` into MPEG-TS, and
// where ffprobe says its key frames' packets begin (byte offsets). Empty without ffmpeg.
struct EncodedVideo {
  std::vector<uint8_t> bytes;  // whole TS packets
  std::vector<uint64_t> key_positions;
};
EncodedVideo encode_video(const std::string& name, const std::string& codec_args);
bool have_ffmpeg();  // ffmpeg and ffprobe on the PATH

// Payload i of a test stream: its index, then bytes derived from it; size 188..1472.
std::string test_payload(uint64_t index);
// Whether `got` is test_payload(index); a mismatch is described briefly (index and size).
::testing::AssertionResult is_payload(const std::optional<std::string>& got, uint64_t index);
uint16_t free_udp_port();
std::string read_file(const std::string& path);  // "" if it cannot be read

}  // namespace vrelay::test
