// Integration tests of the control protocol over real TCP sessions: the line discipline of
// vrelay-protocol(7) as a telnet or nc user meets it, and the session limits.
#include <gtest/gtest.h>

#include "harness.hpp"

using namespace vrelay;
using namespace vrelay::test;

namespace {

class Protocol : public ::testing::Test {
 protected:
  Relay relay;
};

TEST_F(Protocol, HelloPingEchoHelp) {
  Session s(relay.control_port());
  EXPECT_EQ(s.hello.rfind("EVENT HELLO vrelay ", 0), 0u);
  EXPECT_NE(s.hello.find(" guest-"), std::string::npos);
  EXPECT_EQ(s.command("PING"), "OK PONG");
  EXPECT_EQ(s.command("ping"), "OK PONG");
  EXPECT_EQ(s.command("ECHO hola   mundo"), "OK hola   mundo");
  std::string help = s.command("HELP");
  for (auto word : {"CONECTAR", "CONNECT", "INTERRUMPIR", "PAUSE", "CONTINUAR", "RESUME", "DESCONECTAR", "DISCONNECT"})
    EXPECT_NE(help.find(word), std::string::npos) << word;
}

TEST_F(Protocol, BadPortsAreRefusedAndNeverWrapped) {
  Session s(relay.control_port());
  for (auto port : {"0", "1", "1024", "65536", "-1", "+5000", "5e3", "0x1388", "5000abc", "99999999999999999999",
                    "1.2.3.4:5000", "٥٠٠٠"})
    EXPECT_EQ(s.command(std::string("CONECTAR ") + port).rfind("ERR bad-port ", 0), 0u) << port;
  EXPECT_EQ(s.command("CONECTAR 1.2.3.4 5000").rfind("ERR bad-argument ", 0), 0u);
  EXPECT_EQ(s.command("CONECTAR").rfind("ERR bad-argument ", 0), 0u);
  EXPECT_EQ(relay.shm().stats().control.subscribers.load(), 0u);  // nothing was subscribed
}

TEST_F(Protocol, StateErrors) {
  Session s(relay.control_port());
  EXPECT_EQ(s.command("INTERRUMPIR").rfind("ERR not-connected", 0), 0u);
  EXPECT_EQ(s.command("CONTINUAR").rfind("ERR not-connected", 0), 0u);
  UdpSink sink;
  EXPECT_EQ(s.command("CONECTAR " + std::to_string(sink.port())), "OK");
  EXPECT_EQ(s.command("CONNECT " + std::to_string(sink.port())).rfind("ERR already-connected", 0), 0u);
  EXPECT_EQ(s.command("CONNECT 0").rfind("ERR bad-port", 0), 0u);  // syntax is checked before state
  EXPECT_EQ(s.command("PAUSE"), "OK");
  EXPECT_EQ(s.command("PAUSE"), "OK");  // idempotent
  EXPECT_EQ(s.command("RESUME"), "OK");
  EXPECT_EQ(s.command("RESUME"), "OK");
  EXPECT_EQ(s.command("FROB").rfind("ERR unknown-command", 0), 0u);
  EXPECT_EQ(s.command("DISCONNECT"), "OK");
  EXPECT_TRUE(s.closed_by_peer());
}

TEST_F(Protocol, EveryDisconnectAliasClosesTheSession) {
  for (auto word : {"DESCONECTAR", "disconnect", "QUIT", "exit"}) {
    Session s(relay.control_port());
    EXPECT_EQ(s.command(word), "OK");
    EXPECT_TRUE(s.closed_by_peer()) << word;
  }
}

TEST_F(Protocol, BlankLinesGetNoReplyAndLfAloneWorks) {
  Session s(relay.control_port());
  s.send_raw("\r\n   \r\n\t\n\nPING\n");
  EXPECT_EQ(s.reply(), "OK PONG");  // the first reply is PING's: blank lines got none
}

TEST_F(Protocol, SplitAndPipelinedLines) {
  Session s(relay.control_port());
  s.send_raw("PI");
  s.send_raw("NG\r");
  s.send_raw("\nECHO a\r\nECHO b\r\nPING\r\n");
  EXPECT_EQ(s.reply(), "OK PONG");
  EXPECT_EQ(s.reply(), "OK a");
  EXPECT_EQ(s.reply(), "OK b");
  EXPECT_EQ(s.reply(), "OK PONG");
}

TEST_F(Protocol, LinesPipelinedAfterDisconnectAreNotRun) {
  Session s(relay.control_port());
  s.send_raw("QUIT\r\nPING\r\n");
  EXPECT_EQ(s.reply(), "OK");
  EXPECT_TRUE(s.closed_by_peer());
}

TEST_F(Protocol, OverlongLineIsRefusedAndTheSessionStaysUsable) {
  Session s(relay.control_port());
  s.send_raw("ECHO " + std::string(3000, 'x'));  // no LF yet: refused as soon as it passes
  EXPECT_EQ(s.reply()->rfind("ERR line-too-long", 0), 0u);
  s.send_raw(std::string(100000, 'y') + "\r\nPING\r\n");
  EXPECT_EQ(s.reply(), "OK PONG");
  std::string max_line = "ECHO " + std::string(1024 - 5 - 2, 'z');  // exactly 1024 with CRLF
  EXPECT_EQ(s.command(max_line), "OK " + std::string(1024 - 7, 'z'));
}

TEST_F(Protocol, TelnetCtrlCGetsWontTimingMarkAndTheNextLineWorks) {
  Session s(relay.control_port());
  s.send_raw("\xff\xf4\xff\xfd\x06");  // IAC IP, IAC DO TIMING-MARK, as telnet sends on Ctrl-C
  EXPECT_EQ(s.read_bytes(3), "\xff\xfc\x06");
  s.send_raw("PING\r\n");
  EXPECT_EQ(s.reply(), "OK PONG");
  s.send_raw("\xff\xfd");  // an IAC sequence split across two writes
  s.send_raw("\x01PING\r\n");
  EXPECT_EQ(s.read_bytes(3), "\xff\xfc\x01");
  EXPECT_EQ(s.reply(), "OK PONG");
}

TEST_F(Protocol, ControlBytesAndInvalidUtf8AreBadArgument) {
  Session s(relay.control_port());
  EXPECT_EQ(s.command("\x04").rfind("ERR bad-argument", 0), 0u);  // Ctrl-D
  EXPECT_EQ(s.command("ECHO \x1b[2J").rfind("ERR bad-argument", 0), 0u);
  EXPECT_EQ(s.command("ECHO \xc3\x28").rfind("ERR bad-argument", 0), 0u);
  EXPECT_EQ(s.command("ECHO ol\xc3\xa1"), "OK ol\xc3\xa1");
}

TEST(ProtocolLimits, MaxSessionsAnswersBusyThenCloses) {
  Relay relay("control:\n  max_sessions: 2\n");
  Session a(relay.control_port());
  Session b(relay.control_port());
  Session c(relay.control_port(), false);
  auto line = c.reply();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("ERR busy", 0), 0u) << *line;
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(relay.shm().stats().control.sessions_refused.load(), 1u);
  a.close();  // a place frees up
  ASSERT_TRUE(wait_until([&] { return relay.shm().stats().control.sessions_open.load() == 1; }));
  Session d(relay.control_port());
  EXPECT_EQ(d.command("PING"), "OK PONG");
  EXPECT_EQ(b.command("PING"), "OK PONG");
}

