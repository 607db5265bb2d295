// The client side of the control protocol (see control_client.hpp).
#include "control_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "net.hpp"

namespace vrelay::control {

namespace {

std::string upper(std::string s) {
  for (auto& c : s) c = char(toupper(static_cast<unsigned char>(c)));
  return s;
}

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? int(left) + 1 : 0;  // round up: never a busy 0 ms poll before the deadline
}

}  // namespace

Clock::time_point deadline_after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// ---- lines ----

bool take_words(std::string_view text, size_t n, std::vector<std::string>* words, std::string* rest) {
  words->clear();
  size_t i = 0;
  for (size_t k = 0; k < n; ++k) {
    i = text.find_first_not_of(" \t", i);
    if (i == std::string_view::npos) {
      rest->clear();
      return false;
    }
    size_t end = text.find_first_of(" \t", i);
    if (end == std::string_view::npos) end = text.size();
    words->emplace_back(text.substr(i, end - i));
    i = end;
  }
  i = text.find_first_not_of(" \t", i);
  *rest = i == std::string_view::npos ? std::string() : std::string(text.substr(i));
  while (!rest->empty() && (rest->back() == ' ' || rest->back() == '\t')) rest->pop_back();
  return true;
}

Line classify_text(std::string_view line) {
  Line out;
  std::vector<std::string> words;
  std::string rest;
  if (!take_words(line, 1, &words, &rest)) return out;
  if (words[0] == "OK") {
    out.kind = Line::Kind::kOk;
    out.text = rest;
  } else if (words[0] == "ERR" || words[0] == "EVENT") {
    // Both have a word after their first: the error word, or the event's type.
    out.kind = words[0] == "ERR" ? Line::Kind::kErr : Line::Kind::kEvent;
    if (take_words(rest, 1, &words, &out.text)) out.type = out.is_event() ? upper(words[0]) : words[0];
  }
  return out;
}

std::optional<Line> classify_json(std::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto text = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  Line out;
  if (j.contains("event")) {
    out.kind = Line::Kind::kEvent;
    out.type = upper(text("event"));
  } else if (auto ok = j.find("ok"); ok != j.end() && ok->is_boolean()) {
    out.kind = ok->get<bool>() ? Line::Kind::kOk : Line::Kind::kErr;
    out.type = text("error");
  } else {
    return out;
  }
  out.text = text("text");
  return out;
}

Line classify(std::string_view line) {
  if (!line.empty() && line.front() == '{')
    if (auto json = classify_json(line)) return *json;
  return classify_text(line);
}

Result<Hello> parse_hello(std::string_view line) {
  std::vector<std::string> words;
  std::string rest;
  if (take_words(line, 5, &words, &rest) && rest.empty() && words[0] == "EVENT" && upper(words[1]) == "HELLO" &&
      words[2] == "vrelay")
    return Hello{words[3], words[4]};
  return Failure{"not a vrelay relay (its first line is '" + std::string(line.substr(0, 80)) + "', not EVENT HELLO)"};
}

// ---- a blocking session ----

Status Client::connect(const std::string& host, const std::string& port, double timeout_s, const Endpoint* from) {
  close();
  auto fd = connect_tcp(host, port, timeout_s, interrupt_fd_, &interrupted_, from);
  if (!fd) return Failure{fd.error()};
  fd_ = *fd;
  return {};
}

void Client::adopt(int fd) {
  close();
  fd_ = fd;
}

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

int Client::wait_for(short events, Clock::time_point deadline, std::string* error) {
  for (;;) {
    pollfd p[2] = {{fd_, events, 0}, {interrupt_fd_, POLLIN, 0}};
    int n = poll(p, interrupt_fd_ >= 0 ? 2 : 1, ms_left(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = std::string("poll: ") + strerror(errno);
      return -1;
    }
    if (n == 0) return 0;
    if (interrupt_fd_ >= 0 && (p[1].revents & POLLIN)) {
      interrupted_ = true;
      *error = "interrupted";
      return -1;
    }
    return 1;
  }
}

Client::Read Client::receive(Clock::time_point deadline, std::string* error) {
  for (;;) {
    // Past the deadline, only what has come already is read: no poll(), so the interrupt
    // fd does not count either (vrelay-probe drains its session so between its own polls).
    bool wait = Clock::now() < deadline;
    if (wait) {
      int n = wait_for(POLLIN, deadline, error);
      if (n < 0) return Read::kError;
      if (n == 0) return Read::kTimeout;
    }
    char chunk[4096];
    ssize_t got = recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
    if (got == 0) return Read::kClosed;
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!wait) return Read::kTimeout;
        continue;
      }
      if (errno == EINTR) continue;
      int why = errno;
      *error = std::string("connection to the relay: ") + strerror(why);
      errno = why;
      return Read::kError;
    }
    buffer_.append(chunk, size_t(got));
    return Read::kLine;
  }
}

std::string Client::take_bytes(size_t count) {
  std::string out = buffer_.substr(0, count);
  buffer_.erase(0, out.size());
  return out;
}

bool Client::take_line(std::string* line) {
  size_t lf = buffer_.find('\n');
  if (lf == std::string::npos) return false;
  size_t end = lf > 0 && buffer_[lf - 1] == '\r' ? lf - 1 : lf;
  line->assign(buffer_, 0, end);
  buffer_.erase(0, lf + 1);
  return true;
}

Client::Read Client::read_line(Clock::time_point deadline, std::string* line, std::string* error) {
  while (!take_line(line)) {
    if (buffer_.size() > max_line_) {
      *error = "the relay sent a line longer than " + std::to_string(max_line_) + " bytes";
      return Read::kError;
    }
    if (Read r = receive(deadline, error); r != Read::kLine) return r;
  }
  return Read::kLine;
}

Client::Read Client::read_hello(Clock::time_point deadline, Hello* hello, std::string* line, std::string* error) {
  Read r = read_line(deadline, line, error);
  if (r != Read::kLine) return r;
  auto parsed = parse_hello(*line);
  if (!parsed) {
    *error = parsed.error();
    return Read::kError;
  }
  *hello = std::move(*parsed);
  return r;
}

Client::Read Client::read_reply(Clock::time_point deadline, std::string* reply, const EventFn& on_event,
                                std::string* error) {
  for (;;) {
    Read r = read_line(deadline, reply, error);
    if (r != Read::kLine || !classify(*reply).is_event()) return r;
    if (on_event) on_event(*reply);
  }
}

Client::Read Client::command(const std::string& command, Clock::time_point deadline, std::string* reply,
                             const EventFn& on_event, std::string* error) {
  if (Status sent = send_line(command); !sent) {
    *error = sent.error();
    return Read::kError;
  }
  return read_reply(deadline, reply, on_event, error);
}

Status Client::send_bytes(std::string_view bytes) {
  auto deadline = deadline_after(5);
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      if (poll(&p, 1, ms_left(deadline)) == 0) return Failure{"cannot send to the relay: its connection does not drain"};
      continue;
    }
    return Failure{std::string("cannot send to the relay: ") + strerror(errno)};
  }
  return {};
}

}  // namespace vrelay::control
