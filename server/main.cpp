// vrelayd: command line and configuration, then hands over to the supervisor.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "config.hpp"
#include "shm.hpp"
#include "log.hpp"
#include "proctitle.hpp"
#include "supervisor/supervisor.hpp"
#include "version.hpp"

namespace {

const char* kUsage =
    "Usage: vrelayd [OPTIONS]\n"
    "       vrelayd <ServerIP> <ServerPort>\n"
    "Relays one live UDP video stream (MPEG-TS from VLC or ffmpeg) to many viewers,\n"
    "each controlled over a telnet-friendly TCP session (see vrelay-protocol(7)).\n"
    "\n"
    "  -c, --config FILE       read the YAML configuration FILE (vrelay.yaml(5));\n"
    "                          without it the embedded defaults apply\n"
    "      --control HOST:PORT control sessions listen here (default 0.0.0.0:7700)\n"
    "      --ingest HOST:PORT  the source sends its UDP stream here (default 127.0.0.1:65534);\n"
    "                          a multicast group is joined on ingest.interface\n"
    "      --http HOST:PORT    serve /metrics, /status.json and the status page here,\n"
    "                          or 'off' (default off)\n"
    "      --instance NAME     names the shared-memory segment /vrelay.NAME (default 'default')\n"
    "  -F, --foreground        stay in the foreground (for systemd and tests); otherwise\n"
    "                          vrelayd detaches once ready\n"
    "      --allow-root        started as root, keep running as root; without it vrelayd\n"
    "                          binds and creates what needs root, then runs as the\n"
    "                          configured user (or vrelay, else nobody)\n"
    "      --check-config      check the configuration and exit (0 = valid)\n"
    "      --help-config       print every configuration key with its default, values\n"
    "                          and meaning (as YAML), and exit\n"
    "  -V, --version           print the version and exit\n"
    "  -h, --help              print this help and exit\n"
    "\n"
    "Port 0 binds any free port. When every process is ready vrelayd prints\n"
    "'vrelayd ready control=HOST:PORT ingest=HOST:PORT instance=NAME pid=PID'\n"
    "on standard output, followed by ' http=HOST:PORT' when HTTP is on.\n"
    "Options override the configuration file. Exit status: 0 on a clean stop,\n"
    "1 on a runtime failure, 2 on a usage or configuration error.\n";

// Every key as "path: default", after a comment line with its meaning and values.
void print_config_keys() {
  for (const vrelay::ConfigKey& key : vrelay::config_keys()) {
    std::string values = *key.values ? std::string(" (") + key.values + ")" : "";
    printf("# %s%s\n%s: %s\n", key.help, values.c_str(), key.path.c_str(), key.fallback);
  }
}

int usage_error(const std::string& message) {
  fprintf(stderr, "vrelayd: %s\nTry 'vrelayd --help'.\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  vrelay::proctitle_init(argc, argv);
  vrelay::log::set_role("vrelayd");

  enum { kOptControl = 1000, kOptIngest, kOptInstance, kOptCheck, kOptHttp, kOptHelpConfig, kOptAllowRoot };
  static const option long_options[] = {
      {"config", required_argument, nullptr, 'c'},
      {"control", required_argument, nullptr, kOptControl},
      {"ingest", required_argument, nullptr, kOptIngest},
      {"http", required_argument, nullptr, kOptHttp},
      {"instance", required_argument, nullptr, kOptInstance},
      {"foreground", no_argument, nullptr, 'F'},
      {"allow-root", no_argument, nullptr, kOptAllowRoot},
      {"check-config", no_argument, nullptr, kOptCheck},
      {"help-config", no_argument, nullptr, kOptHelpConfig},
      {"version", no_argument, nullptr, 'V'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };

  std::string config_file, control, ingest, http, instance;
  bool instance_given = false;
  vrelay::SupervisorOptions options;
  bool check_only = false;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, ":c:FVh", long_options, nullptr)) != -1) {
    switch (opt) {
      case 'c': config_file = optarg; break;
      case kOptControl: control = optarg; break;
      case kOptIngest: ingest = optarg; break;
      case kOptHttp: http = optarg; break;
      case kOptInstance: instance = optarg; instance_given = true; break;
      case 'F': options.foreground = true; break;
      case kOptAllowRoot: options.allow_root = true; break;
      case kOptCheck: check_only = true; break;
      case 'V': printf("vrelayd %s\n", VRELAY_VERSION); return 0;
      case 'h': fputs(kUsage, stdout); return 0;
      case kOptHelpConfig: print_config_keys(); return 0;
      case ':': return usage_error(std::string("option '") + argv[optind - 1] + "' needs a value");
      default: return usage_error(std::string("unknown option '") + argv[optind - 1] + "'");
    }
  }

  // The original form: vrelayd <ServerIP> <ServerPort>.
  int positional = argc - optind;
  if (positional == 2) {
    if (!control.empty()) return usage_error("give the control address either positionally or with --control");
    std::string host = argv[optind];
    control = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + argv[optind + 1];
  } else if (positional != 0) {
    return usage_error("expected no arguments or <ServerIP> <ServerPort>");
  }

  // The file (or the embedded defaults), then the command line's overrides, validated: at
  // start, and again at every reload (the command line still counts then).
  auto load = [=]() {
    vrelay::Config config = config_file.empty() ? vrelay::default_config() : vrelay::load_config_file(config_file);
    if (!control.empty()) {
      auto ep = vrelay::parse_endpoint(control);
      if (!ep) throw vrelay::ConfigError("control address: " + ep.error());
      config.control.listen = *ep;
    }
    if (!ingest.empty()) {
      auto ep = vrelay::parse_endpoint(ingest);
      if (!ep) throw vrelay::ConfigError("ingest address: " + ep.error());
      config.ingest.listen = *ep;
    }
    if (http == "off") {
      config.http.enabled = false;
    } else if (!http.empty()) {
      auto ep = vrelay::parse_endpoint(http);
      if (!ep) throw vrelay::ConfigError("http address: " + ep.error());
      config.http.enabled = true;
      config.http.listen = *ep;
    }
    if (instance_given) {
      vrelay::Status valid = vrelay::Segment::valid_instance_name(instance);
      if (!valid) throw vrelay::ConfigError("--instance: " + valid.error());
      config.instance = instance;
    }
    vrelay::validate(config);
    return config;
  };
  vrelay::Config config;
  try {
    config = load();
  } catch (const vrelay::ConfigError& e) {
    fprintf(stderr, "vrelayd: configuration error: %s\n", e.what());
    return 2;
  }
  if (check_only) {
    printf("vrelayd: configuration %s is valid\n", config_file.empty() ? "(embedded defaults)" : config_file.c_str());
    return 0;
  }
  vrelay::log::set_level(config.log.level);
  if (!config.log.file.empty()) {
    if (vrelay::Status opened = vrelay::log::use_file(config.log.file); !opened) {
      fprintf(stderr, "vrelayd: configuration error: log.file: %s\n", opened.error().c_str());
      return 2;
    }
  }
  options.reload_config = load;
  return vrelay::run_supervisor(config, options);
}