TEST(ProtocolLimits, MaxSessionsPerIp) {
  Relay relay("control:\n  max_sessions_per_ip: 1\n");
  Session a(relay.control_port());
  Session b(relay.control_port(), false);
  EXPECT_EQ(b.reply()->rfind("ERR busy", 0), 0u);
  EXPECT_EQ(a.command("PING"), "OK PONG");
}

TEST(ProtocolLimits, AViewerWatchingTheStreamIsNotIdle) {
  Relay relay("control:\n  idle_timeout: 1\n");
  Viewer viewer(relay);
  EXPECT_EQ(viewer.session.wait_event("BYE", 2500ms), std::nullopt);  // 2.5 idle periods
  EXPECT_EQ(viewer.session.command("PING"), "OK PONG");
}

TEST(ProtocolLimits, IdleTimeoutSaysByeAndEndsTheSubscription) {
  Relay relay("control:\n  idle_timeout: 1\n");
  Viewer idle(relay);
  EXPECT_EQ(idle.session.command("PAUSE"), "OK");  // paused and silent: idle
  EXPECT_EQ(idle.session.wait_event("BYE", 3000ms), "EVENT BYE idle");
  EXPECT_TRUE(idle.session.closed_by_peer());
  EXPECT_TRUE(wait_until([&] { return relay.shm().stats().control.subscribers.load() == 0; }));
  EXPECT_EQ(relay.shm().stats().control.idle_timeouts.load(), 1u);
}

// Issue 11: a client that trickles bytes without ever ending a line is idle.
TEST(ProtocolLimits, BytesThatNeverEndALineDoNotKeepASessionAwake) {
  Relay relay("control:\n  idle_timeout: 1\n");
  Session trickler(relay.control_port());
  std::optional<std::string> bye;
  for (int i = 0; i < 15 && !bye; ++i) {  // one byte every 300 ms, 4.5 s at most
    trickler.send_raw("P");
    bye = trickler.wait_event("BYE", 300ms);
  }
  EXPECT_EQ(bye, "EVENT BYE idle");
}

TEST(ProtocolLimits, CustomPortRange) {
  Relay relay("control:\n  ports: 40000-40010\n");
  Session s(relay.control_port());
  EXPECT_EQ(s.command("CONECTAR 39999").rfind("ERR bad-port", 0), 0u);
  EXPECT_EQ(s.command("CONECTAR 40011").rfind("ERR bad-port", 0), 0u);
  EXPECT_EQ(s.command("CONECTAR 40010"), "OK");
}

}  // namespace
