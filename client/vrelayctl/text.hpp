// vrelayctl: the pure text side of the client (no I/O): what the relay's lines mean, how
// they are shown, what may be sent, and how chat input and events are translated.
// Unit-tested in test/client/text_test.cpp.
#pragma once
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control_client.hpp"
#include "net.hpp"  // HostPort

namespace vrelay::ctl {

// The longest line the client sends, CR LF excluded: the relay takes 1024 bytes with the
// terminator (control.max_line), and the client ends its lines with CR LF.
constexpr size_t kMaxSendLine = 1022;
constexpr const char* kDefaultServer = "127.0.0.1:7700";
constexpr const char* kDefaultPort = "7700";

// A server line made safe for a terminal: valid UTF-8 is kept, tab is kept, every other
// control byte (C0, DEL, C1) and every byte of invalid UTF-8 is written as \xNN.
std::string printable(std::string_view line);

// Whether a line may be sent: valid UTF-8, no control byte other than tab (so never a telnet
// IAC byte), at most kMaxSendLine bytes. Fails saying what is wrong.
Status sendable(std::string_view line);

// The words of argv joined with single spaces (one-shot mode).
std::string join_words(const std::vector<std::string>& words);

// One line from the relay, and how it is read (common/control_client.hpp): classify takes
// either form, classify_json the JSON form only.
using ServerLine = control::Line;
using control::classify;
using control::classify_json;
using control::take_words;

// "EVENT HELLO vrelay <version> <name>": the version and the session name (control::parse_hello).
bool parse_hello(std::string_view line, std::string* version, std::string* name);

// Is this command word one of the ways to end a session (DESCONECTAR and its aliases)?
bool is_disconnect_word(std::string_view word);

// "HOST:PORT", "[V6]:PORT", "HOST" (port 7700) or a bare IPv6 address (port 7700).
Result<HostPort> split_server(std::string_view spec);

// A UDP port as vrelayctl accepts it on its command line: 1-5 digits, 1 to 65535.
bool parse_udp_port(std::string_view text, unsigned* port);

// "[12:01:02] " for the local time t.
std::string clock_prefix(std::time_t t);

// ---- chat view ----

// What a chat input line asks for.
struct ChatInput {
  enum class Kind {
    kNothing,    // blank line
    kSend,       // send `line` to the relay; `what` says how to show the reply
    kLocal,      // show `text` (help, usage errors); nothing is sent
    kQuit,       // /quit
  } kind = Kind::kNothing;
  enum class What { kBroadcast, kMsg, kList, kInfo, kName, kCall, kAnswer, kHangup, kRaw } what = What::kRaw;
  std::string line;    // the protocol line to send
  std::string target;  // MSG/INFO/NAME/CALL/ANSWER/HANGUP: the name; CALL/ANSWER: port in `port`
  std::string port;
  std::string text;    // BROADCAST/MSG: the message; kLocal: what to show
};
// my_name is the session's current name (for /me).
ChatInput parse_chat_input(std::string_view line, const std::string& my_name);

// The /help text of the chat view, one entry per line.
std::vector<std::string> chat_help();

// How a chat event is shown: nullopt for events the view does not show (HELLO). my_name is
// this session's name. now is the local time for the [HH:MM:SS] prefix of messages.
std::optional<std::string> format_chat_event(const ServerLine& event, const std::string& my_name, std::time_t now);

}  // namespace vrelay::ctl
