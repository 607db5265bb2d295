// vrelayctl: the pure text side of the client (see text.hpp).
#include "text.hpp"

#include <strings.h>

#include <cstdio>

#include "net.hpp"
#include "protocol.hpp"

namespace vrelay::ctl {

namespace {

// Length of the valid UTF-8 sequence starting at s[i] (1-4), or 0 if it is not valid
// (overlong, surrogate, out of range, truncated).
size_t utf8_length(std::string_view s, size_t i, uint32_t* code_point) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    *code_point = c;
    return 1;
  }
  size_t extra;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) { extra = 1; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { extra = 2; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { extra = 3; cp = c & 0x07; }
  else return 0;
  if (i + extra >= s.size()) return 0;
  for (size_t k = 1; k <= extra; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (cc & 0x3F);
  }
  if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  *code_point = cp;
  return extra + 1;
}

void append_hex(std::string& out, unsigned char c) {
  char buf[5];
  snprintf(buf, sizeof buf, "\\x%02x", c);
  out += buf;
}

bool same_word(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

std::string printable(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  size_t i = 0;
  while (i < line.size()) {
    uint32_t cp = 0;
    size_t n = utf8_length(line, i, &cp);
    if (n == 0) {  // invalid UTF-8: this byte alone, escaped
      append_hex(out, static_cast<unsigned char>(line[i]));
      ++i;
      continue;
    }
    if ((cp < 0x20 && cp != '\t') || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      for (size_t k = 0; k < n; ++k) append_hex(out, static_cast<unsigned char>(line[i + k]));
    } else {
      out.append(line.substr(i, n));
    }
    i += n;
  }
  return out;
}

Status sendable(std::string_view line) {
  if (line.size() > kMaxSendLine)
    return Failure{"the line is " + std::to_string(line.size()) + " bytes long; the relay takes " +
                   std::to_string(kMaxSendLine) + " at most"};
  if (!protocol::is_clean_text(line)) return Failure{"the line holds control characters or invalid UTF-8"};
  return {};
}

std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

bool parse_hello(std::string_view line, std::string* version, std::string* name) {
  auto hello = control::parse_hello(line);
  if (!hello) return false;
  *version = hello->version;
  *name = hello->name;
  return true;
}

bool is_disconnect_word(std::string_view word) {
  for (const char* w : {"DESCONECTAR", "DISCONNECT", "QUIT", "EXIT"})
    if (same_word(word, w)) return true;
  return false;
}

Result<HostPort> split_server(std::string_view spec) { return split_host_port(spec, kDefaultPort); }

bool parse_udp_port(std::string_view text, unsigned* port) {
  if (!all_digits(text) || text.size() > 5) return false;
  unsigned value = 0;
  for (char c : text) value = value * 10 + unsigned(c - '0');
  if (value < 1 || value > 65535) return false;
  *port = value;
  return true;
}

std::string clock_prefix(std::time_t t) {
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  strftime(buf, sizeof buf, "[%H:%M:%S] ", &tm);
  return buf;
}

// ---- chat view ----

std::vector<std::string> chat_help() {
  return {
      "commands (anything else is sent to everyone; start with // to send a leading /):",
      "  /msg NAME TEXT      private message to NAME",
      "  /list, /who         who is connected",
      "  /info NAME          details of one session",
      "  /me                 details of your own session",
      "  /name NEW           change your name",
      "  /call NAME PORT     ask NAME for a direct call; you receive on UDP PORT",
      "  /answer NAME PORT   accept NAME's call; you receive on UDP PORT",
      "  /hangup NAME        end the call with NAME",
      "  /raw LINE           send LINE to the relay as is, show the reply as is",
      "  /quit               leave (also Ctrl-D, or Ctrl-C on an empty line)",
      "  /help               this list",
  };
}

ChatInput parse_chat_input(std::string_view line, const std::string& my_name) {
  ChatInput in;
  // Leading and trailing whitespace does not count (the relay ignores it too).
  size_t b = line.find_first_not_of(" \t");
  if (b == std::string_view::npos) return in;
  size_t e = line.find_last_not_of(" \t");
  line = line.substr(b, e - b + 1);

  auto local = [&](std::string text) {
    in.kind = ChatInput::Kind::kLocal;
    in.text = std::move(text);
    return in;
  };
  auto send = [&](ChatInput::What what, std::string protocol_line) {
    in.kind = ChatInput::Kind::kSend;
    in.what = what;
    in.line = std::move(protocol_line);
    return in;
  };

  if (line.front() != '/' || line.substr(0, 2) == "//") {
    in.text = std::string(line.front() == '/' ? line.substr(1) : line);
    return send(ChatInput::What::kBroadcast, "BROADCAST " + in.text);
  }

  std::vector<std::string> words;
  std::string rest;
  take_words(line, 1, &words, &rest);
  std::string cmd = words[0].substr(1);
  for (auto& c : cmd) c = char(tolower(static_cast<unsigned char>(c)));

  if (cmd == "quit" || cmd == "exit") {
    if (!rest.empty()) return local("usage: /quit");
    in.kind = ChatInput::Kind::kQuit;
    return in;
  }
  if (cmd == "help") return local("");  // the caller prints chat_help()
  if (cmd == "raw") {
    if (rest.empty()) return local("usage: /raw LINE");
    return send(ChatInput::What::kRaw, rest);
  }
  if (cmd == "list" || cmd == "who") {
    if (!rest.empty()) return local("usage: /" + cmd);
    return send(ChatInput::What::kList, cmd == "who" ? "WHO" : "LIST");
  }
  if (cmd == "me") {
    if (!rest.empty()) return local("usage: /me (shows your own session)");
    in.target = my_name;
    return send(ChatInput::What::kInfo, "INFO " + my_name);
  }
  if (cmd == "msg") {
    std::vector<std::string> w;
    std::string text;
    if (!take_words(rest, 1, &w, &text) || text.empty()) return local("usage: /msg NAME TEXT");
    in.target = w[0];
    in.text = text;
    return send(ChatInput::What::kMsg, "MSG " + w[0] + " " + text);
  }
  // Commands with a fixed number of words.
  struct Fixed {
    const char* name;
    size_t words;
    ChatInput::What what;
    const char* protocol;
    const char* usage;
  };
  static const Fixed fixed[] = {
      {"info", 1, ChatInput::What::kInfo, "INFO", "usage: /info NAME"},
      {"name", 1, ChatInput::What::kName, "NAME", "usage: /name NEW"},
      {"nick", 1, ChatInput::What::kName, "NAME", "usage: /nick NEW"},
      {"call", 2, ChatInput::What::kCall, "CALL", "usage: /call NAME PORT"},
      {"answer", 2, ChatInput::What::kAnswer, "ANSWER", "usage: /answer NAME PORT"},
      {"hangup", 1, ChatInput::What::kHangup, "HANGUP", "usage: /hangup NAME"},
  };
  for (const auto& f : fixed) {
    if (cmd != f.name) continue;
    std::vector<std::string> w;
    std::string extra;
    if (!take_words(rest, f.words, &w, &extra) || !extra.empty()) return local(f.usage);
    in.target = w[0];
    if (f.words == 2) in.port = w[1];
    return send(f.what, std::string(f.protocol) + " " + join_words(w));
  }
  return local("unknown command /" + cmd + "; /help lists the commands");
}

std::optional<std::string> format_chat_event(const ServerLine& event, const std::string& my_name, std::time_t now) {
  std::vector<std::string> w;
  std::string rest;
  const std::string& t = event.type;
  const std::string& body = event.text;
  if (t == "HELLO") return std::nullopt;
  if (t == "BROADCAST" && take_words(body, 1, &w, &rest))
    return clock_prefix(now) + "<" + w[0] + "> " + rest;
  if (t == "MSG" && take_words(body, 1, &w, &rest))
    return clock_prefix(now) + "(private) <" + w[0] + "> " + rest;
  if (t == "JOIN" && take_words(body, 1, &w, &rest)) return "* " + w[0] + " joined";
  if (t == "LEAVE" && take_words(body, 1, &w, &rest)) return "* " + w[0] + " left";
  if (t == "RENAME" && take_words(body, 2, &w, &rest)) {
    if (w[1] == my_name) return std::nullopt;  // our own rename: shown with NAME's reply
    return "* " + w[0] + " is now " + w[1];
  }
  if (t == "KICKED") return "* you were kicked" + (body.empty() ? "" : " by " + body);
  if (t == "SHUTDOWN") return "* the relay is shutting down" + (body.empty() ? "" : ": " + body);
  if (t == "BYE") return "* the relay ends this session" + (body.empty() ? "" : ": " + body);
  if (t == "CALL" && take_words(body, 3, &w, &rest))
    return "* " + w[0] + " calls you from " + w[1] + " port " + w[2] + "; accept with /answer " + w[0] + " PORT";
  if (t == "ANSWER" && take_words(body, 3, &w, &rest))
    return "* " + w[0] + " answered: send to " + w[1] + " port " + w[2];
  if (t == "HANGUP" && take_words(body, 1, &w, &rest)) return "* " + w[0] + " hung up";
  if (t == "SOURCE") {
    if (body == "stalled") return std::string("* the stream has stalled (no data from the source)");
    if (body == "live") return std::string("* the stream is live again");
  }
  // Anything else (a newer server's event): as the relay wrote it.
  return "* EVENT " + t + (body.empty() ? "" : " " + body);
}

}  // namespace vrelay::ctl
