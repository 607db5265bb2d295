// vrelayd's http process (only with http.listen): serves /metrics (Prometheus text format),
// /status.json, the live status page and /stream (the relayed stream itself, over HTTP, for
// viewers behind NAT or firewalls) on the listening socket the supervisor bound.
// One thread: libmicrohttpd in its external epoll mode, driven by the ChildLoop's libev
// loop (its epoll descriptor is one ev_io, its timeouts one ev_timer). A request that got
// stuck would therefore stop the heartbeat too, and the supervisor would replace the
// process. The shared memory is only read here, except this process's own heartbeat and
// its `http` counters.
//
// A /stream viewer reads the ring as the fan-out does, but from outside: nothing waits for
// it. Its response is MHD's content reader over the ring, from the last key frame (after
// the PAT and PMT, common/fast_start.hpp) or live. With nothing new to send, its connection
// is suspended; a 5 ms timer, running only while there are viewers, resumes it when the
// ring's head moves. A viewer that falls http.stream_buffer bytes behind, or so far that
// ingest may write where it reads, is cut off; a slot is copied first and checked after.
#include <microhttpd.h>

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "child.hpp"
#include "fast_start.hpp"
#include "log.hpp"
#include "net.hpp"
#include "ring.hpp"
#include "stats_view.hpp"
#include "status_html.hpp"  // generated from status.html (server/CMakeLists.txt)

