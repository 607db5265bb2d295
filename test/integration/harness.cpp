// Integration-test harness (see harness.hpp).
#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace vrelay::test {

namespace {
int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : int(left);
}

sockaddr_in loopback(uint16_t port, const char* host = "127.0.0.1") {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, host, &a.sin_addr);
  return a;
}

std::atomic<int> g_instances{0};

std::string upper_copy(std::string s) {
  for (char& c : s) c = char(toupper(static_cast<unsigned char>(c)));
  return s;
}

// The port of "key=HOST:PORT" in the ready line, or 0.
// The value of " key" in the ready line ("" if absent).
std::string field_of(const std::string& line, const std::string& key) {
  auto at = line.find(" " + key);
  if (at == std::string::npos) return "";
  std::string value = line.substr(at + 1 + key.size());
  return value.substr(0, value.find(' '));
}

uint16_t port_of(const std::string& line, const std::string& key) {
  std::string value = field_of(line, key);
  auto colon = value.rfind(':');
  if (colon == std::string::npos) return 0;
  return uint16_t(std::atoi(value.c_str() + colon + 1));
}

// The environment of a program under test: the test's own, with NAME=VALUE added (or
// replacing NAME's value) and NAME alone removed.
std::vector<std::string> program_environment(const std::vector<std::string>& changes) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  for (const std::string& change : changes) {
    std::string prefix = change.substr(0, change.find('=')) + "=";
    std::erase_if(env, [&](const std::string& e) { return e.rfind(prefix, 0) == 0; });
    if (change.find('=') != std::string::npos) env.push_back(change);
  }
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The one fork and exec of the harness: stdin, stdout and stderr from these descriptors
// (-1: the test's own), or, with `master`, all three on a new pty of this size. Everything
// the child needs is made before the fork: between fork and exec it must not allocate
// (another thread of the test may hold the allocator's lock).
pid_t spawn(std::vector<std::string> args, const std::vector<std::string>& environment, int in, int out, int err,
            int* master = nullptr, winsize size = {}) {
  if (args.empty()) throw std::invalid_argument("spawn: no program");
  std::vector<std::string> env = program_environment(environment);
  std::vector<char*> argv = pointers(args), envp = pointers(env);
  pid_t pid = master ? forkpty(master, nullptr, nullptr, &size) : fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
  if (pid == 0) {
    if (in >= 0) dup2(in, 0);
    if (out >= 0) dup2(out, 1);
    if (err >= 0) dup2(err, 2);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

int decoded_status(int raw) { return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw); }
}  // namespace

pid_t start_program(std::vector<std::string> args, const std::string& log_path, int* stdout_fd,
                    std::vector<std::string> environment) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_t pid = -1;
  try {
    pid = spawn(std::move(args), environment, -1, out[1], log);
  } catch (...) {
    close(out[0]);
    close(out[1]);
    if (log >= 0) close(log);
    throw;
  }
  close(out[1]);
  if (log >= 0) close(log);
  *stdout_fd = out[0];
  return pid;
}

std::string read_first_line(int fd, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  std::string text;
  while (text.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, remaining_ms(deadline)) <= 0) break;
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, size_t(n));
  }
  return text.substr(0, text.find('\n'));
}

std::string run_command(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  return out;
}

