// Unit tests of the per-session line rate limit (a token bucket).
#include <gtest/gtest.h>

#include "rate_limit.hpp"

namespace {

TEST(RateLimit, BurstThenSteadyRate) {
  vrelay::RateLimit limit(10, 5);  // 10 lines/s, bursts of 5
  int passed = 0;
  for (int i = 0; i < 20; ++i) passed += limit.allow(100.0);
  EXPECT_EQ(passed, 5);
  EXPECT_FALSE(limit.allow(100.0625));  // 0.625 of a token
  EXPECT_TRUE(limit.allow(100.125));    // 1.25 tokens
  passed = 0;
  for (int i = 0; i < 20; ++i) passed += limit.allow(110.0);  // refilled, never past the burst
  EXPECT_EQ(passed, 5);
}

}  // namespace
