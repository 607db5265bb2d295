#include "privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace vrelay {
namespace {

std::optional<passwd> find_user(const std::string& name, std::vector<char>& buffer) {
  passwd entry{}, *found = nullptr;
  buffer.resize(16384);
  if (getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || !found) return std::nullopt;
  return entry;
}

std::runtime_error failure(const std::string& what) { return std::runtime_error(what + ": " + strerror(errno)); }

// The capability sets of this process as /proc shows them: all zero once dropped.
bool has_capabilities() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if ((line.rfind("CapPrm:", 0) == 0 || line.rfind("CapEff:", 0) == 0 || line.rfind("CapAmb:", 0) == 0) &&
        line.find_first_not_of("0\t ", 7) != std::string::npos)
      return true;
  return false;
}

}  // namespace

AccountChoice service_account(const Config& config, bool allow_root) {
  AccountChoice choice;
  if (geteuid() != 0) {
    if (!config.user.empty()) choice.warning = "not started as root: user '" + config.user + "' is ignored";
    return choice;
  }
  if (allow_root) return choice;
  std::vector<char> buffer;
  std::optional<passwd> user;
  if (!config.user.empty()) {
    user = find_user(config.user, buffer);
    if (!user) throw std::runtime_error("user: no account named '" + config.user + "' on this host");
  } else if (!(user = find_user("vrelay", buffer))) {
    user = find_user("nobody", buffer);
    if (!user) throw std::runtime_error("user: neither the account vrelay nor nobody exists; set user: in the configuration");
    choice.warning = "running as nobody: create the system account vrelay (the package does), or set user: "
               "in the configuration (vrelayd --allow-root keeps root)";
  }
  if (user->pw_uid == 0) throw std::runtime_error("user: '" + config.user + "' is root; only vrelayd --allow-root keeps root");
  Account account{user->pw_uid, user->pw_gid, user->pw_name, ""};
  if (!config.group.empty()) {
    group entry{}, *found = nullptr;
    std::vector<char> group_buffer(16384);
    if (getgrnam_r(config.group.c_str(), &entry, group_buffer.data(), group_buffer.size(), &found) != 0 || !found)
      throw std::runtime_error("group: no group named '" + config.group + "' on this host");
    account.gid = found->gr_gid;
  }
  group entry{}, *found = nullptr;
  std::vector<char> group_buffer(16384);
  bool named = getgrgid_r(account.gid, &entry, group_buffer.data(), group_buffer.size(), &found) == 0 && found;
  account.group = named ? found->gr_name : std::to_string(account.gid);
  choice.account = account;
  return choice;
}

void drop_privileges(const Account& account) {
  if (setgroups(1, &account.gid) != 0) throw failure("setgroups");
  if (setresgid(account.gid, account.gid, account.gid) != 0) throw failure("setresgid " + account.group);
  if (setresuid(account.uid, account.uid, account.uid) != 0) throw failure("setresuid " + account.user);
  if (setuid(0) == 0 || seteuid(0) == 0) throw std::runtime_error("root could be regained after dropping it");
  if (has_capabilities()) throw std::runtime_error("capabilities are left after dropping root");
  // No exec can grant privileges again; and the process stays dumpable (the kernel clears
  // that on a uid change) so its own user can read /proc/PID and the sanitizers work.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw failure("PR_SET_NO_NEW_PRIVS");
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) throw failure("PR_SET_DUMPABLE");
}

void drop_capabilities() {
  if (!has_capabilities()) return;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) throw failure("clearing the ambient capabilities");
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3]{};
  if (syscall(SYS_capset, &header, none) != 0) throw failure("capset");
  if (has_capabilities()) throw std::runtime_error("capabilities are left after dropping them");
}

}  // namespace vrelay