Program::Program(std::vector<std::string> args, std::vector<std::string> environment, std::optional<Terminal> terminal) {
  if (terminal) {
    winsize size{};
    size.ws_row = terminal->rows;
    size.ws_col = terminal->columns;
    pid_ = spawn(std::move(args), environment, -1, -1, -1, &master_, size);
    fcntl(master_, F_SETFD, FD_CLOEXEC);
    fcntl(master_, F_SETFL, fcntl(master_, F_GETFL) | O_NONBLOCK);  // out() takes what is there
    return;
  }
  char dir_template[] = "/tmp/vrelay-program.XXXXXX";
  if (!mkdtemp(dir_template)) throw std::runtime_error(std::string("mkdtemp: ") + strerror(errno));
  dir_ = dir_template;
  int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int out = open((dir_ + "/stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = open((dir_ + "/stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  out_fd_ = open((dir_ + "/stdout").c_str(), O_RDONLY | O_CLOEXEC);
  try {
    pid_ = spawn(std::move(args), environment, in, out, err);
  } catch (...) {
    for (int fd : {in, out, err}) close(fd);
    throw;
  }
  for (int fd : {in, out, err}) close(fd);
}

Program::~Program() {
  if (running()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (master_ >= 0) close(master_);
  if (out_fd_ >= 0) close(out_fd_);
  if (!dir_.empty()) {
    unlink((dir_ + "/stdout").c_str());
    unlink((dir_ + "/stderr").c_str());
    rmdir(dir_.c_str());
  }
}

const std::string& Program::out() {
  // Only what came since the last call is read: a live view's output grows for seconds.
  char buf[8192];
  int fd = master_ >= 0 ? master_ : out_fd_;
  ssize_t n;
  while (fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0) out_.append(buf, size_t(n));
  return out_;  // a pty's read fails with EAGAIN when it is empty, EIO once its user left
}

std::string Program::err() const { return dir_.empty() ? "" : read_file(dir_ + "/stderr"); }

bool Program::running() {
  if (pid_ <= 0) return false;
  int raw = 0;
  if (waitpid(pid_, &raw, WNOHANG) != pid_) return true;
  status_ = decoded_status(raw);
  pid_ = -1;
  return false;
}

void Program::signal(int signo) {
  if (running()) kill(pid_, signo);  // never a reaped pid: it may be someone else's by now
}

int Program::wait(std::chrono::milliseconds limit) {
  if (!wait_until([&] { return !running(); }, limit)) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    status_ = -1;
  }
  return status_;
}

ProgramResult run_program(std::vector<std::string> args, std::chrono::milliseconds limit,
                          std::vector<std::string> environment) {
  Program program(std::move(args), std::move(environment));
  ProgramResult r;
  r.status = program.wait(limit);
  r.out = program.out();
  r.err = program.err();
  return r;
}

ProgramResult run_vrelayd(std::vector<std::string> args, std::chrono::milliseconds limit) {
  args.insert(args.begin(), VRELAYD_PATH);
  return run_program(std::move(args), limit);
}

bool have_ffmpeg() { return run_command("command -v ffmpeg && command -v ffprobe").find("ffprobe") != std::string::npos; }

EncodedVideo encode_video(const std::string& name, const std::string& codec_args) {
  std::string path = "/tmp/vrelay-video-" + std::to_string(getpid()) + "-" + name + ".ts";
  run_command("ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=320x240:rate=25 -t 4 " + codec_args +
              " -f mpegts " + path + " 2>&1");
  EncodedVideo e;
  std::ifstream in(path, std::ios::binary);
  e.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  e.bytes.resize(e.bytes.size() / 188 * 188);
  std::istringstream probe(
      run_command("ffprobe -v error -select_streams v -show_entries packet=pos,flags -of csv=p=0 " + path));
  for (std::string line; std::getline(probe, line);)
    if (line.find(",K") != std::string::npos) e.key_positions.push_back(std::stoull(line));
  std::remove(path.c_str());
  return e;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);  // poll interval of a bounded wait
  }
  return true;
}

uint64_t Counters::operator[](std::string_view name) const {
  for (size_t i = 0; i < kCounterCount; ++i) {
    if (counter_name(kCounters[i]) != name) continue;
    if (i >= snapshot_.counters.size()) throw std::logic_error("Counters: no snapshot taken");
    return snapshot_.counters[i];
  }
  throw std::invalid_argument("Counters: no counter named '" + std::string(name) + "'");
}

ProcessView Counters::process(Role role) const {
  for (const ProcessView& p : snapshot_.processes)
    if (p.role == role) return p;
  throw std::invalid_argument(std::string("Counters: the relay runs no ") + role_name(role) + " process");
}

Relay::Relay(const std::string& yaml, std::vector<std::string> extra_args, std::vector<std::string> environment) {
  instance_ = "it-" + std::to_string(getpid()) + "-" + std::to_string(g_instances++);
  log_path_ = "/tmp/vrelay-" + instance_ + ".log";
  std::vector<std::string> args = {VRELAYD_PATH, "-F", "--instance", instance_};
  // An address in the YAML text counts too: a test of reloading it must not override it.
  bool has_control = yaml.find("control:\n  listen:") != std::string::npos;
  bool has_ingest = yaml.find("ingest:\n  listen:") != std::string::npos;
  for (auto& a : extra_args) {
    has_control = has_control || a == "--control" || a == "127.0.0.1";  // or the positional form
    has_ingest = has_ingest || a == "--ingest";
  }
  if (!has_control) {
    args.push_back("--control");
    args.push_back("127.0.0.1:0");
  }
  if (!has_ingest) {
    args.push_back("--ingest");
    args.push_back("127.0.0.1:0");
  }
  if (!yaml.empty()) {
    config_path_ = "/tmp/vrelay-" + instance_ + ".yaml";
    std::ofstream(config_path_) << yaml;
    args.push_back("-c");
    args.push_back(config_path_);
  }
  for (auto& a : extra_args) args.push_back(a);

  int out = -1;
  pid_ = start_program(args, log_path_, &out, environment);
  ready_line_ = read_first_line(out, 10s);
  close(out);
  control_port_ = port_of(ready_line_, "control=");
  ingest_port_ = port_of(ready_line_, "ingest=");
  http_port_ = port_of(ready_line_, "http=");
  if (std::string named = field_of(ready_line_, "instance="); !named.empty()) instance_ = named;  // --instance in extra_args
  if (ready_line_.rfind("vrelayd ready ", 0) != 0 || !control_port_ || !ingest_port_) {
    std::string why = "vrelayd did not report ready: '" + ready_line_ + "'\n" + log();
    stop(3000ms);
    throw std::runtime_error(why);
  }
}