namespace vrelay {
namespace {

// A slow or hostile client must not hurt anything: few connections, short idle timeout,
// small per-connection memory (request line and headers must fit in it). The /stream
// viewers (http.max_streams) come on top of these limits, so they never lock out /metrics.
// The idle timeout counts from a connection's last transfer: a live stream is never idle,
// a suspended one (waiting for the source) does not time out, and one whose reader stopped
// reading is closed after it at the latest.
constexpr unsigned kMaxConnections = 64;
constexpr unsigned kMaxConnectionsPerIp = 16;
constexpr unsigned kIdleTimeoutSeconds = 10;
constexpr size_t kConnectionMemory = 32 * 1024;
constexpr size_t kStreamBlock = 16 * 1024;   // what MHD asks a content reader for at most
constexpr double kStreamPollSeconds = 0.005; // how often the ring's head is looked at while viewers wait
constexpr uint64_t kHangupCheckNs = kNsPerSecond;  // how often waiting viewers are checked for a closed connection

struct Server;

// One /stream viewer: where it is in the ring and how far behind the head.
struct Stream {
  Server& server;
  MHD_Connection* connection;
  std::string peer;
  uint64_t cursor = 0;       // the next ring position to send
  uint32_t offset = 0;       // bytes of the datagram at `cursor` already sent
  TablePackets tables{};     // a fast start's PAT and PMT, sent first
  size_t tables_sent = sizeof(TablePackets);  // all sent: no fast start
  uint64_t counted_to = 0;   // the positions before it are counted in `backlog`
  uint64_t backlog = 0;      // bytes of [cursor, counted_to) not yet sent
  bool suspended = false;    // waiting for the ring's head to move
  bool cut = false;          // could not keep up: the response ends with an error
  bool gone = false;         // its client closed the connection while it waited
};

struct Server {
  const Segment& segment;
  http_stats& stats;  // written by this process alone
  RingView ring;
  const StreamInfo& stream_info;
  uint32_t max_streams;
  uint64_t stream_buffer;
  std::vector<std::unique_ptr<Stream>> streams{};
  log::Throttle cut_log{10 * kNsPerSecond, 3}, refused_log{10 * kNsPerSecond, 3};
  std::function<void()> streams_changed{};  // starts or stops the head poll
  uint64_t next_hangup_check_ns = 0;
  std::vector<pollfd> waiting{};  // hangup_check's, reused
};

// The http process is the only writer of its counters.
void add(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct Reply {
  unsigned status;
  const char* content_type;
  std::string body;
};

Reply route(const Server& server, const std::string& url) {
  if (url == "/metrics")
    return {MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", prometheus_text(take_snapshot(server.segment))};
  if (url == "/status.json")
    return {MHD_HTTP_OK, "application/json",
            snapshot_json(take_snapshot(server.segment)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                "\n"};
  if (url == "/" || url == "/index.html")
    return {MHD_HTTP_OK, "text/html; charset=utf-8", std::string(kStatusHtml, sizeof kStatusHtml - 1)};
  return {MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
          "Not found. This relay serves /, /status.json, /metrics and /stream.\n"};
}

std::string client_address(MHD_Connection* connection) {
  const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!info || !info->client_addr) return "?";
  socklen_t length = info->client_addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return Endpoint::from_sockaddr(info->client_addr, length).to_string();
}

// Counts and logs (throttled) a viewer that could not keep up; false if it already was.
bool mark_cut(Stream& s, const char* why) {
  if (s.cut) return false;
  s.cut = true;
  Server& server = s.server;
  add(server.stats.stream_cut, 1);
  if (auto note = server.cut_log.due(monotonic_ns(), "cut /stream viewers"))
    LOG_NOTICE("/stream viewer %s cut off: %s%s", s.peer.c_str(), why, note->c_str());
  return true;
}

// Ends a viewer that cannot keep up. A suspended one is resumed so that its content reader
// ends the response; for one that MHD does not call (its client stopped reading, the socket
// is full) the socket is shut down, which MHD then sees and closes, and its unsent data is
// dropped (no linger) rather than kept by the kernel.
void cut(Stream& s, const char* why) {
  if (!mark_cut(s, why)) return;
  if (s.suspended) {
    s.suspended = false;
    MHD_resume_connection(s.connection);
    return;
  }
  const MHD_ConnectionInfo* info = MHD_get_connection_info(s.connection, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!info) return;
  linger abort{1, 0};
  if (setsockopt(info->connect_fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort) != 0)
    LOG_WARN("SO_LINGER on the socket of /stream viewer %s: %s", s.peer.c_str(), strerror(errno));
  if (shutdown(info->connect_fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
    LOG_WARN("shutdown of /stream viewer %s: %s", s.peer.c_str(), strerror(errno));
}

// Counts the datagrams published up to `head` in the viewer's backlog.
void count_backlog(Stream& s, uint64_t head) {
  for (; s.counted_to < head; ++s.counted_to) s.backlog += s.server.ring.header(s.counted_to).length;
}

// False (and the viewer is cut) once ingest may write where it has yet to read.
bool in_reach(Stream& s, uint64_t head) {
  if (head - s.cursor <= reachable_span(s.server.ring)) return true;
  cut(s, "the ring overwrote what it had not read yet");
  return false;
}

// Counts the backlog; false (and the viewer is cut) when it fell too far behind.
bool keeps_up(Stream& s, uint64_t head) {
  Server& server = s.server;
  if (!in_reach(s, head)) return false;
  count_backlog(s, head);
  if (s.backlog > server.stream_buffer) {
    cut(s, "more than http.stream_buffer bytes behind the source");
    return false;
  }
  return true;
}

// MHD's content reader of a /stream response: the tables of a fast start, then the ring's
// datagrams from the cursor on. Each is copied, then checked: if ingest may have written
// its slot meanwhile (its header names another position, or the head went a reachable
// span past it) the copy is worthless and the viewer is cut. Nothing new: suspended.
ssize_t read_stream(void* cls, uint64_t, char* buf, size_t max) {
  Stream& s = *static_cast<Stream*>(cls);
  Server& server = s.server;
  RingView& ring = server.ring;
  uint64_t head = ring.head_now();
  if (s.cut || s.gone || !in_reach(s, head)) return MHD_CONTENT_READER_END_WITH_ERROR;
  count_backlog(s, head);  // held against it by the head poll only: it reads now
  size_t n = std::min(max, sizeof(TablePackets) - s.tables_sent);
  std::memcpy(buf, s.tables.data() + s.tables_sent, n);
  s.tables_sent += n;
  uint64_t from_ring = 0;
  while (n < max && s.cursor < head) {
    const RingSlotHeader& h = ring.header(s.cursor);
    uint32_t length = h.length;
    size_t take = std::min<size_t>(length - std::min(length, s.offset), max - n);
    std::memcpy(buf + n, ring.data(s.cursor) + s.offset, take);
    if (!ring.still_holds(s.cursor) || !in_reach(s, ring.head_now())) {
      cut(s, "the ring overwrote what it was reading");
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    n += take;
    from_ring += take;
    s.offset += uint32_t(take);
    if (s.offset >= length) {
      ++s.cursor;
      s.offset = 0;
    }
  }
  s.backlog -= std::min(s.backlog, from_ring);
  if (n == 0) {  // MHD calls again only once resumed (the head poll)
    s.suspended = true;
    MHD_suspend_connection(s.connection);
    return 0;
  }
  add(server.stats.stream_bytes, n);
  return ssize_t(n);
}

// Never called: a HEAD /stream response has the headers of GET's and no body.
ssize_t no_body(void*, uint64_t, char*, size_t) { return MHD_CONTENT_READER_END_OF_STREAM; }

// A new viewer starts at the last key frame, after the PAT and PMT, or else live.
std::unique_ptr<Stream> open_stream(Server& server, MHD_Connection* connection) {
  auto s = std::make_unique<Stream>(Stream{server, connection, client_address(connection)});
  uint64_t head = server.ring.head_now();
  s->cursor = head;
  if (auto start = choose_fast_start(server.ring, server.stream_info, monotonic_ns());
      start && read_tables(server.stream_info, start->tables_seq, &s->tables)) {
    continue_counters(server.ring, start->key_position, head, &s->tables);
    s->cursor = start->key_position;
    s->tables_sent = 0;
  }
  s->counted_to = s->cursor;
  LOG_DEBUG("/stream viewer %s starts %s", s->peer.c_str(), s->tables_sent == 0 ? "at a key frame" : "live");
  return s;
}

// GET or HEAD /stream: the stream as video/mp2t of unknown length (chunked for HTTP/1.1,
// until the connection closes for HTTP/1.0); 503 when http.max_streams viewers are on.
MHD_Result answer_stream(Server& server, MHD_Connection* connection, bool head, void** request_state) {
  bool full = !head && server.streams.size() >= server.max_streams;
  MHD_Response* response;
  std::unique_ptr<Stream> stream;
  if (full) {
    static const char kFull[] = "Too many viewers of /stream (http.max_streams): try again later.\n";
    response = MHD_create_response_from_buffer(sizeof kFull - 1, const_cast<char*>(kFull), MHD_RESPMEM_PERSISTENT);
  } else if (head) {
    // Not chunked: MHD would send the last chunk after HEAD's headers. Closed after them.
    response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, kStreamBlock, &no_body, nullptr, nullptr);
    if (response) MHD_set_response_options(response, MHD_RF_HTTP_1_0_COMPATIBLE_STRICT, MHD_RO_END);
  } else {
    stream = open_stream(server, connection);
    response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, kStreamBlock, &read_stream, stream.get(), nullptr);
  }
  if (!response) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, full ? "text/plain; charset=utf-8" : "video/mp2t");
  MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
  if (full) MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, "10");
  unsigned status = full ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK;
  MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  add(server.stats.requests, 1);
  if (full) {
    add(server.stats.errors, 1);
    add(server.stats.streams_refused, 1);
    if (auto note = server.refused_log.due(monotonic_ns(), "refused /stream viewers"))
      LOG_NOTICE("/stream request of %s refused: http.max_streams (%u) viewers are on%s",
                 client_address(connection).c_str(), server.max_streams, note->c_str());
  }
  if (stream && queued == MHD_YES) {
    *request_state = stream.get();  // request_done() finds it there
    server.streams.push_back(std::move(stream));
    add(server.stats.streams_opened, 1);
    server.stats.streams.store(server.streams.size(), std::memory_order_relaxed);
    server.streams_changed();
  }
  return queued;
}

// The end of a request: a /stream viewer leaves. One its client left stuck until the idle
// timeout could not keep up either: it counts as cut.
void request_done(void* cls, MHD_Connection*, void** request_state, MHD_RequestTerminationCode why) {
  auto& server = *static_cast<Server*>(cls);
  auto it = std::find_if(server.streams.begin(), server.streams.end(),
                         [&](const auto& s) { return s.get() == *request_state; });
  if (it == server.streams.end()) return;
  Stream& s = **it;
  if (why == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) mark_cut(s, "it read nothing for the idle timeout");
  LOG_DEBUG("/stream viewer %s left", s.peer.c_str());
  server.streams.erase(it);
  server.stats.streams.store(server.streams.size(), std::memory_order_relaxed);
  server.streams_changed();
}

// MHD does not see a suspended connection close: while the source is silent, the viewers
// that left would be counted (and hold their place under http.max_streams) until it speaks
// again. So once a second the waiting ones are asked, in one poll(2), whether their client
// closed its end; those are resumed to end. (A client that only shuts down its sending
// side while it reads on ends too: HTTP clients do not do that.)
bool hangup_check(Server& server) {
  uint64_t now = monotonic_ns();
  if (now < server.next_hangup_check_ns) return false;
  server.next_hangup_check_ns = now + kHangupCheckNs;
  server.waiting.clear();
  for (auto& s : server.streams) {
    const MHD_ConnectionInfo* info =
        s->suspended ? MHD_get_connection_info(s->connection, MHD_CONNECTION_INFO_CONNECTION_FD) : nullptr;
    server.waiting.push_back({info ? info->connect_fd : -1, POLLRDHUP, 0});  // fd -1: ignored
  }
  if (poll(server.waiting.data(), server.waiting.size(), 0) <= 0) return false;
  for (size_t i = 0; i < server.waiting.size(); ++i) {
    Stream& s = *server.streams[i];
    if (!(server.waiting[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) || !s.suspended) continue;
    s.gone = true;
    s.suspended = false;
    MHD_resume_connection(s.connection);
  }
  return true;
}

// The head poll: viewers waiting for data are resumed once the head moved (what came
// meanwhile is not held against them: it may be a burst); the others that fell too far
// behind are cut. True if MHD has connections to look at again.
bool poll_streams(Server& server) {
  uint64_t head = server.ring.head_now();
  bool changed = hangup_check(server);
  for (auto& s : server.streams) {
    if (s->cut || s->gone || s->counted_to == head) continue;
    changed = true;
    if (!s->suspended) {
      keeps_up(*s, head);
      continue;
    }
    count_backlog(*s, head);
    s->suspended = false;
    MHD_resume_connection(s->connection);
  }
  return changed;
}

MHD_Result answer(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                  const char*, size_t* upload_size, void** request_state) {
  auto& server = *static_cast<Server*>(cls);
  bool readable = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
  // GET and HEAD are answered on MHD's second call, once the request is complete: a reply
  // queued on the first call makes MHD close the connection (no keep-alive). Anything
  // else is refused at once, and its body is never read.
  static int headers_seen;
  if (readable && *request_state == nullptr) {
    *request_state = &headers_seen;
    return MHD_YES;
  }
  if (readable && *upload_size != 0) {  // a GET with a body: the body is read and ignored
    *upload_size = 0;
    return MHD_YES;
  }
  if (readable && strcmp(url, "/stream") == 0)
    return answer_stream(server, connection, strcmp(method, MHD_HTTP_METHOD_HEAD) == 0, request_state);
  Reply reply;
  try {
    reply = readable ? route(server, url)
                     : Reply{MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                             "Method not allowed: use GET or HEAD.\n"};
  } catch (const std::exception& e) {
    LOG_ERROR("%s %.200s: %s", method, url, e.what());
    reply = {MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", "Internal error.\n"};
  }
  MHD_Response* response =
      MHD_create_response_from_buffer(reply.body.size(), reply.body.data(), MHD_RESPMEM_MUST_COPY);
  if (!response) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, reply.content_type);
  MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
  if (reply.status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  if (strcmp(reply.content_type, "text/html; charset=utf-8") == 0)  // the page loads nothing from elsewhere
    MHD_add_response_header(response, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                            "connect-src 'self'; img-src data:");
  MHD_Result queued = MHD_queue_response(connection, reply.status, response);
  MHD_destroy_response(response);

  server.stats.requests.fetch_add(1, std::memory_order_relaxed);
  if (reply.status >= 400) server.stats.errors.fetch_add(1, std::memory_order_relaxed);
  LOG_DEBUG("%s %.200s %u from %s", method, url, reply.status, client_address(connection).c_str());
  return queued;
}

void count_connection(void* cls, MHD_Connection*, void**, MHD_ConnectionNotificationCode code) {
  if (code == MHD_CONNECTION_NOTIFY_STARTED)
    static_cast<Server*>(cls)->stats.connections.fetch_add(1, std::memory_order_relaxed);
}

void log_mhd(void*, const char* fmt, va_list ap) {
  char text[512];
  vsnprintf(text, sizeof text, fmt, ap);
  size_t n = strlen(text);
  while (n > 0 && text[n - 1] == '\n') text[--n] = '\0';
  LOG_WARN("libmicrohttpd: %s", text);
}

// libmicrohttpd's work, when its epoll descriptor is readable or its next timeout is due
// (a connection to close); then the timeout is armed again for what MHD waits for next.
struct Driver {
  MHD_Daemon* daemon;
  struct ev_loop* loop;
  ev_io ready{};
  ev_timer timeout{};

  void run() {
    MHD_run(daemon);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    ev_timer_stop(loop, &timeout);
    if (MHD_get_timeout(daemon, &ms) == MHD_YES) {
      ev_timer_set(&timeout, double(ms) / 1000., 0.);
      ev_timer_start(loop, &timeout);
    }
  }
};

}  // namespace

int run_http(ChildContext& ctx) {
  if (ctx.sockets.http < 0) {
    LOG_ERROR("no HTTP socket was inherited");
    return kExitConfig;
  }
  ChildLoop loop(ctx);
  Server server{ctx.segment, ctx.segment.stats().http, ring_of(ctx.segment), ctx.segment.stream(),
                ctx.config.http.max_streams, ctx.config.http.stream_buffer};
  server.stats.streams.store(0, std::memory_order_relaxed);  // a restarted process has none
  unsigned max_streams = ctx.config.http.max_streams;
  MHD_Daemon* daemon = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, 0, nullptr, nullptr, &answer, &server,
      MHD_OPTION_EXTERNAL_LOGGER, &log_mhd, nullptr,  // first, so that it sees every message
      MHD_OPTION_LISTEN_SOCKET, ctx.sockets.http,
      MHD_OPTION_CONNECTION_LIMIT, kMaxConnections + max_streams,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, kMaxConnectionsPerIp + max_streams,
      MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutSeconds,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory,
      MHD_OPTION_NOTIFY_CONNECTION, &count_connection, &server,
      MHD_OPTION_NOTIFY_COMPLETED, &request_done, &server,
      MHD_OPTION_END);
  const MHD_DaemonInfo* epoll = daemon ? MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD) : nullptr;
  if (!daemon || !epoll) {
    LOG_ERROR("cannot start the HTTP server on %s", local_endpoint(ctx.sockets.http).to_string().c_str());
    if (daemon) MHD_stop_daemon(daemon);
    return 1;
  }
  Driver driver{daemon, loop.loop()};
  ev_io_init(&driver.ready, [](struct ev_loop*, ev_io* w, int) { static_cast<Driver*>(w->data)->run(); },
             epoll->epoll_fd, EV_READ);
  ev_init(&driver.timeout, [](struct ev_loop*, ev_timer* w, int) { static_cast<Driver*>(w->data)->run(); });
  driver.ready.data = driver.timeout.data = &driver;
  ev_io_start(loop.loop(), &driver.ready);
  // The head poll runs while there are /stream viewers, and only then.
  struct Poll {
    Server* server;
    Driver* driver;
    ev_timer timer{};
  } poll{&server, &driver};
  ev_timer_init(&poll.timer, [](struct ev_loop*, ev_timer* w, int) {
    auto* p = static_cast<Poll*>(w->data);
    if (poll_streams(*p->server)) p->driver->run();
  }, kStreamPollSeconds, kStreamPollSeconds);
  poll.timer.data = &poll;
  server.streams_changed = [&] {
    if (!server.streams.empty() && !ev_is_active(&poll.timer)) ev_timer_start(loop.loop(), &poll.timer);
    if (server.streams.empty() && ev_is_active(&poll.timer)) ev_timer_stop(loop.loop(), &poll.timer);
  };
  driver.run();  // arms the timeout
  LOG_INFO("serving /metrics, /status.json, /stream and / on http://%s/",
           local_endpoint(ctx.sockets.http).to_string().c_str());
  loop.run();
  ev_io_stop(loop.loop(), &driver.ready);
  ev_timer_stop(loop.loop(), &driver.timeout);
  ev_timer_stop(loop.loop(), &poll.timer);
  server.streams_changed = [] {};
  // MHD must not be stopped with suspended connections: they are resumed first.
  for (auto& s : server.streams)
    if (s->suspended) {
      s->suspended = false;
      MHD_resume_connection(s->connection);
    }
  MHD_stop_daemon(daemon);
  return 0;
}

}  // namespace vrelay
