// reference_relay: the minimal UDP relay people would write, with no control plane. It is
// the yardstick relay_bench measures vrelayd against, in the same run and with the same load.
//
//   reference_relay --ingest 127.0.0.1:PORT --destinations FILE [--mode plain|gso]
//
// FILE holds one IPv4 HOST:PORT per line. Once the ingest socket is bound it prints
// "ready ingest=127.0.0.1:PORT" and relays until SIGTERM or SIGINT (exit 0).
//   plain: a blocking recvmmsg of up to 64 datagrams into its own buffers, then one message
//          per datagram and destination (iovec pointing into the buffer: no copy), sent by
//          sendmmsg in chunks of at most 1024 from ONE unconnected socket.
//   gso:   one socket per destination, connect()ed to it; per batch and destination every
//          run of consecutive datagrams of equal size is ONE message carrying a UDP_SEGMENT
//          cmsg (at most 64 segments and 65,000 bytes), all of a destination's messages in
//          one sendmmsg. A run of one datagram goes without the cmsg.
// Nothing is allocated after start.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

namespace {

constexpr unsigned kBatch = 64;             // datagrams per recvmmsg
constexpr size_t kBufferSize = 65536;       // any UDP datagram fits
constexpr unsigned kMaxMessages = 1024;     // UIO_MAXIOV: the most sendmmsg takes at once
constexpr unsigned kMaxSegments = 64;       // per GSO message
constexpr size_t kMaxGsoBytes = 65000;      // per GSO message (an IPv4 packet is < 64 KiB)
constexpr int kSocketBuffer = 4 << 20;      // as vrelayd's ingest/fanout.socket_buffer default

volatile sig_atomic_t g_stop = 0;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "reference_relay: %s\n", what.c_str());
  std::exit(1);
}

[[noreturn]] void die_errno(const std::string& what) { die(what + ": " + std::strerror(errno)); }

bool parse_address(const std::string& text, sockaddr_in* out) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  char* end = nullptr;
  long port = std::strtol(text.c_str() + colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535 || colon + 1 == text.size()) return false;
  *out = {};
  out->sin_family = AF_INET;
  out->sin_port = htons(uint16_t(port));
  return inet_pton(AF_INET, text.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

std::vector<sockaddr_in> read_destinations(const std::string& path) {
  std::ifstream in(path);
  if (!in) die("cannot read " + path);
  std::vector<sockaddr_in> out;
  std::string line;
  while (std::getline(in, line)) {
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (line.empty()) continue;
    sockaddr_in a;
    if (!parse_address(line, &a)) die("bad destination '" + line + "' in " + path);
    out.push_back(a);
  }
  if (out.empty()) die("no destination in " + path);
  return out;
}

// SO_RCVBUFFORCE/SO_SNDBUFFORCE go past net.core.*mem_max (root only); else the plain option.
void set_buffer(int fd, int force_option, int option) {
  if (setsockopt(fd, SOL_SOCKET, force_option, &kSocketBuffer, sizeof kSocketBuffer) != 0)
    setsockopt(fd, SOL_SOCKET, option, &kSocketBuffer, sizeof kSocketBuffer);
}

int udp_socket() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die_errno("socket");
  return fd;
}

// Sends msgs[0..count) on fd, in chunks of kMaxMessages. A message the kernel refuses (say
// ECONNREFUSED after a viewer left) is skipped; it never holds the others back.
void send_all(int fd, mmsghdr* msgs, unsigned count) {
  unsigned i = 0;
  while (i < count && !g_stop) {
    int r = sendmmsg(fd, msgs + i, std::min(count - i, kMaxMessages), 0);
    if (r > 0) i += unsigned(r);
    else if (errno != EINTR) ++i;
  }
}

struct Relay {
  int ingest = -1;
  std::vector<sockaddr_in> destinations;
  std::vector<char> buffers = std::vector<char>(size_t(kBatch) * kBufferSize);
  iovec receive_iov[kBatch];
  mmsghdr receive_msgs[kBatch];
  iovec send_iov[kBatch];  // {buffer i, length of datagram i}: what every copy points to

  Relay() {
    for (unsigned i = 0; i < kBatch; ++i) {
      receive_iov[i] = {&buffers[i * kBufferSize], kBufferSize};
      receive_msgs[i] = {};
      receive_msgs[i].msg_hdr.msg_iov = &receive_iov[i];
      receive_msgs[i].msg_hdr.msg_iovlen = 1;
      send_iov[i] = {&buffers[i * kBufferSize], 0};
    }
  }

  // Blocks for the first datagram (or the 200 ms timeout, to look at g_stop), then takes
  // what is waiting, up to kBatch. Returns the count, 0 if none.
  unsigned receive() {
    int n = recvmmsg(ingest, receive_msgs, kBatch, MSG_WAITFORONE, nullptr);
    if (n <= 0) return 0;
    for (int i = 0; i < n; ++i) send_iov[i].iov_len = receive_msgs[i].msg_len;
    return unsigned(n);
  }
};