Relay::~Relay() {
  if (pid_ > 0) stop(5000ms);
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  shm_.reset();
  Segment::remove(instance_);
  // A sanitizer report from any vrelayd process (the sanitizer builds) fails the test, even
  // when the supervisor restarted the process and the test itself saw nothing wrong.
  std::string text = log();
  for (const char* report : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                             "WARNING: ThreadSanitizer"})
    if (text.find(report) != std::string::npos) ADD_FAILURE() << "vrelayd sanitizer report:\n" << text;
  unlink(log_path_.c_str());
  if (!config_path_.empty()) unlink(config_path_.c_str());
}

bool hangup(Relay& relay) {
  Counters before = relay.counters(), after;
  EXPECT_EQ(kill(relay.pid(), SIGHUP), 0);
  EXPECT_TRUE(wait_until([&] {
    after = relay.counters();
    return after["supervisor.reloads"] != before["supervisor.reloads"] ||
           after["supervisor.reload_failures"] != before["supervisor.reload_failures"];
  }));
  return after["supervisor.reloads"] != before["supervisor.reloads"];
}

Segment& Relay::shm() {
  if (!shm_) {
    shm_ = Segment::open(instance_, true);
  } else if (shm_->replaced()) {
    try {
      auto resized = Segment::open(instance_, true);
      replaced_shm_.push_back(std::exchange(shm_, std::move(resized)));
    } catch (const SegmentError&) {  // gone (stopped) or not yet published: keep the old one
    }
  }
  return *shm_;
}

pid_t Relay::child_pid(Role role) { return shm().process(role).pid.load(); }
Counters Relay::counters() { return Counters(shm()); }

uint64_t Relay::restarts(Role role) { return shm().process(role).restarts.load(); }

bool Relay::wait_restarted(Role role, pid_t old_pid, std::chrono::milliseconds limit) {
  return wait_until([&] {
    pid_t now = child_pid(role);
    return now != 0 && now != old_pid && shm().process(role).state.load() == uint32_t(ProcessState::kReady);
  }, limit);
}

int Relay::stop(std::chrono::milliseconds limit) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  auto deadline = Clock::now() + limit;
  int status = 0;
  while (true) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(1ms);  // poll interval of a bounded wait
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Relay::log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Session::Session(uint16_t port, bool expect_hello, int receive_buffer) {
  // Our own socket, not control::Client::connect: SO_RCVBUF must be set before connecting.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (receive_buffer > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  client_.adopt(fd);
  sockaddr_in a = loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error(std::string("connect: ") + strerror(errno));
  if (expect_hello) {
    control::Hello parsed;
    std::string error;
    if (client_.read_hello(Clock::now() + 5000ms, &parsed, &hello, &error) != control::Client::Read::kLine)
      throw std::runtime_error("no HELLO, got '" + (hello.empty() ? "(nothing)" : hello) + "'");
  }
}

Session::~Session() { close(); }

void Session::close() { client_.close(); }

void Session::send_raw(const std::string& bytes) {
  if (Status sent = client_.send_bytes(bytes); !sent) throw std::runtime_error("send: " + sent.error());
}

std::optional<std::string> Session::read_line(std::chrono::milliseconds limit) {
  std::string line, error;
  if (client_.read_line(Clock::now() + limit, &line, &error) != control::Client::Read::kLine) return std::nullopt;
  return line;
}

std::string Session::read_bytes(size_t count, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  std::string error;
  while (client_.buffered() < count && client_.receive(deadline, &error) == control::Client::Read::kLine) {
  }
  return client_.take_bytes(count);
}

