// Progress of a pass over a data set (training, evaluation, CAM batches) on stderr, the messages of a run
// (stderr, and the run's train.log while a RunLog is alive), and the two clocks the apps time things with.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace experiment {

// A message: printf-formatted text on stderr, also appended to the open RunLog (when there is one).
void message(const char* format, ...) __attribute__((format(printf, 1, 2)));
// Text for the RunLog alone (e.g. a progress display's finished line without its terminal codes).
void log_only(const std::string& text);

// The log of a run (RUN/train.log): while it is alive, every message() and every finished progress line
// (Progress::finish, with --quiet too; not the redraws of the bar) is also written to it. The lines from its construction
// until open() are kept and written first, so the checks before the run folder exists are logged too;
// open() appends (a resumed run's log goes on). One at a time per process; not copyable.
class RunLog {
 public:
  RunLog();
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;
  void open(const std::string& path);  // throws engine::UserError naming the path when it cannot be opened
  void write(const std::string& text);  // the log only

 private:
  friend void log_only(const std::string& text);
  void append(const std::string& text);  // with the log's mutex held
  std::string pending_;
  std::FILE* file_ = nullptr;
  RunLog* previous_ = nullptr;
};

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
