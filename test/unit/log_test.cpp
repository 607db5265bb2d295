// log::Throttle: a flood is logged a few lines per interval, each saying what it left out.
// log.file: what goes wrong with it is said.
#include "log.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "clock.hpp"

namespace vrelay {
namespace {

TEST(LogThrottle, AFloodIsLoggedAFewLinesAnIntervalWithTheCountLeftOut) {
  log::Throttle throttle(kNsPerSecond, 2);
  uint64_t t = 5 * kNsPerSecond;
  EXPECT_EQ(throttle.due(t, "refused"), "");
  EXPECT_EQ(throttle.due(t + 1, "refused"), "");
  for (int i = 0; i < 5000; ++i) EXPECT_FALSE(throttle.due(t + 2 + uint64_t(i), "refused"));
  EXPECT_EQ(throttle.due(t + kNsPerSecond, "refused"), " (and 5000 more refused not logged)");
  EXPECT_EQ(throttle.due(t + kNsPerSecond + 1, "refused"), "");
  EXPECT_FALSE(throttle.due(t + kNsPerSecond + 2, "refused"));
}

TEST(LogThrottle, TheFirstOccurrenceIsAlwaysLogged) {
  log::Throttle throttle(kNsPerSecond);
  EXPECT_TRUE(throttle.due(0, "x"));
  EXPECT_FALSE(throttle.due(1, "x"));
}

// Only the failures: a log file that opens would take this process's stderr.
TEST(LogFile, AFileThatCannotBeOpenedSaysWhy) {
  Status opened = log::use_file("/nonexistent-vrelay-dir/vrelayd.log");
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), "cannot open the log file /nonexistent-vrelay-dir/vrelayd.log: No such file or directory");
  // Still no log file: nothing to reopen or give away.
  Status reopened = log::reopen();
  EXPECT_TRUE(reopened) << reopened.error();
  Status given = log::give_to(getuid(), getgid());
  EXPECT_TRUE(given) << given.error();
}

}  // namespace
}  // namespace vrelay
