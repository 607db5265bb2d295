// The control protocol without I/O (see protocol.hpp and vrelay-protocol(7)).
#include "protocol.hpp"

#include <strings.h>

#include <cstring>

namespace vrelay::protocol {

namespace {
constexpr unsigned char IAC = 255, DONT = 254, DO = 253, WONT = 252, WILL = 251, SB = 250, SE = 240;
}

void LineReader::feed(const char* data, size_t size, Sink& sink) {
  for (size_t i = 0; i < size; ++i) {
    unsigned char c = static_cast<unsigned char>(data[i]);
    switch (telnet_) {
      case Telnet::kData:
        if (c == IAC) {
          telnet_ = Telnet::kIac;
          continue;
        }
        break;
      case Telnet::kIac:
        if (c == IAC) {  // an escaped 0xFF data byte
          telnet_ = Telnet::kData;
          break;
        }
        if (c >= WILL && c <= DONT) {
          option_verb_ = c;
          telnet_ = Telnet::kOption;
        } else if (c == SB) {
          telnet_ = Telnet::kSub;
        } else {
          telnet_ = Telnet::kData;  // IP, AO, AYT, NOP...: dropped
        }
        continue;
      case Telnet::kOption: {
        telnet_ = Telnet::kData;
        // Refuse every option. Answering DO TIMING-MARK with WONT is what makes a real
        // telnet show output again after Ctrl-C.
        if (option_verb_ == DO || option_verb_ == WILL) {
          const char reply[3] = {char(IAC), char(option_verb_ == DO ? WONT : DONT), char(c)};
          sink.on_telnet_reply(std::string_view(reply, 3));
        }
        continue;
      }
      case Telnet::kSub:
        if (c == IAC) telnet_ = Telnet::kSubIac;
        continue;
      case Telnet::kSubIac:
        telnet_ = c == SE ? Telnet::kData : Telnet::kSub;
        continue;
    }

    if (c == '\n') {
      if (discarding_) {
        discarding_ = false;
      } else {
        std::string_view line(buffer_);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        sink.on_line(line);
      }
      buffer_.clear();
      continue;
    }
    if (discarding_) continue;
    if (buffer_.size() + 1 >= max_line_) {  // no room left for the terminator
      buffer_.clear();
      discarding_ = true;
      sink.on_line_too_long();
      continue;
    }
    buffer_.push_back(char(c));
  }
}

const char* error_word(ErrorCode code) {
  switch (code) {
#define VRELAY_ERROR(id, word) \
  case ErrorCode::k##id:       \
    return word;
#include "errors.def"
#undef VRELAY_ERROR
  }
  return "?";
}

// ("A", "B") -> {"A", "B", nullptr}; () -> {nullptr}.
#define VRELAY_ALIASES(...) {__VA_ARGS__ __VA_OPT__(, ) nullptr}

const std::vector<CommandSpec>& commands() {
  static const std::vector<CommandSpec> table = {
#define VRELAY_COMMAND(id, name, aliases, min_args, max_args, rest_is_text, access, usage, help) \
  {CommandId::k##id, name, VRELAY_ALIASES aliases, min_args, max_args, rest_is_text, Access::access, usage, help},
#include "commands.def"
#undef VRELAY_COMMAND
  };
  return table;
}

bool is_blank(std::string_view line) { return line.find_first_not_of(" \t") == std::string_view::npos; }

bool is_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  for (char c : name)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

bool is_clean_text(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t') || c == 0x7F) return false;
      ++i;
      continue;
    }
    int extra;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { extra = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { extra = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { extra = 3; cp = c & 0x07; }
    else return false;
    if (i + size_t(extra) >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3F);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x80 && cp <= 0x9F))
      return false;  // overlong, out of range, surrogate, or a C1 control
    // Line and paragraph separators break a line in other programs; bidirectional
    // embeddings, overrides and isolates make text read other than it is (another user's
    // name, a reversed URL): never relayed.
    if (cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
      return false;
    i += size_t(extra) + 1;
  }
  return true;
}

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (true) {
    i = line.find_first_not_of(" \t", i);
    if (i == std::string_view::npos) break;
    size_t end = line.find_first_of(" \t", i);
    words.push_back(line.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i));
    if (end == std::string_view::npos) break;
    i = end;
  }
  return words;
}