std::string Session::command(const std::string& line) {
  send_raw(line + "\r\n");
  return reply().value_or("(no reply)");
}

namespace {
bool is_event(const std::string& line) { return control::classify(line).is_event(); }
}  // namespace

std::optional<std::string> Session::reply(std::chrono::milliseconds limit) {
  std::string line, error;
  auto keep = [this](const std::string& event) { events_.push_back(event); };
  if (client_.read_reply(Clock::now() + limit, &line, keep, &error) != control::Client::Read::kLine)
    return std::nullopt;
  return line;
}

std::optional<std::string> Session::next_event(std::chrono::milliseconds limit) {
  if (!events_.empty()) {
    std::string e = events_.front();
    events_.pop_front();
    return e;
  }
  auto line = read_line(limit);
  if (line && !is_event(*line)) return std::nullopt;
  return line;
}

std::optional<std::string> Session::wait_event(const std::string& type, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  auto matches = [&](const std::string& e) { return control::classify(e).type == upper_copy(type); };
  for (auto it = events_.begin(); it != events_.end(); ++it)
    if (matches(*it)) {
      std::string e = *it;
      events_.erase(it);
      return e;
    }
  while (auto line = read_line(std::chrono::milliseconds(remaining_ms(deadline)))) {
    if (!is_event(*line)) return std::nullopt;
    if (matches(*line)) return line;
  }
  return std::nullopt;
}

bool Session::closed_by_peer(std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  std::string error;
  for (;;) {
    switch (client_.receive(deadline, &error)) {
      case control::Client::Read::kLine: continue;  // kept for read_line
      case control::Client::Read::kClosed: return true;
      case control::Client::Read::kTimeout: return false;
      case control::Client::Read::kError: return errno == ECONNRESET;
    }
  }
}

UdpSink::UdpSink() {
  fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int size = 8 << 20;
  setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);  // root: past rmem_max
  setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  sockaddr_in a = loopback(0);
  bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
}

UdpSink::~UdpSink() { ::close(fd_); }

std::optional<std::string> UdpSink::receive(std::chrono::milliseconds limit, uint16_t* from_port) {
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, int(limit.count())) <= 0) return std::nullopt;
  char buf[65536];
  sockaddr_in from{};
  socklen_t length = sizeof from;
  ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &length);
  if (n < 0) return std::nullopt;
  if (from_port) *from_port = ntohs(from.sin_port);
  return std::string(buf, size_t(n));
}

size_t UdpSink::drain() {
  size_t count = 0;
  char buf[65536];
  while (recv(fd_, buf, sizeof buf, MSG_DONTWAIT) >= 0) ++count;
  return count;
}

UdpSource::UdpSource(uint16_t ingest_port, const char* from) : port_(ingest_port) {
  fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0, from);
  if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error(std::string("bind source: ") + strerror(errno));
}

UdpSource::~UdpSource() { ::close(fd_); }

void UdpSource::send(const std::string& payload) {
  sockaddr_in a = loopback(port_);
  if (sendto(fd_, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    throw std::runtime_error(std::string("sendto: ") + strerror(errno));
}

std::string test_payload(uint64_t index) {
  size_t size = 188 + (index * 7919) % (1472 - 188 + 1);
  std::string p(size, '\0');
  std::memcpy(p.data(), &index, sizeof index);
  for (size_t i = sizeof index; i < size; ++i) p[i] = char((index * 31 + i) & 0xFF);
  return p;
}

::testing::AssertionResult is_payload(const std::optional<std::string>& got, uint64_t index) {
  if (!got) return ::testing::AssertionFailure() << "datagram " << index << " did not arrive";
  std::string expected = test_payload(index);
  if (*got == expected) return ::testing::AssertionSuccess();
  uint64_t got_index = 0;
  if (got->size() >= sizeof got_index) std::memcpy(&got_index, got->data(), sizeof got_index);
  return ::testing::AssertionFailure() << "expected datagram " << index << " (" << expected.size()
                                       << " bytes), got one of " << got->size() << " bytes starting like datagram "
                                       << got_index;
}

Viewer::Viewer(Relay& relay, int receive_buffer) : session(relay.control_port(), true, receive_buffer) {
  std::string reply = session.command("CONECTAR " + std::to_string(sink.port()));
  if (reply != "OK") ADD_FAILURE() << "CONECTAR " << sink.port() << ": " << reply;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

uint16_t free_udp_port() {
  UdpSink probe;
  return probe.port();
}

}  // namespace vrelay::test
