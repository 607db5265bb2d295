// vrelayctl: the console of the interactive modes (the original positional form and chat).
// On a terminal it edits the input line with libedit's readline callback interface, on the
// libev loop, so that lines from the relay are printed above the line being typed: the
// partial line is erased, the relay's lines are written, the prompt and the partial line are
// drawn again. Without a terminal (a pipe, a file, TERM=dumb) it reads plain lines.
#pragma once
#include <ev.h>

#include <string>
#include <string_view>
#include <vector>

namespace vrelay::ctl {

class Console {
 public:
  struct Handler {
    virtual ~Handler() = default;
    virtual void on_input_line(const std::string& line) = 0;  // without its newline
    virtual void on_input_eof() = 0;                          // Ctrl-D on an empty line, or end of input
  };

  // Editing is used when standard input and output are both terminals and TERM is usable.
  Console(struct ev_loop* loop, Handler& handler, std::string prompt);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  bool editing() const { return editing_; }

  // One line of output (it must hold no control byte: see printable()). On a terminal it
  // appears above the input line, which is drawn again once the loop has printed what came.
  void print(std::string_view line);
  // A message of vrelayctl's own: as print() on a terminal, on standard error otherwise (so
  // that standard output holds only the relay's lines).
  void note(std::string_view line);
  // Writes what print() queued, now.
  void flush();
  void set_prompt(std::string prompt);

  // Ctrl-C: drops the line being typed ("^C" is shown after it) and starts a new one.
  // Returns false, and does nothing, if the line was empty (or there is no terminal).
  bool clear_input();
  // The user is leaving by Ctrl-D or Ctrl-C: the input line becomes prompt + text (the
  // command vrelayctl sends for them), input stops, and later lines print plainly.
  void leave_with(std::string_view text);
  // Stops reading input (the line just entered stays as typed); later lines print plainly.
  void stop_input();
  // Chat: erases the input line the user just entered (its prompt and text), so that the
  // caller can show it formatted. Only right after on_input_line, on a terminal.
  void erase_entered(std::string_view entered);
  // Stops reading and gives the terminal back as it was. Idempotent.
  void stop();

  // Ctrl-Z / fg, and window size changes (from the caller's signal watchers).
  void suspend();
  void resume();
  void resized();

 private:
  static void line_callback(char* line);
  void install();
  void uninstall();
  void on_readable();
  void on_plain_readable();
  int text_width(std::string_view text) const;
  int columns() const;
  int cursor_row() const;  // the row of the cursor, counted from the prompt's row
  int input_rows() const;  // the rows the prompt and the input line take
  std::string erase_input() const;  // moves to the prompt's row and clears the input

  struct ev_loop* loop_;
  Handler& handler_;
  std::string prompt_;
  bool editing_ = false;
  bool installed_ = false;   // libedit's callback handler is installed (the terminal is raw)
  bool reading_ = false;
  ev_io input_watcher_{};
  ev_prepare prepare_{};     // prints what came before the loop sleeps: one redraw per batch
  std::vector<std::string> pending_;
  std::string plain_in_;     // plain mode: the partial input line
  std::string saved_;        // suspend(): the partial line
};

}  // namespace vrelay::ctl
