// Many control sessions at once for the scale test and bench/sessions_bench: clients spread
// over source addresses 127.0.0.2, .3, ... (the port is picked per 4-tuple, so ephemeral
// ports never run out), non-blocking connects, one epoll. Nothing blocks without a deadline.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vrelay::test {

class Crowd {
 public:
  explicit Crowd(uint16_t port);
  ~Crowd();
  Crowd(const Crowd&) = delete;
  Crowd& operator=(const Crowd&) = delete;

  size_t open() const { return open_; }             // sessions that got their HELLO
  const std::string& error() const { return error_; }  // the first failure
  uint64_t events() const { return events_; }       // EVENT lines received after the HELLOs
  const std::vector<double>& hello_us() const { return hello_us_; }  // of the last grow()

  // Opens sessions until `target` have their HELLO; false on the first connection that fails
  // or is refused, or when `limit` passes. `tick` runs between two rounds of reading.
  bool grow(size_t target, std::chrono::steady_clock::duration limit, const std::function<void()>& tick = [] {});
  // Reads what the sessions were sent, for up to `timeout_ms`; false on a failure.
  bool pump(int timeout_ms);
  // Reads until nothing has come for 500 ms; false on a failure or if events still come at
  // the deadline.
  bool settle(std::chrono::steady_clock::duration limit);
  // One PING on session `index`, waiting (5 s at most) for OK PONG: the latency in
  // microseconds, or -1 (error() says why).
  double ping(size_t index);
  void close_all();

 private:
  struct Conn {
    int fd = -1;
    bool open = false;
    std::chrono::steady_clock::time_point started;
    std::string buffer;
  };
  bool start_connect();
  bool read_some(Conn& c);
  static bool take_line(Conn& c, std::string& line);
  bool on_ready(size_t index, uint32_t what);
  bool fail(const std::string& why);
  double failed(const std::string& why);

  uint16_t port_;
  int epoll_;
  std::vector<Conn> conns_;
  size_t open_ = 0;
  uint64_t events_ = 0;
  std::vector<double> hello_us_;
  std::string error_;
};

}  // namespace vrelay::test
