// vrelayctl: the console of the interactive modes (see console.hpp).
//
// libedit's readline emulation has two traps in callback mode, both handled here:
// - after a line is entered it leaves "unbuffered" mode, so the next rl_callback_read_char()
//   would block in el_gets() until a whole new line is typed (and the relay's lines would
//   wait): the handler is installed again after every line, which also empties the line;
// - rl_forced_update_display() redraws the prompt and the line where libedit believes the
//   cursor is, so the caller first moves the cursor to the prompt's row and clears below.
// The escape sequences used (cursor up, carriage return, clear to the end of the line or of
// the screen) are ANSI ones that every terminal emulator in use understands; TERM=dumb gets
// the plain mode.
#include "console.hpp"

#include <editline/readline.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cwchar>
#include <optional>

namespace vrelay::ctl {

namespace {
Console* g_console = nullptr;
// Text before the cursor when libedit's rl_line_buffer/rl_point are stale (they are brought
// up to date only by rl_callback_read_char): "" right after install, the restored text after
// resume().
std::optional<std::string> g_before_cursor;

void write_all(std::string_view s) {
  fwrite(s.data(), 1, s.size(), stdout);
  fflush(stdout);
}
}  // namespace

Console::Console(struct ev_loop* loop, Handler& handler, std::string prompt)
    : loop_(loop), handler_(handler), prompt_(std::move(prompt)) {
  const char* term = getenv("TERM");
  editing_ = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) && term && *term && strcmp(term, "dumb") != 0;
  g_console = this;
  if (editing_) {
    rl_readline_name = "vrelayctl";  // ~/.editrc entries may start with "vrelayctl:"
    rl_catch_signals = 0;            // signals are libev's (ev_signal), not libedit's
    rl_catch_sigwinch = 0;
    rl_instream = stdin;
    rl_outstream = stdout;
    using_history();
    install();
  }
  ev_io_init(&input_watcher_, [](struct ev_loop*, ev_io* w, int) {
    auto* self = static_cast<Console*>(w->data);
    if (self->editing_) self->on_readable(); else self->on_plain_readable();
  }, STDIN_FILENO, EV_READ);
  input_watcher_.data = this;
  ev_io_start(loop_, &input_watcher_);
  ev_prepare_init(&prepare_, [](struct ev_loop*, ev_prepare* w, int) { static_cast<Console*>(w->data)->flush(); });
  prepare_.data = this;
  ev_prepare_start(loop_, &prepare_);
  reading_ = true;
}

Console::~Console() {
  stop();
  g_console = nullptr;
}

void Console::install() {
  rl_callback_handler_install(prompt_.c_str(), &Console::line_callback);
  installed_ = true;
  g_before_cursor = std::string();
}

void Console::uninstall() {
  if (!installed_) return;
  rl_callback_handler_remove();  // libedit puts the terminal back in its normal mode
  installed_ = false;
}

void Console::line_callback(char* line) {
  Console* self = g_console;
  // libedit has left its unbuffered mode (the terminal is back to normal) before calling us.
  self->uninstall();
  self->installed_ = false;
  if (!line) {
    self->reading_ = false;
    ev_io_stop(self->loop_, &self->input_watcher_);
    self->handler_.on_input_eof();
    return;
  }
  std::string text(line);
  free(line);
  if (text.find_first_not_of(" \t") != std::string::npos) add_history(text.c_str());
  self->handler_.on_input_line(text);
  if (self->reading_ && !self->installed_) self->install();
}

void Console::on_readable() {
  g_before_cursor.reset();
  rl_callback_read_char();  // one key; may call line_callback
}

void Console::on_plain_readable() {
  char buffer[4096];
  ssize_t n = read(STDIN_FILENO, buffer, sizeof buffer);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    ev_io_stop(loop_, &input_watcher_);
    reading_ = false;
    if (!plain_in_.empty()) {  // a last line without its newline
      std::string line;
      line.swap(plain_in_);
      handler_.on_input_line(line);
    }
    handler_.on_input_eof();
    return;
  }
  for (ssize_t i = 0; i < n; ++i) {
    if (buffer[i] != '\n') {
      plain_in_ += buffer[i];
      continue;
    }
    std::string line;
    line.swap(plain_in_);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    handler_.on_input_line(line);
    if (!reading_) return;  // the handler stopped the input (leaving)
  }
}

