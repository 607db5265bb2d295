// Unit tests of the control protocol's client side (common/control_client.cpp): what the
// relay's lines are, the greeting, and the blocking client against a tiny TCP server.
#include "control_client.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "net.hpp"

using namespace vrelay::control;
using namespace std::chrono_literals;

namespace {

TEST(ControlLine, TextRepliesAndEvents) {
  Line ok = classify("OK 3 sessions");
  EXPECT_EQ(ok.kind, Line::Kind::kOk);
  EXPECT_EQ(ok.text, "3 sessions");
  Line err = classify("ERR no-such-user nobody is called ana");
  EXPECT_EQ(err.kind, Line::Kind::kErr);
  EXPECT_EQ(err.type, "no-such-user");
  EXPECT_EQ(err.text, "nobody is called ana");
  Line event = classify("EVENT msg ana  hola");
  EXPECT_TRUE(event.is_event());
  EXPECT_EQ(event.type, "MSG");
  EXPECT_EQ(event.text, "ana  hola");
  for (auto other : {"", "OKAY", "event MSG x", "SSH-2.0-OpenSSH_9.2", "{not json"})
    EXPECT_EQ(classify(other).kind, Line::Kind::kOther) << other;
  EXPECT_FALSE(classify_json("OK PONG"));
}

TEST(ControlLine, JsonRepliesAndEvents) {
  Line ok = classify(R"({"ok":true,"text":"PONG"})");
  EXPECT_EQ(ok.kind, Line::Kind::kOk);
  EXPECT_EQ(ok.text, "PONG");
  Line err = classify(R"({"error":"bad-port","ok":false,"text":"no"})");
  EXPECT_EQ(err.kind, Line::Kind::kErr);
  EXPECT_EQ(err.type, "bad-port");
  Line event = classify(R"({"at":1,"event":"join","name":"ana"})");  // "event" need not come first
  EXPECT_TRUE(event.is_event());
  EXPECT_EQ(event.type, "JOIN");
  EXPECT_EQ(classify(R"({"ok":"yes"})").kind, Line::Kind::kOther);
  EXPECT_FALSE(classify_json("[1,2]"));
}

TEST(ControlHello, VersionAndName) {
  auto hello = parse_hello("EVENT HELLO vrelay 0.1.0 guest-3");
  ASSERT_TRUE(hello) << hello.error();
  EXPECT_EQ(hello->version, "0.1.0");
  EXPECT_EQ(hello->name, "guest-3");
  for (auto bad : {"SSH-2.0-OpenSSH_9.2", "EVENT HELLO other 0.1.0 x", "EVENT HELLO vrelay 0.1.0", "ERR busy full",
                   "EVENT HELLO vrelay 0.1.0 x y"}) {
    auto not_hello = parse_hello(bad);
    ASSERT_FALSE(not_hello) << bad;
    EXPECT_EQ(not_hello.error(), "not a vrelay relay (its first line is '" + std::string(bad) + "', not EVENT HELLO)");
  }
}

// A relay of one connection on 127.0.0.1: `serve` runs on its own thread with the accepted
// socket, which is closed when it returns.
class TinyServer {
 public:
  explicit TinyServer(std::function<void(int)> serve) {
    listener_ = vrelay::bind_socket(*vrelay::parse_endpoint("127.0.0.1:0"), SOCK_STREAM);
    listen(listener_, 1);
    port_ = std::to_string(vrelay::local_endpoint(listener_).port());
    thread_ = std::thread([this, serve] {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 5000) != 1) return;
      int fd = accept(listener_, nullptr, nullptr);
      serve(fd);
      close(fd);
    });
  }
  ~TinyServer() {
    thread_.join();
    close(listener_);
  }
  const std::string& port() const { return port_; }

  static void write(int fd, const std::string& bytes) {
    ASSERT_EQ(send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), ssize_t(bytes.size()));
  }
  // Reads until the client sends a whole line (returned with its CR LF) or closes ("").
  static std::string read_line(int fd) {
    std::string got;
    char c;
    while (got.find('\n') == std::string::npos && recv(fd, &c, 1, 0) == 1) got += c;
    return got;
  }

 private:
  int listener_ = -1;
  std::string port_;
  std::thread thread_;
};

constexpr const char* kHello = "EVENT HELLO vrelay 0.1.0 guest-1\r\n";

