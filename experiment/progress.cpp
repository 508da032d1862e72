// Progress display and clocks (see progress.h).
#include "experiment/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
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

constexpr const char* kClearLine = "\r\x1b[K";  // to the line's start, erase to its end

int stderr_columns() {
  winsize size{};
  if (::ioctl(::fileno(stderr), TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

Console stderr_console() {
  Console c;
  c.write = [](const std::string& text) {
    std::fputs(text.c_str(), stderr);
    std::fflush(stderr);
  };
  c.clock = now_seconds;
  c.columns = stderr_columns;
  c.tty = ::isatty(::fileno(stderr)) != 0;
  return c;
}

// The console and the bar on its current line (guarded by console_mutex).
std::mutex console_mutex;
Console& current_console() {
  static Console console = stderr_console();
  return console;
}
const Progress* bar_shown = nullptr;

// Writes `text` to the console, first clearing the bar shown there (with console_mutex held).
void write_below_bar(const std::string& text) {
  Console& console = current_console();
  if (bar_shown) console.write(kClearLine);
  bar_shown = nullptr;
  console.write(text);
}
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
  {
    const std::lock_guard<std::mutex> lock(console_mutex);
    write_below_bar(text);
  }
  log_only(text);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double wall_clock_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e9) return "--:--";
  const long long s = std::llround(seconds);
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else std::snprintf(text, sizeof text, "%lld:%02lld", s / 60, s % 60);
  return text;
}

ScopedConsole::ScopedConsole(Console console) {
  const std::lock_guard<std::mutex> lock(console_mutex);
  previous_ = std::move(current_console());
  current_console() = std::move(console);
  bar_shown = nullptr;
}

ScopedConsole::~ScopedConsole() {
  const std::lock_guard<std::mutex> lock(console_mutex);
  current_console() = std::move(previous_);
  bar_shown = nullptr;
}

// ---------------------------------------------------------------------------------------------------
// The run's plan

void RunPlan::add(const std::string& phase, int64_t batches, double cost) {
  Phase& p = phases_[phase];
  p.planned += batches;
  p.cost = cost;
}

void RunPlan::record(const std::string& phase, int64_t batches, double seconds) {
  Phase& p = phases_[phase];
  p.done += batches;
  p.seconds += seconds;
}

double RunPlan::remaining_seconds(const std::string& phase, int64_t done, double seconds, int64_t pass_total) const {
  std::map<std::string, Phase> now = phases_;
  double left = 0;
  if (done > 0) {
    now[phase].done += done;
    now[phase].seconds += seconds;
    // The pass's own batches left, at its own rate; the phase's plan without the whole pass below.
    const int64_t pass_left = std::max<int64_t>(pass_total - done, 0);
    left += seconds / static_cast<double>(done) * static_cast<double>(pass_left);
    now[phase].planned -= pass_left;
  }
  // Seconds per unit of cost, over the timed phases: the rate of a phase not timed yet.
  double timed_seconds = 0, timed_cost = 0;
  for (const auto& [name, p] : now)
    if (p.done > 0) {
      timed_seconds += p.seconds;
      timed_cost += p.cost * static_cast<double>(p.done);
    }
  if (timed_cost <= 0) return NAN;
  for (const auto& [name, p] : now) {
    const int64_t batches_left = p.planned - p.done;
    if (batches_left <= 0) continue;
    const double per_batch = p.done > 0 ? p.seconds / static_cast<double>(p.done) : p.cost * timed_seconds / timed_cost;
    left += per_batch * static_cast<double>(batches_left);
  }
  return left;
}

// ---------------------------------------------------------------------------------------------------
// The bar

Progress::Progress(std::string label, int64_t total, bool quiet, RunPlan* plan, std::string phase)
    : label_(std::move(label)), phase_(std::move(phase)), total_(total), quiet_(quiet), plan_(plan) {
  const std::lock_guard<std::mutex> lock(console_mutex);
  start_ = current_console().clock();
}

Progress::~Progress() {
  record();
  const std::lock_guard<std::mutex> lock(console_mutex);
  if (bar_shown == this) {
    current_console().write(kClearLine);
    bar_shown = nullptr;
  }
}

void Progress::record() {
  if (recorded_ || !plan_) return;
  recorded_ = true;
  plan_->record(phase_, done_, elapsed_);
}

void Progress::update(int64_t done, int64_t images) { show(done, images, ""); }

void Progress::update(int64_t done, int64_t images, double loss, double accuracy) {
  char running[64];
  std::snprintf(running, sizeof running, " loss %.4f acc %.3f", loss, accuracy);
  show(done, images, running);
}

void Progress::show(int64_t done, int64_t images, const std::string& running) {
  const std::lock_guard<std::mutex> lock(console_mutex);
  Console& console = current_console();
  const double t = console.clock();
  done_ = done;
  elapsed_ = t - start_;
  const double run_left = plan_ && !recorded_ ? plan_->remaining_seconds(phase_, done_, elapsed_, total_) : NAN;
  // The pass's batches are all done: into the plan now, as the caller may keep this Progress for its
  // finish() while other passes (validation) run.
  if (done_ >= total_) record();
  if (quiet_) return;
  const bool first = last_print_ < 0;
  if (console.tty ? !first && t - last_print_ < kRedrawSeconds && done_ < total_
                  : !first && t - last_print_ < kPlainLineSeconds)
    return;
  last_print_ = t;
  const double rate = elapsed_ > 0 ? static_cast<double>(images) / elapsed_ : 0;
  const double eta = done_ > 0 ? elapsed_ * static_cast<double>(total_ - done_) / static_cast<double>(done_) : NAN;
  char stats[200];
  std::snprintf(stats, sizeof stats, "%lld/%lld%s | %.1f img/s | ETA %s", static_cast<long long>(done_),
                static_cast<long long>(total_), running.c_str(), rate, format_duration(eta).c_str());
  std::string stats_line = stats;
  if (plan_) stats_line += ", run " + format_duration(run_left);
  if (!console.tty) {
    write_below_bar(label_ + " " + stats_line + "\n");
    return;
  }
  // A terminal: the bar takes the room the text leaves (24 columns at most; none under 10), then the line
  // is cut to the width (a wrapped line could not be redrawn in place); the last column stays free.
  const int64_t columns = std::max(console.columns ? console.columns() : 80, 2) - 1;
  const int64_t room = columns - static_cast<int64_t>(label_.size() + stats_line.size()) - 4;  // " [" "] "
  const int64_t width = std::min<int64_t>(24, room);
  std::string line = label_ + " ";
  if (width >= 10) {
    const int64_t filled = total_ > 0 ? width * std::min(done_, total_) / total_ : width;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
    line += "[" + bar + "] ";
  }
  line += stats_line;
  if (static_cast<int64_t>(line.size()) > columns) line.resize(static_cast<size_t>(columns));
  console.write(kClearLine + line);
  bar_shown = this;
}

void Progress::finish(const std::string& summary) {
  record();
  log_only(label_ + " " + summary + "\n");  // also when quiet: the log is the run's record
  if (quiet_) return;
  const std::lock_guard<std::mutex> lock(console_mutex);
  write_below_bar(label_ + " " + summary + "\n");
}

}  // namespace experiment
