// vrelayd's http process (only with http.listen): serves /metrics (Prometheus text format),
// /status.json and the live status page on the listening socket the supervisor bound.
// One thread: libmicrohttpd in its external epoll mode, driven by the ChildLoop's libev
// loop (its epoll descriptor is one ev_io, its timeouts one ev_timer). A request that got
// stuck would therefore stop the heartbeat too, and the supervisor would replace the
// process. The shared memory is only read here, except this process's own heartbeat and
// its `http` counters.
#include <microhttpd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "child.hpp"
#include "log.hpp"
#include "net.hpp"
#include "stats_view.hpp"
#include "status_html.hpp"  // generated from status.html (server/CMakeLists.txt)

namespace vrelay {
namespace {

// A slow or hostile client must not hurt anything: few connections, short idle timeout,
// small per-connection memory (request line and headers must fit in it).
constexpr unsigned kMaxConnections = 64;
constexpr unsigned kMaxConnectionsPerIp = 16;
constexpr unsigned kIdleTimeoutSeconds = 10;
constexpr size_t kConnectionMemory = 32 * 1024;

struct Server {
  const Segment& segment;
  http_stats& stats;  // written by this process alone
};

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
  return {MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", "Not found. This relay serves /, /status.json and /metrics.\n"};
}

std::string client_address(MHD_Connection* connection) {
  const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!info || !info->client_addr) return "?";
  socklen_t length = info->client_addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return Endpoint::from_sockaddr(info->client_addr, length).to_string();
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
  Server server{ctx.segment, ctx.segment.stats().http};
  MHD_Daemon* daemon = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &answer, &server,
      MHD_OPTION_EXTERNAL_LOGGER, &log_mhd, nullptr,  // first, so that it sees every message
      MHD_OPTION_LISTEN_SOCKET, ctx.sockets.http,
      MHD_OPTION_CONNECTION_LIMIT, kMaxConnections,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, kMaxConnectionsPerIp,
      MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutSeconds,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory,
      MHD_OPTION_NOTIFY_CONNECTION, &count_connection, &server,
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
  driver.run();  // arms the timeout
  LOG_INFO("serving /metrics, /status.json and / on http://%s/", local_endpoint(ctx.sockets.http).to_string().c_str());
  loop.run();
  ev_io_stop(loop.loop(), &driver.ready);
  ev_timer_stop(loop.loop(), &driver.timeout);
  MHD_stop_daemon(daemon);
  return 0;
}

}  // namespace vrelay