TEST(ControlClient, RepliesAfterEvents) {
  std::string received;
  TinyServer server([&](int fd) {
    TinyServer::write(fd, kHello);
    received = TinyServer::read_line(fd);
    // A reply split across writes, after two events in both forms.
    TinyServer::write(fd, "EVENT JOIN ana\r\n{\"event\":\"msg\",\"text\":\"hi\"}\r\nOK ");
    TinyServer::write(fd, "PONG\r\n");
    TinyServer::read_line(fd);  // until the client closes
  });
  Client client;
  std::string error, line, reply;
  vrelay::Status connected = client.connect("127.0.0.1", server.port(), 5);
  ASSERT_TRUE(connected) << connected.error();
  Hello hello;
  ASSERT_EQ(client.read_hello(deadline_after(5), &hello, &line, &error), Client::Read::kLine) << error;
  EXPECT_EQ(line, "EVENT HELLO vrelay 0.1.0 guest-1");
  EXPECT_EQ(hello.name, "guest-1");
  std::vector<std::string> events;
  auto keep = [&](const std::string& e) { events.push_back(e); };
  ASSERT_EQ(client.command("PING", deadline_after(5), &reply, keep, &error), Client::Read::kLine) << error;
  EXPECT_EQ(reply, "OK PONG");
  EXPECT_EQ(events, (std::vector<std::string>{"EVENT JOIN ana", R"({"event":"msg","text":"hi"})"}));
  client.close();
  EXPECT_EQ(received, "PING\r\n");
}

TEST(ControlClient, TimesOutWithoutAReply) {
  TinyServer server([](int fd) {
    TinyServer::write(fd, kHello);
    TinyServer::read_line(fd);  // the command, never answered
    TinyServer::read_line(fd);  // until the client closes
  });
  Client client;
  std::string error, reply;
  vrelay::Status connected = client.connect("127.0.0.1", server.port(), 5);
  ASSERT_TRUE(connected) << connected.error();
  auto start = Clock::now();
  EXPECT_EQ(client.command("PING", Clock::now() + 200ms, &reply, nullptr, &error), Client::Read::kTimeout);
  EXPECT_GE(Clock::now() - start, 200ms);
  EXPECT_LT(Clock::now() - start, 3s);
  // A deadline already past does not wait.
  start = Clock::now();
  EXPECT_EQ(client.read_line(start, &reply, &error), Client::Read::kTimeout);
  EXPECT_LT(Clock::now() - start, 100ms);
}

TEST(ControlClient, PeerThatCloses) {
  TinyServer server([](int fd) {
    TinyServer::write(fd, kHello);
    TinyServer::read_line(fd);
  });
  Client client;
  std::string error, line;
  vrelay::Status connected = client.connect("127.0.0.1", server.port(), 5);
  ASSERT_TRUE(connected) << connected.error();
  Hello hello;
  ASSERT_EQ(client.read_hello(deadline_after(5), &hello, &line, &error), Client::Read::kLine) << error;
  EXPECT_EQ(client.command("DESCONECTAR", deadline_after(5), &line, nullptr, &error), Client::Read::kClosed);
}

TEST(ControlClient, NotARelay) {
  TinyServer server([](int fd) { TinyServer::write(fd, "SSH-2.0-OpenSSH_9.2\r\n"); });
  Client client;
  std::string error, line;
  vrelay::Status connected = client.connect("127.0.0.1", server.port(), 5);
  ASSERT_TRUE(connected) << connected.error();
  Hello hello;
  EXPECT_EQ(client.read_hello(deadline_after(5), &hello, &line, &error), Client::Read::kError);
  EXPECT_EQ(line, "SSH-2.0-OpenSSH_9.2");
  EXPECT_EQ(error.rfind("not a vrelay relay (its first line is 'SSH-2.0-OpenSSH_9.2'", 0), 0u) << error;
}

// Connect waits cut short by the interrupt fd are told apart from other failures without
// reading the message.
TEST(ControlClient, InterruptedConnect) {
  // A listener whose accept queue is full (backlog 0, one connection waiting) drops SYNs:
  // a second connection stays in progress.
  int listener = vrelay::bind_socket(*vrelay::parse_endpoint("127.0.0.1:0"), SOCK_STREAM);
  ASSERT_EQ(listen(listener, 0), 0);
  std::string port = std::to_string(vrelay::local_endpoint(listener).port());
  auto filler = vrelay::connect_tcp("127.0.0.1", port, 5);
  ASSERT_TRUE(filler) << filler.error();
  int wake[2];
  ASSERT_EQ(pipe(wake), 0);
  Client client;
  client.set_interrupt_fd(wake[0]);
  ASSERT_EQ(write(wake[1], "x", 1), 1);
  auto start = Clock::now();
  vrelay::Status connected = client.connect("127.0.0.1", port, 5);
  EXPECT_LT(Clock::now() - start, 3s);
  ASSERT_FALSE(connected);
  EXPECT_EQ(connected.error(), "interrupted");
  EXPECT_TRUE(client.interrupted());
  EXPECT_FALSE(client.connected());

  // Refused, with an interrupt fd that is not readable: a failure, not an interruption.
  char byte;
  ASSERT_EQ(read(wake[0], &byte, 1), 1);
  close(*filler);
  close(listener);
  connected = client.connect("127.0.0.1", port, 5);
  ASSERT_FALSE(connected);
  EXPECT_NE(connected.error(), "interrupted");
  EXPECT_FALSE(client.interrupted());
  close(wake[0]);
  close(wake[1]);
}

}  // namespace
