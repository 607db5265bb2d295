// Least privilege. Started as root, vrelayd binds its sockets, creates its shared memory and
// opens its log as root; then the supervisor drops to the service account before it forks,
// so every process parses untrusted input as that user, with no capability left.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>

#include "config.hpp"

namespace vrelay {

struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user, group;
};

// The account to run as: the `user` and `group` keys, else vrelay where it exists, else
// nobody (the warning says what to do). No account: stay as we are (not started as root,
// or allow_root). Throws std::runtime_error for an account or group that does not exist.
struct AccountChoice {
  std::optional<Account> account;
  std::string warning;  // for the log once it is open, "" when there is nothing to say
};
AccountChoice service_account(const Config& config, bool allow_root);

// Becomes `account` for good: its group alone, its uid, no capability, no way back to root
// (checked), no new privileges through exec. Throws std::runtime_error on any failure.
void drop_privileges(const Account& account);

// Started as another user with capabilities (systemd's AmbientCapabilities= to bind a low
// port): once bound, none is kept. Throws std::runtime_error if they cannot be dropped.
void drop_capabilities();

}  // namespace vrelay
