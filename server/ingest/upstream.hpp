// The subscription of an edge relay to its upstream (ingest.upstream, vrelayd(8) CASCADES):
// a control session to the upstream's control address that sends CONECTAR <ingest port>
// and keeps it alive, so that the upstream's fan-out sends the stream to this relay's
// ingest socket.
//
// It runs as a thread of the ingest process: the subscription lives and dies with the
// process that receives what it asks for (started with it, stopped with it on shutdown and
// on a reload that replaces it), and its state is ingest's to count. The thread only talks
// TCP and never touches the ring or the ingest socket, so the datagram path never waits
// for it; what the datagram path needs (the upstream's address, to allow its datagrams)
// reaches the ingest loop through the callback, which must be thread-safe.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "config.hpp"
#include "control_client.hpp"
#include "net.hpp"
#include "rate_limit.hpp"
#include "shm.hpp"

namespace vrelay {

class Upstream {
 public:
  enum class State : uint64_t { kNone = 0, kConnecting = 1, kSubscribed = 2, kRetrying = 3 };
  using PeerFn = std::function<void(const Endpoint& upstream)>;

  // ingest_socket: the socket the stream is to reach (its port goes in CONECTAR; a specific
  // address is where the session leaves from). on_peer is called from the thread with the
  // address of each session's peer, before it subscribes.
  Upstream(const std::string& address, int ingest_socket, ingest_stats& stats, PeerFn on_peer);
  ~Upstream();  // closes the session (DESCONECTAR) and joins the thread
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

 private:
  void run();
  // One session: connect, greeting, CONECTAR, then keep it alive until it ends: a failure
  // says why it was lost, success means the thread was stopped. *subscribed tells whether
  // CONECTAR was answered OK.
  Status session(bool* subscribed);
  Status subscribe(control::Client& client);  // the greeting, then CONECTAR answered OK
  std::string keep_alive(control::Client& client);  // returns why the session ended
  bool pause(double seconds);  // false when stopped meanwhile
  void set_state(State state);
  void log_failure(const std::string& why);

  HostPort upstream_;
  std::string address_;   // as configured, for the log
  uint16_t ingest_port_;
  std::optional<Endpoint> from_;  // the ingest's own address, unless it is a wildcard
  ingest_stats& stats_;
  PeerFn on_peer_;
  int stop_fd_ = -1;     // eventfd: written once to stop the thread
  RateLimit warnings_{1.0 / 30, 3};  // a few warnings at once, then one in 30 s
  std::string last_failure_;
  std::thread thread_;
};

}  // namespace vrelay
