// Test helper of test/client (label "client"): proves whether the relay sends the stream to
// a UDP port. It binds the port, sends small datagrams to the relay's ingest every 100 ms,
// and reports whether one of them came back through the relay. Built with the tests, so
// they need neither python nor socat.
//
//   udp_probe arrives PORT INGEST_PORT SECONDS   exit 0 as soon as a datagram sent to
//                                                ingest reaches PORT; 1 after SECONDS
//   udp_probe silent PORT INGEST_PORT SECONDS    exit 0 if none reaches PORT for SECONDS
//                                                (each send while listening); 1 if one does
// Anything else: exit 2. The port is bound on 0.0.0.0, as `cvlc udp://@:PORT` binds it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int usage() {
  fprintf(stderr, "usage: udp_probe arrives|silent PORT INGEST_PORT SECONDS\n");
  return 2;
}

bool parse_port(const char* s, uint16_t* port) {
  char* end = nullptr;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < 1 || v > 65535) return false;
  *port = uint16_t(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) return usage();
  std::string mode = argv[1];
  uint16_t port, ingest;
  if ((mode != "arrives" && mode != "silent") || !parse_port(argv[2], &port) || !parse_port(argv[3], &ingest))
    return usage();
  double seconds = atof(argv[4]);
  if (!(seconds > 0 && seconds <= 600)) return usage();

  int rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_port = htons(port);
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  if (rx < 0 || bind(rx, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) {
    fprintf(stderr, "udp_probe: cannot bind UDP port %u: %s\n", port, strerror(errno));
    return 2;
  }
  int tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(ingest);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  // Datagrams carry a tag of this run: anything else arriving at the port is not counted.
  std::string tag = "vrelay-udp-probe " + std::to_string(getpid()) + " ";
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
  auto next_send = start;
  unsigned sent = 0;
  while (true) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    if (now >= next_send) {
      std::string payload = tag + std::to_string(sent++);
      sendto(tx, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
      next_send = now + std::chrono::milliseconds(100);
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(std::min(next_send, deadline) - now);
    pollfd p{rx, POLLIN, 0};
    if (poll(&p, 1, int(wait.count()) + 1) <= 0) continue;
    char buffer[2048];
    ssize_t n = recv(rx, buffer, sizeof buffer, 0);
    if (n <= 0 || std::string(buffer, size_t(n)).rfind(tag, 0) != 0) continue;
    if (mode == "arrives") {
      printf("udp_probe: a datagram sent to ingest port %u arrived at port %u (%u sent)\n", ingest, port, sent);
      return 0;
    }
    fprintf(stderr, "udp_probe: a datagram sent to ingest port %u arrived at port %u, expected none\n", ingest, port);
    return 1;
  }
  if (mode == "silent") {
    printf("udp_probe: none of %u datagrams sent to ingest port %u arrived at port %u\n", sent, ingest, port);
    return 0;
  }
  fprintf(stderr, "udp_probe: none of %u datagrams sent to ingest port %u arrived at port %u within %g s\n", sent,
          ingest, port, seconds);
  return 1;
}
