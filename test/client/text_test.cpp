// Unit tests of vrelayctl's text side (client/vrelayctl/text.cpp): escaping of the relay's
// lines, what may be sent, classification of replies and events, chat input and events.
#include <gtest/gtest.h>

#include "text.hpp"

namespace vrelay::ctl {
namespace {

TEST(Printable, KeepsTextTabAndUtf8) {
  EXPECT_EQ(printable("OK PONG"), "OK PONG");
  EXPECT_EQ(printable("a\tb"), "a\tb");
  EXPECT_EQ(printable("ma\xc3\xb1" "ana \xe2\x82\xac"), "ma\xc3\xb1" "ana \xe2\x82\xac");
}

TEST(Printable, EscapesControlBytesAndInvalidUtf8) {
  EXPECT_EQ(printable("a\x1b[2Jb"), "a\\x1b[2Jb");
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(printable("\r\n\x7f"), "\\x0d\\x0a\\x7f");
  EXPECT_EQ(printable("\xc2\x9b" "1m"), "\\xc2\\x9b1m");  // C1 CSI
  EXPECT_EQ(printable("\xff\xfb\x01"), "\\xff\\xfb\\x01");  // telnet IAC WILL ECHO
  EXPECT_EQ(printable("\xc3"), "\\xc3");                    // truncated sequence
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");           // overlong
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
}

TEST(Sendable, RefusesControlBytesIacAndLongLines) {
  EXPECT_TRUE(sendable("MSG ana hola\tque tal \xc3\xb1"));
  EXPECT_FALSE(sendable("PING\r\nSHUTDOWN"));
  EXPECT_EQ(sendable("ECHO \xff\xf4").error(), "the line holds control characters or invalid UTF-8");
  EXPECT_FALSE(sendable("ECHO \x03"));
  EXPECT_TRUE(sendable(std::string(kMaxSendLine, 'a')));
  Status too_long = sendable(std::string(kMaxSendLine + 1, 'a'));
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error(), "the line is 1023 bytes long; the relay takes 1022 at most");
}

TEST(JoinWords, SingleSpaces) {
  EXPECT_EQ(join_words({"MSG", "ana", "hola que"}), "MSG ana hola que");
  EXPECT_EQ(join_words({"PING"}), "PING");
}

TEST(Classify, TextReplies) {
  auto ok = classify("OK PONG");
  EXPECT_EQ(ok.kind, ServerLine::Kind::kOk);
  EXPECT_EQ(ok.text, "PONG");
  EXPECT_EQ(classify("OK").kind, ServerLine::Kind::kOk);
  auto err = classify("ERR bad-port the port must be a number");
  EXPECT_EQ(err.kind, ServerLine::Kind::kErr);
  EXPECT_EQ(err.type, "bad-port");
  EXPECT_EQ(err.text, "the port must be a number");
  auto ev = classify("EVENT MSG ana hola  que tal");
  EXPECT_EQ(ev.kind, ServerLine::Kind::kEvent);
  EXPECT_EQ(ev.type, "MSG");
  EXPECT_EQ(ev.text, "ana hola  que tal");
  EXPECT_EQ(classify("OKAY").kind, ServerLine::Kind::kOther);
  EXPECT_EQ(classify("").kind, ServerLine::Kind::kOther);
}

TEST(Classify, JsonLines) {
  auto ok = classify_json(R"({"ok":true,"text":"PONG"})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->kind, ServerLine::Kind::kOk);
  EXPECT_EQ(ok->text, "PONG");
  auto err = classify_json(R"({"ok":false,"error":"no-such-user","text":"x"})");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind, ServerLine::Kind::kErr);
  EXPECT_EQ(err->type, "no-such-user");
  auto ev = classify_json(R"({"event":"msg","from":"ana","text":"hola"})");
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->kind, ServerLine::Kind::kEvent);
  EXPECT_EQ(ev->type, "MSG");
  EXPECT_FALSE(classify_json("OK PONG"));
  EXPECT_FALSE(classify_json("[1,2]"));
}

TEST(Hello, ParsesVersionAndName) {
  std::string version, name;
  ASSERT_TRUE(parse_hello("EVENT HELLO vrelay 0.1.0 guest-3", &version, &name));
  EXPECT_EQ(version, "0.1.0");
  EXPECT_EQ(name, "guest-3");
  EXPECT_FALSE(parse_hello("EVENT HELLO other 0.1.0 guest-3", &version, &name));
  EXPECT_FALSE(parse_hello("ERR busy too many sessions", &version, &name));
}

