// Unit tests of the control protocol without I/O: line reader (CRLF, limits, telnet IAC),
// the parser and the reply formatting. Every case of the line discipline of vrelay-protocol(7).
#include <gtest/gtest.h>

#include "net.hpp"
#include "protocol.hpp"

using namespace vrelay;
using namespace vrelay::protocol;

namespace {

struct Collect : LineReader::Sink {
  std::vector<std::string> lines;
  int too_long = 0;
  std::string telnet;
  std::vector<std::string> order;  // "L:<line>" or "T" (too long) in arrival order
  void on_line(std::string_view line) override {
    lines.emplace_back(line);
    order.push_back("L:" + std::string(line));
  }
  void on_line_too_long() override {
    ++too_long;
    order.push_back("T");
  }
  void on_telnet_reply(std::string_view bytes) override { telnet.append(bytes); }
};

void feed(LineReader& r, Collect& c, std::string_view s) { r.feed(s.data(), s.size(), c); }

TEST(LineReader, SplitsOnLfAndDropsTheCrBeforeIt) {
  LineReader r(1024);
  Collect c;
  feed(r, c, "PING\r\nECHO a\nx\ry\r\n");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"PING", "ECHO a", "x\ry"}));
}

TEST(LineReader, JoinsALineSplitAcrossReads) {
  LineReader r(1024);
  Collect c;
  feed(r, c, "CONE");
  EXPECT_TRUE(c.lines.empty());
  feed(r, c, "CTAR 50");
  feed(r, c, "00\r");
  feed(r, c, "\n");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"CONECTAR 5000"}));
}

TEST(LineReader, PipelinedLinesKeepTheirOrder) {
  LineReader r(1024);
  Collect c;
  feed(r, c, "A\r\nB\r\nC\r\n");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"A", "B", "C"}));
}

TEST(LineReader, LimitCountsTheTerminator) {
  LineReader r(1024);
  Collect c;
  std::string ok_lf(1023, 'a');  // 1023 + LF = 1024 bytes
  feed(r, c, ok_lf + "\n");
  std::string ok_crlf(1022, 'b');  // 1022 + CRLF = 1024 bytes
  feed(r, c, ok_crlf + "\r\n");
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_EQ(c.too_long, 0);
  std::string too_long(1023, 'c');  // 1023 + CRLF = 1025 bytes
  feed(r, c, too_long + "\r\n");
  EXPECT_EQ(c.too_long, 1);
  EXPECT_EQ(c.lines.size(), 2u);
}

TEST(LineReader, OverlongLineIsReportedOnceThenDiscardedUpToLf) {
  LineReader r(1024);
  Collect c;
  std::string huge(5000, 'x');
  feed(r, c, huge.substr(0, 2000));
  EXPECT_EQ(c.too_long, 1);  // as soon as it passes the limit, before the LF arrives
  feed(r, c, huge.substr(2000));
  feed(r, c, "tail\r\nPING\r\n");
  EXPECT_EQ(c.too_long, 1);
  EXPECT_EQ(c.order, (std::vector<std::string>{"T", "L:PING"}));
}

TEST(LineReader, StripsIacAndRefusesOptions) {
  LineReader r(1024);
  Collect c;
  // Ctrl-C in a real telnet: IAC IP, IAC DO TIMING-MARK, then the next typed line.
  feed(r, c, "\xff\xf4\xff\xfd\x06PAUSE\r\n");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"PAUSE"}));
  EXPECT_EQ(c.telnet, "\xff\xfc\x06");  // IAC WONT TIMING-MARK
  c.telnet.clear();
  feed(r, c, "\xff\xfb\x01");  // WILL ECHO -> DONT ECHO
  EXPECT_EQ(c.telnet, "\xff\xfe\x01");
  c.telnet.clear();
  feed(r, c, "\xff\xfc\x01\xff\xfe\x03");  // WONT / DONT: ignored, no answer
  EXPECT_EQ(c.telnet, "");
}

TEST(LineReader, IacSplitAcrossReads) {
  LineReader r(1024);
  Collect c;
  feed(r, c, "PI\xff");
  feed(r, c, "\xfd");
  feed(r, c, "\x06NG\r\n");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"PING"}));
  EXPECT_EQ(c.telnet, "\xff\xfc\x06");
}

TEST(LineReader, SubnegotiationIsSkippedWhole) {
  LineReader r(1024);
  Collect c;
  static const char kBytes[] = "\xff\xfa\x18\x00xterm\xff\xf0PING\r\n";
  feed(r, c, std::string(kBytes, sizeof kBytes - 1));
  EXPECT_EQ(c.lines, (std::vector<std::string>{"PING"}));
}

