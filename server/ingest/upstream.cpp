// The edge's subscription to its upstream relay (upstream.hpp).
#include "upstream.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "clock.hpp"
#include "log.hpp"
#include "stats_view.hpp"

namespace vrelay {
namespace {

constexpr double kFirstBackoff = 0.1;   // seconds before the first retry
constexpr double kMostBackoff = 2.0;    // and at most between two
constexpr double kConnectTimeout = 2.0;
constexpr double kReplyTimeout = 2.0;   // greeting and CONECTAR
constexpr double kPingInterval = 10.0;  // within any sensible control.idle_timeout (default 300)

HostPort split_or_throw(const std::string& address) {
  auto split = split_host_port(address);
  if (!split) throw std::runtime_error("ingest.upstream: " + split.error());  // the loader checked it
  return *split;
}

}  // namespace

Upstream::Upstream(const std::string& address, int ingest_socket, ingest_stats& stats, PeerFn on_peer)
    : upstream_(split_or_throw(address)), address_(address), stats_(stats), on_peer_(std::move(on_peer)) {
  Endpoint ingest = local_endpoint(ingest_socket);
  ingest_port_ = ingest.port();
  // The upstream sends to the session's peer address: a session from the ingest's own
  // address makes that the address the stream reaches.
  if (!ingest.is_wildcard()) {
    ingest.set_port(0);
    from_ = ingest;
  }
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (stop_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + strerror(errno));
  set_state(State::kConnecting);
  thread_ = std::thread([this] { run(); });
}

Upstream::~Upstream() {
  uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof one) != sizeof one) LOG_ERROR("cannot stop the upstream thread: %s", strerror(errno));
  thread_.join();
  close(stop_fd_);
}

void Upstream::run() {
  double backoff = kFirstBackoff;
  for (;;) {
    set_state(State::kConnecting);
    bool subscribed = false;
    Status ended = session(&subscribed);
    if (ended) return;  // stopped
    if (subscribed) backoff = kFirstBackoff;  // a subscription that held starts over quickly
    stats_.upstream_losses.fetch_add(1, std::memory_order_relaxed);
    log_failure(ended.error());
    set_state(State::kRetrying);
    if (!pause(backoff)) return;
    backoff = std::min(backoff * 2, kMostBackoff);
  }
}

Status Upstream::session(bool* subscribed) {
  control::Client client;
  client.set_interrupt_fd(stop_fd_);
  if (Status connected = client.connect(upstream_.host, upstream_.port, kConnectTimeout, from_ ? &*from_ : nullptr);
      !connected)
    return client.interrupted() ? Status::success() : Failure{"cannot connect: " + connected.error()};
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  if (getpeername(client.fd(), reinterpret_cast<sockaddr*>(&peer), &length) != 0)
    return Failure{std::string("getpeername: ") + strerror(errno)};
  on_peer_(Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&peer), length));

  if (Status subscribed_now = subscribe(client); !subscribed_now || client.interrupted())
    return client.interrupted() ? Status::success() : subscribed_now;
  *subscribed = true;
  stats_.upstream_connects.fetch_add(1, std::memory_order_relaxed);
  set_state(State::kSubscribed);
  last_failure_.clear();
  LOG_NOTICE("subscribed to the upstream %s: its stream comes to port %u", address_.c_str(), unsigned(ingest_port_));
  std::string why = keep_alive(client);
  if (client.interrupted()) {
    (void)client.send_line("DESCONECTAR");  // the upstream ends the subscription now, not at the close
    return Status::success();
  }
  return Failure{why};
}

namespace {
// What a read that brought no line means, in words: `waiting_for` names what did not come.
Status got_line(control::Client::Read read, const std::string& error, const std::string& waiting_for) {
  switch (read) {
    case control::Client::Read::kLine: return {};
    case control::Client::Read::kTimeout:
      return Failure{"no " + waiting_for + " within " + std::to_string(int(kReplyTimeout)) + " s"};
    case control::Client::Read::kClosed: return Failure{"it closed the session before its " + waiting_for};
    default: return Failure{error};
  }
}
}  // namespace

// The greeting, then CONECTAR with the ingest's port.
Status Upstream::subscribe(control::Client& client) {
  control::Hello hello;
  std::string line, error;
  auto read = client.read_hello(control::deadline_after(kReplyTimeout), &hello, &line, &error);
  if (Status greeted = got_line(read, error, "greeting"); !greeted) return greeted;
  auto log_event = [](const std::string& event) { LOG_DEBUG("upstream: %s", event.c_str()); };
  read = client.command("CONECTAR " + std::to_string(ingest_port_), control::deadline_after(kReplyTimeout), &line,
                        log_event, &error);
  if (Status answered = got_line(read, error, "answer to CONECTAR"); !answered) return answered;
  if (control::classify(line).kind != control::Line::Kind::kOk) return Failure{"CONECTAR refused: " + line};
  return {};
}

// Reads what comes (events are only logged) and sends PING every kPingInterval; a PING
// still unanswered at the next one means the upstream is gone. Returns why it ended.
std::string Upstream::keep_alive(control::Client& client) {
  bool answered = true;
  std::string bye;  // the upstream says why it ends the session (shutdown, idle, kicked)
  auto next_ping = control::deadline_after(kPingInterval);
  for (;;) {
    std::string line, error;
    auto read = client.read_line(next_ping, &line, &error);
    if (read == control::Client::Read::kClosed) return "the upstream closed the session" + bye;
    if (read == control::Client::Read::kError) return error;
    if (read == control::Client::Read::kLine) {
      control::Line parsed = control::classify(line);
      if (!parsed.is_event()) answered = true;
      else if (parsed.type == "BYE") bye = " (" + line + ")";
      else LOG_DEBUG("upstream: %s", line.c_str());
      continue;
    }
    if (!answered) return "no answer to PING within " + std::to_string(int(kPingInterval)) + " s";
    if (Status sent = client.send_line("PING"); !sent) return sent.error();
    answered = false;
    next_ping = control::deadline_after(kPingInterval);
  }
}

bool Upstream::pause(double seconds) {
  pollfd p{stop_fd_, POLLIN, 0};
  auto deadline = control::deadline_after(seconds);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - control::Clock::now()).count();
    if (left <= 0) return true;
    int n = poll(&p, 1, int(left) + 1);
    if (n > 0) return false;
    if (n < 0 && errno != EINTR) return false;
  }
}

void Upstream::set_state(State state) {
  stats_.upstream_state.store(uint64_t(state), std::memory_order_relaxed);
  LOG_DEBUG("upstream %s: %s", address_.c_str(), upstream_state_name(uint64_t(state)));
}

// Every failure counts (upstream_losses); the log says a new reason at once and a repeated
// one a few times, then once in 30 s, so an upstream down for hours fills no disk.
void Upstream::log_failure(const std::string& why) {
  bool is_new = why != last_failure_;
  last_failure_ = why;
  if (is_new || warnings_.allow(to_seconds(monotonic_ns())))
    LOG_WARN("upstream %s: %s; retrying", address_.c_str(), why.c_str());
  else
    LOG_DEBUG("upstream %s: %s; retrying", address_.c_str(), why.c_str());
}

}  // namespace vrelay