TEST(Server, SplitsHostAndPort) {
  auto server = split_server("127.0.0.1:7701");
  ASSERT_TRUE(server) << server.error();
  EXPECT_EQ(server->host, "127.0.0.1");
  EXPECT_EQ(server->port, "7701");
  server = split_server("[::1]:7702");
  ASSERT_TRUE(server) << server.error();
  EXPECT_EQ(server->host, "::1");
  EXPECT_EQ(server->port, "7702");
  server = split_server("::1");
  ASSERT_TRUE(server) << server.error();
  EXPECT_EQ(server->host, "::1");
  EXPECT_EQ(server->port, "7700");
  server = split_server("relay.example");
  ASSERT_TRUE(server) << server.error();
  EXPECT_EQ(server->port, "7700");
  EXPECT_FALSE(split_server("127.0.0.1:0"));
  EXPECT_FALSE(split_server("127.0.0.1:70000"));
  EXPECT_EQ(split_server(":7700").error(), "':7700': missing host");
  EXPECT_EQ(split_server("[::1").error(), "'[::1': missing ']'");
}

TEST(ChatInput, MessagesAndCommands) {
  auto b = parse_chat_input("  hola a todos ", "ana");
  EXPECT_EQ(b.kind, ChatInput::Kind::kSend);
  EXPECT_EQ(b.what, ChatInput::What::kBroadcast);
  EXPECT_EQ(b.line, "BROADCAST hola a todos");
  EXPECT_EQ(parse_chat_input("//etc/passwd", "ana").line, "BROADCAST /etc/passwd");
  auto m = parse_chat_input("/msg bob psst  two", "ana");
  EXPECT_EQ(m.what, ChatInput::What::kMsg);
  EXPECT_EQ(m.line, "MSG bob psst  two");
  EXPECT_EQ(m.target, "bob");
  EXPECT_EQ(parse_chat_input("/msg bob", "ana").kind, ChatInput::Kind::kLocal);
  EXPECT_EQ(parse_chat_input("/list", "ana").line, "LIST");
  EXPECT_EQ(parse_chat_input("/WHO", "ana").line, "WHO");
  EXPECT_EQ(parse_chat_input("/info bob", "ana").line, "INFO bob");
  EXPECT_EQ(parse_chat_input("/me", "ana").line, "INFO ana");
  EXPECT_EQ(parse_chat_input("/name ana2", "ana").line, "NAME ana2");
  EXPECT_EQ(parse_chat_input("/call bob 6000", "ana").line, "CALL bob 6000");
  EXPECT_EQ(parse_chat_input("/answer bob 6001", "ana").line, "ANSWER bob 6001");
  EXPECT_EQ(parse_chat_input("/hangup bob", "ana").line, "HANGUP bob");
  EXPECT_EQ(parse_chat_input("/call bob", "ana").kind, ChatInput::Kind::kLocal);
  EXPECT_EQ(parse_chat_input("/raw STATS", "ana").line, "STATS");
  EXPECT_EQ(parse_chat_input("/quit", "ana").kind, ChatInput::Kind::kQuit);
  EXPECT_EQ(parse_chat_input("/nope", "ana").kind, ChatInput::Kind::kLocal);
  EXPECT_EQ(parse_chat_input(" \t ", "ana").kind, ChatInput::Kind::kNothing);
}

TEST(ChatEvents, ReadableLines) {
  std::time_t t = 0;
  std::string clock = clock_prefix(t);
  auto show = [&](const char* line) { return format_chat_event(classify(line), "me", t); };
  EXPECT_EQ(*show("EVENT BROADCAST ana hola  que tal"), clock + "<ana> hola  que tal");
  EXPECT_EQ(*show("EVENT MSG ana psst"), clock + "(private) <ana> psst");
  EXPECT_EQ(*show("EVENT JOIN ana"), "* ana joined");
  EXPECT_EQ(*show("EVENT LEAVE ana"), "* ana left");
  EXPECT_EQ(*show("EVENT RENAME guest-3 bob"), "* guest-3 is now bob");
  EXPECT_FALSE(show("EVENT RENAME old me"));
  EXPECT_EQ(*show("EVENT KICKED mod"), "* you were kicked by mod");
  EXPECT_EQ(*show("EVENT SHUTDOWN the relay is stopping"), "* the relay is shutting down: the relay is stopping");
  EXPECT_EQ(*show("EVENT SOURCE stalled"), "* the stream has stalled (no data from the source)");
  EXPECT_NE(show("EVENT CALL ana 127.0.0.1 6000")->find("/answer ana PORT"), std::string::npos);
  EXPECT_EQ(*show("EVENT FUTURE x y"), "* EVENT FUTURE x y");
  EXPECT_FALSE(show("EVENT HELLO vrelay 0.1.0 guest-1"));
}

}  // namespace
}  // namespace vrelay::ctl
