// vrelayctl watch --play: the VLC viewer (see player.hpp).
#include "player.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

namespace vrelay::ctl {

namespace {
constexpr const char* kPlayer = "cvlc";
}

Player::~Player() { stop(); }

Status Player::start(unsigned port) {
  std::string url = "udp://@:" + std::to_string(port);
  bool as_root = geteuid() == 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  if (as_root) {
    const char* sudo_user = getenv("SUDO_USER");
    user_ = sudo_user && *sudo_user && strcmp(sudo_user, "root") != 0 ? sudo_user : "nobody";
    passwd* pw = getpwnam(user_.c_str());
    if (!pw && user_ != "nobody") {
      user_ = "nobody";
      pw = getpwnam("nobody");
    }
    if (!pw) return Failure{"VLC does not run as root, and there is no user 'nobody' to run it as"};
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    if (user_ == "nobody") {
      // nobody's home does not exist; VLC wants a writable one for its configuration.
      char dir[] = "/tmp/vrelayctl-vlc.XXXXXX";
      if (!mkdtemp(dir) || chown(dir, uid, gid) != 0) {
        Failure failure{std::string("cannot make a home folder for the player: ") + strerror(errno)};
        if (dir[0]) rmdir(dir);
        return failure;
      }
      temp_home_ = home = dir;
    } else {
      home = pw->pw_dir;
    }
  }

  // The child reports a failed exec through this pipe (closed on a successful exec).
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    Failure failure{std::string("pipe: ") + strerror(errno)};
    cleanup_home();
    return failure;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    Failure failure{std::string("fork: ") + strerror(errno)};
    close(report[0]);
    close(report[1]);
    cleanup_home();
    return failure;
  }
  if (pid == 0) {
    auto fail = [&](const char* what) {
      int e = errno;
      char msg[256];
      int n = snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
      if (n > 0) {
        ssize_t ignored = write(report[1], msg, size_t(n));
        (void)ignored;
      }
      _exit(127);
    };
    close(report[0]);
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGTSTP, SIGCONT, SIGWINCH}) signal(sig, SIG_DFL);
    int null = open("/dev/null", O_RDWR);
    if (null < 0) fail("/dev/null");
    // VLC's messages would garble vrelayctl's output: they go to /dev/null.
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO) close(null);
    if (as_root) {
      if (initgroups(user_.c_str(), gid) != 0) fail("initgroups");
      if (setgid(gid) != 0) fail("setgid");
      if (setuid(uid) != 0) fail("setuid");
      if (setuid(0) == 0) {
        errno = EPERM;
        fail("dropping root");
      }
      setenv("HOME", home.c_str(), 1);
      setenv("USER", user_.c_str(), 1);
      setenv("LOGNAME", user_.c_str(), 1);
      unsetenv("XDG_RUNTIME_DIR");  // root's; the player's user cannot use it
    }
    // After the change of user (which clears it): the player does not outlive vrelayctl.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(0);
    execlp(kPlayer, kPlayer, url.c_str(), static_cast<char*>(nullptr));
    fail(kPlayer);
  }
  close(report[1]);
  char msg[256];
  ssize_t n;
  do n = read(report[0], msg, sizeof msg - 1);
  while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n > 0) {
    msg[n] = '\0';
    waitpid(pid, nullptr, 0);
    cleanup_home();
    return Failure{std::string("cannot start the player: ") + msg};
  }
  pid_ = pid;
  if (!as_root) user_.clear();
  return {};
}

void Player::exited(int) {
  pid_ = -1;
  cleanup_home();
}

void Player::stop(double grace) {
  if (pid_ > 0) {
    kill(-pid_, SIGTERM);
    kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace);
    bool gone = false;
    while (!gone) {
      pid_t r = waitpid(pid_, nullptr, WNOHANG);
      if (r == pid_ || (r < 0 && errno == ECHILD)) {
        gone = true;
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!gone) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  cleanup_home();
}

void Player::cleanup_home() {
  if (temp_home_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(temp_home_, ec);
  temp_home_.clear();
}

}  // namespace vrelay::ctl
