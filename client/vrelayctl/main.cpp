// vrelayctl: the command line. Picks the mode: one command (one-shot), watch, chat, or the
// original client's positional form, then runs it (client.cpp, watch.cpp, chat.cpp,
// interactive.cpp).
#include <getopt.h>

#include <cerrno>
#include <clocale>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "client.hpp"
#include "text.hpp"
#include "version.hpp"

namespace {

using namespace vrelay::ctl;

const char* kUsage =
    "Usage: vrelayctl [OPTIONS] COMMAND [ARGS...]\n"
    "       vrelayctl [OPTIONS] watch PORT [--play]\n"
    "       vrelayctl [OPTIONS] chat [--name NAME]\n"
    "       vrelayctl <ServerIP> <ServerPort> <PuertoVLC>\n"
    "Controls a vrelay relay (vrelayd(8)) over its control protocol (vrelay-protocol(7)).\n"
    "\n"
    "  COMMAND [ARGS...]      send one command to the relay (PING, STATS, LIST, HELP...;\n"
    "                         any command, words joined with single spaces) and print its\n"
    "                         reply; events are not printed\n"
    "  watch PORT [--play]    subscribe UDP PORT of this machine to the stream, print the\n"
    "                         relay's lines until Ctrl-C or SIGTERM (which send DESCONECTAR);\n"
    "                         with --play, also runs the player 'cvlc udp://@:PORT'\n"
    "  chat [--name NAME]     chat with the relay's other sessions; /help lists the commands\n"
    "  <ServerIP> <ServerPort> <PuertoVLC>\n"
    "                         the original client: subscribe PuertoVLC, then send each line\n"
    "                         typed on the console and print the relay's lines as they come\n"
    "\n"
    "  -s, --server HOST:PORT the relay's control address (default: $VRELAY_SERVER, else\n"
    "                         127.0.0.1:7700)\n"
    "  -j, --json             one-shot and watch: send FORMAT JSON first; replies and\n"
    "                         events are printed as the relay's JSON lines\n"
    "  -t, --timeout SECONDS  wait at most this long to connect and for each reply\n"
    "                         vrelayctl waits for (default 10)\n"
    "  -k, --keepalive SECONDS\n"
    "                         watch, chat and the original form: send PING after SECONDS\n"
    "                         without a line sent, so that the relay's idle timeout does\n"
    "                         not end the session (default 60; 0 = never)\n"
    "  -V, --version          print the version and exit\n"
    "  -h, --help             print this help and exit\n"
    "\n"
    "'watch' and 'chat' are vrelayctl's own (in lower case); any other word is sent.\n"
    "Interactive modes: Ctrl-C clears the line being typed, or leaves on an empty line;\n"
    "Ctrl-D leaves. Leaving sends DESCONECTAR.\n"
    "Exit status: 0 OK (or a clean exit), 1 an ERR reply or the relay ended the session,\n"
    "2 a usage error, 3 no connection to the relay (refused, unreachable, unknown host),\n"
    "4 no greeting or reply in time, a refused session, or not a vrelay relay;\n"
    "130 interrupted before a reply.\n";

int usage_error(const std::string& message) {
  fprintf(stderr, "vrelayctl: %s\nTry 'vrelayctl --help'.\n", message.c_str());
  return kExitUsage;
}

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

vrelay::Status set_server(Options& options, const std::string& spec) {
  auto server = split_server(spec);
  if (!server) return vrelay::Failure{server.error()};
  options.host = server->host;
  options.port = server->port;
  bool v6 = options.host.find(':') != std::string::npos;
  options.server = (v6 ? "[" + options.host + "]" : options.host) + ":" + options.port;
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  setlocale(LC_CTYPE, "");  // UTF-8 input on the console
  signal(SIGPIPE, SIG_IGN);

  static const option long_options[] = {
      {"server", required_argument, nullptr, 's'},
      {"json", no_argument, nullptr, 'j'},
      {"timeout", required_argument, nullptr, 't'},
      {"keepalive", required_argument, nullptr, 'k'},
      {"version", no_argument, nullptr, 'V'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  Options options;
  std::string server_option;
  bool server_given = false;
  opterr = 0;
  int opt;
  // '+': options stop at the first word, which begins the command (its words go as they are).
  while ((opt = getopt_long(argc, argv, "+:s:jt:k:Vh", long_options, nullptr)) != -1) {
    switch (opt) {
      case 's': server_option = optarg; server_given = true; break;
      case 'j': options.json = true; break;
      case 't': {
        char* end = nullptr;
        errno = 0;
        double t = strtod(optarg, &end);
        if (errno != 0 || end == optarg || *end != '\0' || !(t > 0 && t <= 3600))
          return usage_error("--timeout expects a number of seconds, more than 0 and at most 3600");
        options.timeout_s = t;
        break;
      }
      case 'k': {
        char* end = nullptr;
        errno = 0;
        double k = strtod(optarg, &end);
        if (errno != 0 || end == optarg || *end != '\0' || !(k >= 0 && k <= 86400))
          return usage_error("--keepalive expects a number of seconds from 0 (never) to 86400");
        options.keepalive_s = k;
        break;
      }
      case 'V': printf("vrelayctl %s\n", VRELAY_VERSION); return kExitOk;
      case 'h': fputs(kUsage, stdout); return kExitOk;
      case ':': return usage_error(std::string("option '") + argv[optind - 1] + "' needs a value");
      default: return usage_error(std::string("unknown option '") + argv[optind - 1] + "'");
    }
  }
  std::vector<std::string> args(argv + optind, argv + argc);
  if (args.empty()) return usage_error("expected a command, 'watch PORT', 'chat' or <ServerIP> <ServerPort> <PuertoVLC>");

  const char* env = getenv("VRELAY_SERVER");
  std::string spec = server_given ? server_option : (env && *env ? env : kDefaultServer);
  auto server_source = server_given ? std::string("--server") : (env && *env ? "VRELAY_SERVER" : "default");

  // The original client's form: <ServerIP> <ServerPort> <PuertoVLC> (two numbers after a host;
  // no command of the protocol takes two numbers).
  if (args.size() == 3 && args[0] != "watch" && args[0] != "chat" && all_digits(args[1]) && all_digits(args[2])) {
    if (server_given) return usage_error("give the relay either with --server or as <ServerIP> <ServerPort>");
    if (options.json) return usage_error("--json does not apply to the interactive form");
    options.host = args[0];
    unsigned port;
    if (!parse_udp_port(args[1], &port)) return usage_error("<ServerPort> must be a number from 1 to 65535");
    options.port = args[1];
    bool v6 = options.host.find(':') != std::string::npos;
    options.server = (v6 ? "[" + options.host + "]" : options.host) + ":" + options.port;
    if (!parse_udp_port(args[2], &options.udp_port)) return usage_error("<PuertoVLC> must be a number from 1 to 65535");
    return run_positional(options);
  }

  if (vrelay::Status set = set_server(options, spec); !set) return usage_error(server_source + ": " + set.error());

  if (args[0] == "watch") {
    bool have_port = false;
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--play") {
        options.play = true;
      } else if (!have_port && parse_udp_port(args[i], &options.udp_port)) {
        have_port = true;
      } else {
        return usage_error("usage: vrelayctl watch PORT [--play] ('" + args[i] + "' is not a UDP port from 1 to 65535)");
      }
    }
    if (!have_port) return usage_error("usage: vrelayctl watch PORT [--play]");
    return run_watch(options);
  }

  if (args[0] == "chat") {
    if (options.json) return usage_error("--json does not apply to chat");
    for (size_t i = 1; i < args.size(); ++i) {
      std::string a = args[i];
      if (a.rfind("--name=", 0) == 0) {
        options.name = a.substr(7);
      } else if (a == "--name" && i + 1 < args.size()) {
        options.name = args[++i];
      } else {
        return usage_error("usage: vrelayctl chat [--name NAME]");
      }
    }
    if (!options.name.empty() && (!sendable(options.name) || options.name.find_first_of(" \t") != std::string::npos))
      return usage_error("--name: a name is one word: letters, digits, '_', '.', '-'");
    return run_chat(options);
  }

  options.command = args;
  return run_oneshot(options);
}
