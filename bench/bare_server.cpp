// The bare thread-per-connection server that bench/sessions_bench measures vrelayd's control
// process against, in the same run: it accepts on 127.0.0.1, gives each connection a detached
// thread with a STACK KiB stack, which sends a greeting like vrelayd's, answers PING with
// OK PONG and any other line with OK, and ends when the client closes. Nothing else: no
// registry, no limits, no events, no timers.
//
//   bare_server [--stack KIB]    (default 256) prints "bare_server ready port=PORT" once listening
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

bool send_all(int fd, const char* text, size_t length) {
  while (length > 0) {
    ssize_t n = send(fd, text, length, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text += n;
    length -= size_t(n);
  }
  return true;
}

void* serve(void* arg) {
  int fd = int(reinterpret_cast<intptr_t>(arg));
  char hello[64];
  int length = std::snprintf(hello, sizeof hello, "EVENT HELLO vrelay bare guest-%d\r\n", fd);
  std::string pending;
  char buffer[512];
  bool ok = send_all(fd, hello, size_t(length));
  while (ok) {
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buffer, size_t(n));
    for (size_t end; ok && (end = pending.find('\n')) != std::string::npos; pending.erase(0, end + 1)) {
      bool ping = pending.compare(0, 4, "PING") == 0;
      ok = ping ? send_all(fd, "OK PONG\r\n", 9) : send_all(fd, "OK\r\n", 4);
    }
  }
  close(fd);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  long stack_kib = 256;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--stack") == 0 && i + 1 < argc) {
      stack_kib = std::strtol(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: bare_server [--stack KIB]\n");
      return 2;
    }
  }
  if (stack_kib < 16) {
    std::fprintf(stderr, "bare_server: --stack must be at least 16 KiB\n");
    return 2;
  }
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || listen(listener, 4096) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    std::fprintf(stderr, "bare_server: cannot listen on 127.0.0.1: %s\n", strerror(errno));
    return 1;
  }
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attributes, size_t(stack_kib) * 1024);
  std::printf("bare_server ready port=%u\n", unsigned(ntohs(address.sin_port)));
  std::fflush(stdout);
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {  // like a server that cannot take more: wait
        usleep(1000);
        continue;
      }
      std::fprintf(stderr, "bare_server: accept: %s\n", strerror(errno));
      return 1;
    }
    pthread_t thread;
    if (pthread_create(&thread, &attributes, serve, reinterpret_cast<void*>(intptr_t(fd))) != 0) close(fd);
  }
}