TEST(LineReader, EscapedIacIsADataByte) {
  LineReader r(1024);
  Collect c;
  feed(r, c, "A\xff\xff" "B\n");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"A\xff" "B"}));
  EXPECT_FALSE(parse(c.lines[0]).ok);  // and then invalid UTF-8: bad-argument
}

TEST(Parser, BlankLinesGetNoReply) {
  for (auto line : {"", "   ", "\t \t"}) {
    Parsed p = parse(line);
    EXPECT_FALSE(p.ok);
    EXPECT_TRUE(p.message.empty()) << line;
  }
}

TEST(Parser, CommandsAreCaseInsensitiveWithAliases) {
  EXPECT_EQ(parse("conectar 5000").spec->id, CommandId::kConnect);
  EXPECT_EQ(parse("Connect 5000").spec->id, CommandId::kConnect);
  EXPECT_EQ(parse("  PAUSE  ").spec->id, CommandId::kPause);
  EXPECT_EQ(parse("interrumpir").spec->id, CommandId::kPause);
  EXPECT_EQ(parse("continuar").spec->id, CommandId::kResume);
  EXPECT_EQ(parse("resume").spec->id, CommandId::kResume);
  for (auto word : {"DESCONECTAR", "disconnect", "quit", "Exit"}) EXPECT_EQ(parse(word).spec->id, CommandId::kDisconnect);
  EXPECT_EQ(parse("ping").spec->id, CommandId::kPing);
}

TEST(Parser, UnknownCommand) {
  Parsed p = parse("FROB 1");
  EXPECT_FALSE(p.ok);
  EXPECT_EQ(p.error, ErrorCode::kUnknownCommand);
  // The quoted word is cut to 32 bytes on a character boundary: the reply stays UTF-8.
  std::string word = "a";
  for (int i = 0; i < 20; ++i) word += "\xc3\xb1";
  Parsed long_word = parse(word);
  EXPECT_TRUE(is_clean_text(long_word.message)) << long_word.message;
  EXPECT_NE(long_word.message.find("'a\xc3\xb1"), std::string::npos);
}

TEST(Parser, WrongNumberOfWordsIsBadArgument) {
  for (auto line : {"CONECTAR", "CONECTAR 1.2.3.4 5000", "PAUSE now", "PING PONG", "HELP me now"}) {
    Parsed p = parse(line);
    EXPECT_FALSE(p.ok) << line;
    EXPECT_EQ(p.error, ErrorCode::kBadArgument) << line;
  }
  Parsed p = parse("CONECTAR 1.2.3.4:5000");  // one word: the port check rejects it
  ASSERT_TRUE(p.ok);
  EXPECT_FALSE(parse_port(p.args[0], 1025, 65535));
}

TEST(Parser, EchoTakesTheRestOfTheLineWithInnerWhitespace) {
  Parsed p = parse("ECHO  hola   mundo\t! ");
  ASSERT_TRUE(p.ok);
  ASSERT_EQ(p.args.size(), 1u);
  EXPECT_EQ(p.args[0], "hola   mundo\t!");
}

TEST(Parser, ControlBytesAndBadUtf8AreBadArgument) {
  for (std::string line : {std::string("PING\x04"), std::string("ECHO a\x1b[31m"), std::string("ECHO \x7f"),
                           std::string("ECHO \xc2\x85"), std::string("ECHO \xc3"), std::string("ECHO \xc0\xaf"),
                           std::string("ECHO \xed\xa0\x80"), std::string("ECHO \xf5\x80\x80\x80"),
                           std::string("ECHO a\rb"), std::string("ECHO \0x", 7),
                           std::string("ECHO line\xe2\x80\xa8" "break"), std::string("ECHO \xe2\x80\xa9"),
                           std::string("MSG bob evil\xe2\x80\xaetxt.exe"), std::string("ECHO \xe2\x81\xa6x\xe2\x81\xa9")}) {
    Parsed p = parse(line);
    EXPECT_FALSE(p.ok);
    EXPECT_EQ(p.error, ErrorCode::kBadArgument);
  }
  EXPECT_TRUE(parse("ECHO olá ñandú €  𝄞\tok").ok);
  EXPECT_TRUE(parse("ECHO \xe2\x80\x8e\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d").ok);  // Hebrew and a mark: fine
}

TEST(Ports, ProtocolPortRules) {
  for (auto bad : {"0", "1024", "65536", "-1", "+5000", "5e3", "0x1388", "5000abc", "99999999999999999999", "",
                   " 5000", "5000 ", "1.2.3.4:5000", "٥٠٠٠"})
    EXPECT_FALSE(parse_port(bad, 1025, 65535)) << bad;
  EXPECT_EQ(*parse_port("1025", 1025, 65535), 1025);
  EXPECT_EQ(*parse_port("65535", 1025, 65535), 65535);
  EXPECT_EQ(*parse_port("05000", 1025, 65535), 5000);
}