int Console::columns() const {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

int Console::text_width(std::string_view text) const {
  int width = 0;
  std::mbstate_t state{};
  size_t i = 0;
  while (i < text.size()) {
    wchar_t wc;
    size_t n = mbrtowc(&wc, text.data() + i, text.size() - i, &state);
    if (n == 0) break;
    if (n == size_t(-1) || n == size_t(-2)) {  // libedit shows such a byte as \ooo
      width += 4;
      state = std::mbstate_t{};
      ++i;
      continue;
    }
    int w = wcwidth(wc);
    width += w < 0 ? 2 : w;  // other control characters are shown as ^X
    i += n;
  }
  return width;
}

int Console::cursor_row() const {
  std::string_view before;
  if (g_before_cursor) {
    before = *g_before_cursor;
  } else if (rl_line_buffer && rl_point > 0) {
    before = std::string_view(rl_line_buffer, size_t(rl_point));
  }
  return (text_width(prompt_) + text_width(before)) / columns();
}

int Console::input_rows() const {
  std::string_view line;
  if (g_before_cursor) {
    line = *g_before_cursor;  // the cursor is at its end
  } else if (rl_line_buffer && rl_end > 0) {
    line = std::string_view(rl_line_buffer, size_t(rl_end));
  }
  return (text_width(prompt_) + text_width(line)) / columns() + 1;
}

std::string Console::erase_input() const {
  std::string out;
  int up = cursor_row();
  if (up > 0) out += "\x1b[" + std::to_string(up) + "A";
  // Clear to the end of the line when the input holds one row: clearing the screen from its
  // top-left corner would make some terminals (tmux) push the screen into their history.
  out += input_rows() > 1 ? "\r\x1b[J" : "\r\x1b[K";
  return out;
}

void Console::print(std::string_view line) {
  if (editing_ && installed_) {
    pending_.emplace_back(line);  // written by flush(), before the loop sleeps
    return;
  }
  std::string out(line);
  out += editing_ ? "\r\n" : "\n";
  write_all(out);
}

void Console::note(std::string_view line) {
  if (editing_) {
    print(line);
    return;
  }
  fflush(stdout);
  fprintf(stderr, "%.*s\n", int(line.size()), line.data());
}

void Console::flush() {
  if (pending_.empty()) return;
  if (!installed_) {
    for (auto& l : pending_) write_all(l + (editing_ ? "\r\n" : "\n"));
    pending_.clear();
    return;
  }
  std::string out = erase_input();
  for (auto& l : pending_) {
    out += l;
    out += "\r\n";
  }
  pending_.clear();
  write_all(out);
  rl_forced_update_display();  // prompt and partial line, on the row the cursor is now
}

void Console::set_prompt(std::string prompt) {
  if (prompt == prompt_) return;
  if (editing_ && installed_) {
    flush();
    write_all(erase_input());
    prompt_ = std::move(prompt);
    rl_set_prompt(prompt_.c_str());
    rl_forced_update_display();
  } else {
    prompt_ = std::move(prompt);
  }
}

bool Console::clear_input() {
  if (!editing_ || !installed_ || rl_end <= 0 || g_before_cursor) return false;
  flush();
  // Draw the line again with ^C after it (as a shell does), then start an empty one.
  std::string line(rl_line_buffer, size_t(rl_end));
  std::string out = erase_input() + prompt_ + line + "^C\r\n";
  uninstall();
  write_all(out);
  install();
  return true;
}

void Console::leave_with(std::string_view text) {
  flush();
  if (editing_) {
    std::string out;
    if (installed_) {
      out = erase_input();
    } else if (!reading_) {  // end of input: the cursor is after "prompt^D", on one row
      out = "\r\x1b[K";
    }
    uninstall();
    out += prompt_;
    out += text;
    out += "\r\n";
    write_all(out);
  }
  reading_ = false;
  ev_io_stop(loop_, &input_watcher_);
}

void Console::stop_input() {
  flush();
  if (editing_) uninstall();
  reading_ = false;
  ev_io_stop(loop_, &input_watcher_);
}

void Console::erase_entered(std::string_view entered) {
  if (!editing_ || installed_) return;
  // libedit left the cursor at the start of the row below the input's last row; the input
  // took (prompt + text) / columns + 1 rows (a full last row puts the cursor one row lower).
  int rows = (text_width(prompt_) + text_width(entered)) / columns() + 1;
  write_all("\x1b[" + std::to_string(rows) + (rows > 1 ? "A\r\x1b[J" : "A\r\x1b[K"));
}

void Console::stop() {
  if (reading_) {
    reading_ = false;
    ev_io_stop(loop_, &input_watcher_);
  }
  if (editing_ && installed_) {
    // Erase the prompt and the partial line: what follows (a message, the shell's prompt)
    // takes that row.
    flush();
    std::string out = erase_input();
    uninstall();
    write_all(out);
  }
  flush();
  ev_prepare_stop(loop_, &prepare_);
}

void Console::suspend() {
  if (!editing_ || !installed_) {
    raise(SIGSTOP);
    return;
  }
  flush();
  saved_.assign(rl_line_buffer ? rl_line_buffer : "", rl_line_buffer ? size_t(rl_end) : 0);
  if (g_before_cursor) saved_ = *g_before_cursor;
  uninstall();
  write_all("\r\n");
  raise(SIGSTOP);  // the shell shows the job as stopped; resume() runs on SIGCONT
}

void Console::resume() {
  if (!editing_ || installed_ || !reading_) return;
  install();
  if (!saved_.empty()) {
    rl_insert_text(saved_.c_str());
    rl_forced_update_display();
    g_before_cursor = saved_;
  }
  saved_.clear();
}

void Console::resized() {
  if (editing_ && installed_) rl_resize_terminal();
}

}  // namespace vrelay::ctl