namespace {
bool same_word(std::string_view word, const char* name) {
  return word.size() == strlen(name) && strncasecmp(word.data(), name, word.size()) == 0;
}

}  // namespace

const CommandSpec* find_command(std::string_view word) {
  for (const auto& spec : commands()) {
    if (same_word(word, spec.name)) return &spec;
    for (const char* const* a = spec.aliases; *a; ++a)
      if (same_word(word, *a)) return &spec;
  }
  return nullptr;
}

namespace {
Parsed fail(ErrorCode code, std::string message) {
  Parsed p;
  p.error = code;
  p.message = std::move(message);
  return p;
}
}  // namespace

Parsed parse(std::string_view line) {
  if (is_blank(line)) return Parsed{};
  if (!is_clean_text(line)) return fail(ErrorCode::kBadArgument, "control bytes or invalid UTF-8 in the line");
  auto words = split_words(line);
  const CommandSpec* spec = find_command(words[0]);
  if (!spec) {
    std::string_view shown = words[0];
    if (shown.size() > 32) {  // cut on a character boundary: replies stay valid UTF-8
      size_t cut = 32;
      while (cut > 0 && (static_cast<unsigned char>(shown[cut]) & 0xC0) == 0x80) --cut;
      shown = shown.substr(0, cut);
    }
    return fail(ErrorCode::kUnknownCommand, "unknown command '" + std::string(shown) + "', try HELP");
  }
  Parsed p;
  p.spec = spec;
  size_t nargs = words.size() - 1;
  if (spec->rest_is_text && nargs >= size_t(spec->max_args) && spec->max_args > 0) {
    // The last argument is the rest of the line, inner whitespace kept.
    std::string_view start = words[size_t(spec->max_args)];
    std::string_view rest = line.substr(size_t(start.data() - line.data()));
    rest = rest.substr(0, rest.find_last_not_of(" \t") + 1);
    p.args.assign(words.begin() + 1, words.begin() + spec->max_args);
    p.args.push_back(rest);
  } else {
    if (nargs < size_t(spec->min_args) || nargs > size_t(spec->max_args))
      return fail(ErrorCode::kBadArgument, std::string("usage: ") + spec->usage);
    p.args.assign(words.begin() + 1, words.end());
  }
  p.ok = true;
  return p;
}

std::string ok_line(std::string_view text) {
  std::string out = "OK";
  if (!text.empty()) {
    out += ' ';
    out += text;
  }
  out += "\r\n";
  return out;
}

std::string err_line(ErrorCode code, std::string_view text) {
  std::string out = "ERR ";
  out += error_word(code);
  if (!text.empty()) {
    out += ' ';
    out += text;
  }
  out += "\r\n";
  return out;
}

std::string event_line(std::string_view type, std::string_view text) {
  std::string out = "EVENT ";
  out += type;
  if (!text.empty()) {
    out += ' ';
    out += text;
  }
  out += "\r\n";
  return out;
}

Reply ok(std::string text, Fields fields) { return Reply{true, ErrorCode::kBadArgument, std::move(text), std::move(fields)}; }

Reply err(ErrorCode code, std::string text) { return Reply{false, code, std::move(text), Fields::object()}; }

namespace {
std::string dump_line(const Fields& object) {
  // Text reaching here is valid UTF-8 (checked on input); replace anything else anyway.
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\r\n";
}
}  // namespace

std::string render(const Reply& reply, bool json) {
  if (!json) return reply.ok ? ok_line(reply.text) : err_line(reply.error, reply.text);
  Fields out = Fields::object();
  out["ok"] = reply.ok;
  if (!reply.ok) out["error"] = error_word(reply.error);
  out["text"] = reply.text;
  for (const auto& [key, value] : reply.fields.items()) out[key] = value;
  return dump_line(out);
}

std::string render(const Event& event, bool json) {
  if (!json) return event_line(event.type, event.text);
  Fields out = Fields::object();
  std::string type = event.type;
  for (char& c : type) c = char(tolower(static_cast<unsigned char>(c)));
  out["event"] = type;
  for (const auto& [key, value] : event.fields.items()) out[key] = value;
  return dump_line(out);
}

std::string help_text() {
  std::string out;
  for (const auto& spec : commands()) {
    if (!out.empty()) out += ' ';
    out += spec.name;
    for (const char* const* a = spec.aliases; *a; ++a) {
      out += ' ';
      out += *a;
    }
  }
  return out;
}

}  // namespace vrelay::protocol
