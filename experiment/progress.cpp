// Progress display and clocks (see progress.h).
#include "experiment/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <utility>

namespace experiment {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double wall_clock_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}


Progress::Progress(std::string label, int64_t total, bool quiet)
    : label_(std::move(label)), total_(total), quiet_(quiet), tty_(::isatty(::fileno(stderr)) != 0), start_(now_seconds()) {}

void Progress::update(int64_t done, int64_t images, double loss, double accuracy) {
  if (quiet_) return;
  const double t = now_seconds(), elapsed = t - start_;
  if (tty_ ? (t - last_print_ < 0.2 && done < total_) : (t - last_print_ < 15 && last_print_ >= 0) || done == total_)
    return;
  if (!tty_ && last_print_ < 0 && elapsed < 15) return;  // plain lines: every 15 s
  last_print_ = t;
  const double rate = elapsed > 0 ? images / elapsed : 0;
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0;
  char stats[160];
  std::snprintf(stats, sizeof stats, "%lld/%lld loss %.4f acc %.3f %.1f img/s ETA %d:%02d", static_cast<long long>(done),
                static_cast<long long>(total_), loss, accuracy, rate, static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
  if (tty_) {
    const int width = 24, filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
    std::fprintf(stderr, "\r%s [%s] %s\x1b[K", label_.c_str(), bar.c_str(), stats);
  } else {
    std::fprintf(stderr, "%s %s\n", label_.c_str(), stats);
  }
  std::fflush(stderr);
}

void Progress::finish(const std::string& summary) {
  if (quiet_) return;
  std::fprintf(stderr, "%s%s %s\n", tty_ ? "\r\x1b[K" : "", label_.c_str(), summary.c_str());
  std::fflush(stderr);
}

}  // namespace experiment