TEST(Replies, Format) {
  EXPECT_EQ(ok_line(), "OK\r\n");
  EXPECT_EQ(ok_line("PONG"), "OK PONG\r\n");
  EXPECT_EQ(err_line(ErrorCode::kBadPort, "why"), "ERR bad-port why\r\n");
  EXPECT_EQ(event_line("HELLO", "vrelay 1 guest-1"), "EVENT HELLO vrelay 1 guest-1\r\n");
}

TEST(CommandTable, HelpListsEveryCommandAndAlias) {
  std::string help = help_text();
  for (const auto& spec : commands()) {
    EXPECT_NE(help.find(spec.name), std::string::npos);
    for (const char* const* a = spec.aliases; *a; ++a) EXPECT_NE(help.find(*a), std::string::npos);
  }
}

}  // namespace

namespace {

TEST(Parser, EveryCommandOfTheContract) {
  struct Case { const char* line; CommandId id; size_t args; };
  for (const Case& c : {Case{"NAME ana", CommandId::kName, 1}, Case{"LIST", CommandId::kList, 0},
                        Case{"who", CommandId::kList, 0}, Case{"INFO ana", CommandId::kInfo, 1},
                        Case{"MSG ana hola  mundo", CommandId::kMsg, 2}, Case{"BROADCAST a  b", CommandId::kBroadcast, 1},
                        Case{"STATS", CommandId::kStats, 0}, Case{"FORMAT json", CommandId::kFormat, 1},
                        Case{"AUTH t0ken", CommandId::kAuth, 1}, Case{"KICK bob", CommandId::kKick, 1},
                        Case{"SHUTDOWN", CommandId::kShutdown, 0}, Case{"CALL bob 5000", CommandId::kCall, 2},
                        Case{"ANSWER ana 5002", CommandId::kAnswer, 2}, Case{"HANGUP ana", CommandId::kHangup, 1}}) {
    Parsed p = parse(c.line);
    ASSERT_TRUE(p.ok) << c.line;
    EXPECT_EQ(p.spec->id, c.id) << c.line;
    EXPECT_EQ(p.args.size(), c.args) << c.line;
  }
  Parsed msg = parse("MSG ana hola  mundo ");
  EXPECT_EQ(msg.args[1], "hola  mundo");
  for (auto bad : {"MSG ana", "BROADCAST", "NAME", "NAME a b", "CALL bob", "CALL bob 1 2", "KICK", "SHUTDOWN x",
                   "FORMAT", "AUTH", "HANGUP"})
    EXPECT_EQ(parse(bad).error, ErrorCode::kBadArgument) << bad;
  EXPECT_EQ(parse("KICK bob").spec->access, Access::kModerator);
  EXPECT_EQ(parse("SHUTDOWN").spec->access, Access::kModerator);
  EXPECT_EQ(parse("MSG a b").spec->access, Access::kAnyone);
}

TEST(Render, TextForms) {
  EXPECT_EQ(render(ok(), false), "OK\r\n");
  EXPECT_EQ(render(ok("2 ana bob", Fields{{"count", 2}}), false), "OK 2 ana bob\r\n");
  EXPECT_EQ(render(err(ErrorCode::kNameTaken, "'ana' is taken"), false), "ERR name-taken 'ana' is taken\r\n");
  EXPECT_EQ(render(Event{"MSG", "ana hola", Fields{{"from", "ana"}, {"text", "hola"}}}, false), "EVENT MSG ana hola\r\n");
}

TEST(Render, JsonForms) {
  EXPECT_EQ(render(ok(), true), "{\"ok\":true,\"text\":\"\"}\r\n");
  EXPECT_EQ(render(ok("2 ana bob", Fields{{"count", 2}, {"names", {"ana", "bob"}}}), true),
            "{\"ok\":true,\"text\":\"2 ana bob\",\"count\":2,\"names\":[\"ana\",\"bob\"]}\r\n");
  EXPECT_EQ(render(err(ErrorCode::kTooFast, "slow down"), true),
            "{\"ok\":false,\"error\":\"too-fast\",\"text\":\"slow down\"}\r\n");
  EXPECT_EQ(render(Event{"MSG", "ana \"hi\"", Fields{{"from", "ana"}, {"text", "\"hi\" \\ é"}}}, true),
            "{\"event\":\"msg\",\"from\":\"ana\",\"text\":\"\\\"hi\\\" \\\\ é\"}\r\n");
  // Invalid UTF-8 never reaches here (refused on input), but would not break the line.
  std::string line = render(ok("\xff"), true);
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

}  // namespace
