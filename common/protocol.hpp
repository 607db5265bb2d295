// The control protocol (vrelay-protocol(7)), without I/O: the telnet-aware line reader, the
// command table that drives dispatch and HELP, the pure parser, and reply formatting.
// Used by the control process and by the clients; fuzzable and unit-tested.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace vrelay::protocol {

// Splits a byte stream into lines: strips telnet IAC sequences (also split across reads),
// answers option requests by refusing them, drops the CR of CRLF, and enforces the line
// limit without buffering past it.
class LineReader {
 public:
  struct Sink {
    virtual ~Sink() = default;
    virtual void on_line(std::string_view line) = 0;
    virtual void on_line_too_long() = 0;
    virtual void on_telnet_reply(std::string_view bytes) = 0;  // send back as is
  };
  // The buffer grows with the line: reserving max_line up front cost every idle session a
  // page of memory.
  explicit LineReader(size_t max_line) : max_line_(max_line) {}
  void feed(const char* data, size_t size, Sink& sink);
  void set_max_line(size_t max_line) { max_line_ = max_line; }  // a reload

 private:
  enum class Telnet { kData, kIac, kOption, kSub, kSubIac };
  size_t max_line_;
  std::string buffer_;
  bool discarding_ = false;
  Telnet telnet_ = Telnet::kData;
  unsigned char option_verb_ = 0;
};

enum class ErrorCode {
#define VRELAY_ERROR(id, word) k##id,
#include "errors.def"
#undef VRELAY_ERROR
};
const char* error_word(ErrorCode code);

enum class CommandId {
#define VRELAY_COMMAND(id, ...) k##id,
#include "commands.def"
#undef VRELAY_COMMAND
};
enum class Access { kAnyone, kModerator };

struct CommandSpec {
  CommandId id;
  const char* name;
  const char* aliases[4];  // nullptr-terminated
  int min_args, max_args;  // words after the command
  bool rest_is_text;       // the last argument takes the rest of the line
  Access access;
  const char* usage;
  const char* help;
};
const std::vector<CommandSpec>& commands();

struct Parsed {
  const CommandSpec* spec = nullptr;  // null when error is set
  std::vector<std::string_view> args; // views into the parsed line
  bool ok = false;
  ErrorCode error = ErrorCode::kBadArgument;
  std::string message;                // the human text of an error
};

// The command a word names (name or alias, any case), or nullptr.
const CommandSpec* find_command(std::string_view word);
// True if the line is valid UTF-8 without control bytes other than tab.
bool is_clean_text(std::string_view line);
// The characters of a session's NAME and of an output's name: 1 to 32 of [A-Za-z0-9_.-].
bool is_name(std::string_view name);
// Splits on spaces and tabs.
std::vector<std::string_view> split_words(std::string_view line);
// Parses one line. An empty or blank line gives ok=false with spec=nullptr and an empty
// message: it gets no reply. Port arguments are checked by the executor (range from config).
Parsed parse(std::string_view line);
bool is_blank(std::string_view line);

std::string ok_line(std::string_view text = {});                        // "OK text\r\n"
std::string err_line(ErrorCode code, std::string_view text);            // "ERR code text\r\n"
std::string event_line(std::string_view type, std::string_view text);   // "EVENT TYPE text\r\n"
std::string help_text();                                                // command names

// A reply or an event with its structured fields, rendered per session in the text form
// of vrelay-protocol(7) or as one JSON object per line (FORMAT JSON).
using Fields = nlohmann::ordered_json;  // a JSON object; empty = none

struct Reply {
  bool ok = true;
  ErrorCode error = ErrorCode::kBadArgument;
  std::string text;
  Fields fields = Fields::object();
};
Reply ok(std::string text = {}, Fields fields = Fields::object());
Reply err(ErrorCode code, std::string text);

struct Event {
  std::string type;  // upper case: "MSG"
  std::string text;  // what follows the type in the text form
  Fields fields = Fields::object();
};

std::string render(const Reply& reply, bool json);  // one line, CRLF included
std::string render(const Event& event, bool json);

}  // namespace vrelay::protocol
