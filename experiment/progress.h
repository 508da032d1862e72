// Progress of a pass over a data set (training, evaluation, CAM batches) on stderr, and the two clocks the
// apps time things with.
#pragma once
#include <cstdint>
#include <string>

namespace experiment {

// Progress: a bar redrawn in place on a terminal, periodic plain lines otherwise (stderr).
class Progress {
 public:
  Progress(std::string label, int64_t total, bool quiet);
  void update(int64_t done, int64_t images, double loss, double accuracy);
  void finish(const std::string& summary);

 private:
  std::string label_;
  int64_t total_;
  bool quiet_, tty_;
  double start_, last_print_ = -1;
};
double now_seconds();         // a steady clock, for durations
double wall_clock_seconds();  // seconds since 1970 (the system clock)

}  // namespace experiment