// plain: message (datagram i, destination d) is msgs[i * D + d], filled once at start; each
// batch only sets the datagrams' lengths (send_iov) before sending the first n * D.
void run_plain(Relay& relay, int out) {
  size_t d_count = relay.destinations.size();
  std::vector<mmsghdr> msgs(kBatch * d_count);
  for (unsigned i = 0; i < kBatch; ++i)
    for (size_t d = 0; d < d_count; ++d) {
      msghdr& m = msgs[i * d_count + d].msg_hdr;
      m.msg_name = &relay.destinations[d];
      m.msg_namelen = sizeof(sockaddr_in);
      m.msg_iov = &relay.send_iov[i];
      m.msg_iovlen = 1;
    }
  while (!g_stop) {
    unsigned n = relay.receive();
    if (n) send_all(out, msgs.data(), unsigned(n * d_count));
  }
}

// gso: the messages of a batch are the same for every destination (the sockets are
// connected), so they are built once per batch and sent on each destination's socket.
// One socket per destination, connected, with UDP GSO checked: the option is tried, then
// cleared (a socket-wide gso_size would split a lone larger datagram; sizes go per message).
std::vector<int> gso_sockets(const std::vector<sockaddr_in>& destinations) {
  std::vector<int> sockets;
  for (const sockaddr_in& d : destinations) {
    int fd = udp_socket();
    set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&d), sizeof d) != 0) die_errno("connect");
    int size = 1316, off = 0;
    if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &size, sizeof size) != 0) die_errno("setsockopt(UDP_SEGMENT)");
    setsockopt(fd, SOL_UDP, UDP_SEGMENT, &off, sizeof off);
    sockets.push_back(fd);
  }
  return sockets;
}

void run_gso(Relay& relay, const std::vector<int>& sockets) {
  constexpr size_t kCmsgSpace = CMSG_SPACE(sizeof(uint16_t));
  alignas(cmsghdr) char control[kBatch][kCmsgSpace];
  mmsghdr msgs[kBatch];
  while (!g_stop) {
    unsigned n = relay.receive(), count = 0;
    for (unsigned i = 0; i < n;) {
      // The run from i: same size, at most kMaxSegments and kMaxGsoBytes.
      size_t size = relay.send_iov[i].iov_len;
      unsigned run = 1;
      while (i + run < n && run < kMaxSegments && relay.send_iov[i + run].iov_len == size &&
             (run + 1) * size <= kMaxGsoBytes)
        ++run;
      msghdr& m = msgs[count].msg_hdr;
      m = {};
      m.msg_iov = &relay.send_iov[i];  // the run's iovecs are consecutive
      m.msg_iovlen = run;
      if (run > 1) {
        m.msg_control = control[count];
        m.msg_controllen = kCmsgSpace;
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t gso_size = uint16_t(size);
        std::memcpy(CMSG_DATA(c), &gso_size, sizeof gso_size);
      }
      ++count;
      i += run;
    }
    if (count == 1) {
      for (int fd : sockets)
        while (sendmsg(fd, &msgs[0].msg_hdr, 0) < 0 && errno == EINTR && !g_stop) {
        }
    } else if (count > 1) {
      for (int fd : sockets) send_all(fd, msgs, count);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string ingest_text, destinations_path, mode = "plain";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) die("usage: reference_relay --ingest HOST:PORT --destinations FILE [--mode plain|gso]");
    if (a == "--ingest") ingest_text = argv[++i];
    else if (a == "--destinations") destinations_path = argv[++i];
    else if (a == "--mode") mode = argv[++i];
    else die("unknown option " + a);
  }
  sockaddr_in ingest_address;
  if (!parse_address(ingest_text, &ingest_address)) die("--ingest HOST:PORT (IPv4) is required");
  if (destinations_path.empty()) die("--destinations FILE is required");
  if (mode != "plain" && mode != "gso") die("--mode is plain or gso");

  // No SA_RESTART: a signal ends the blocking receive at once.
  struct sigaction sa = {};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  Relay relay;
  relay.destinations = read_destinations(destinations_path);
  relay.ingest = udp_socket();
  set_buffer(relay.ingest, SO_RCVBUFFORCE, SO_RCVBUF);
  timeval tick = {0, 200000};  // a signal between the g_stop check and recvmmsg waits <= 200 ms
  setsockopt(relay.ingest, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
  if (bind(relay.ingest, reinterpret_cast<sockaddr*>(&ingest_address), sizeof ingest_address) != 0)
    die_errno("bind " + ingest_text);
  socklen_t length = sizeof ingest_address;
  getsockname(relay.ingest, reinterpret_cast<sockaddr*>(&ingest_address), &length);
  char host[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &ingest_address.sin_addr, host, sizeof host);

  // The sending sockets are ready (and UDP_SEGMENT checked) before the ready line.
  int plain_out = -1;
  std::vector<int> gso_out;
  if (mode == "plain") {
    plain_out = udp_socket();
    set_buffer(plain_out, SO_SNDBUFFORCE, SO_SNDBUF);
  } else {
    gso_out = gso_sockets(relay.destinations);
  }
  std::printf("ready ingest=%s:%u\n", host, unsigned(ntohs(ingest_address.sin_port)));
  std::fflush(stdout);
  if (mode == "plain") run_plain(relay, plain_out);
  else run_gso(relay, gso_out);
  return 0;  // the sockets close with the process
}
