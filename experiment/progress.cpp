// Progress display and clocks (see progress.h).
#include "experiment/progress.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>

#include "engine/check.h"

namespace experiment {

namespace {
std::mutex log_mutex;
RunLog* current_log = nullptr;  // the RunLog alive now (guarded by log_mutex)
}  // namespace

RunLog::RunLog() {
  const std::lock_guard<std::mutex> lock(log_mutex);
  previous_ = current_log;
  current_log = this;
}

RunLog::~RunLog() {
  const std::lock_guard<std::mutex> lock(log_mutex);
  current_log = previous_;
  if (file_) std::fclose(file_);
}

void RunLog::open(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "a");
  ENGINE_USER_CHECK(file) << "cannot open " << path << " for the run's log: " << std::strerror(errno);
  const std::lock_guard<std::mutex> lock(log_mutex);
  if (file_) std::fclose(file_);
  file_ = file;
  std::fputs(pending_.c_str(), file_);
  std::fflush(file_);
  pending_.clear();
}

void RunLog::write(const std::string& text) {
  const std::lock_guard<std::mutex> lock(log_mutex);
  append(text);
}

void RunLog::append(const std::string& text) {
  if (!file_) {
    pending_ += text;
    return;
  }
  std::fputs(text.c_str(), file_);
  std::fflush(file_);  // a run killed at any point leaves its log up to date
}

void log_only(const std::string& text) {
  const std::lock_guard<std::mutex> lock(log_mutex);
  if (current_log) current_log->append(text);
}

void message(const char* format, ...) {
  std::va_list args, copy;
  va_start(args, format);
  va_copy(copy, args);
  const int size = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string text(size > 0 ? static_cast<size_t>(size) : 0, '\0');
  if (size > 0) std::vsnprintf(text.data(), text.size() + 1, format, args);
  va_end(args);
  std::fputs(text.c_str(), stderr);
  log_only(text);
}

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
  log_only(label_ + " " + summary + "\n");  // also when quiet: the log is the run's record
  if (quiet_) return;
  std::fprintf(stderr, "%s%s %s\n", tty_ ? "\r\x1b[K" : "", label_.c_str(), summary.c_str());
  std::fflush(stderr);
}

}  // namespace experiment
