// A token bucket: how many lines per second one control session may send, with bursts.
#pragma once
#include <algorithm>

namespace vrelay {

class RateLimit {
 public:
  RateLimit(double per_second, double burst) : rate_(per_second), burst_(burst), tokens_(burst) {}
  // Whether one more line may pass at time `now_s` (seconds, monotonic).
  bool allow(double now_s) {
    if (started_) tokens_ = std::min(burst_, tokens_ + (now_s - last_s_) * rate_);
    started_ = true;
    last_s_ = now_s;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  double rate_, burst_, tokens_;
  double last_s_ = 0;
  bool started_ = false;
};

}  // namespace vrelay
