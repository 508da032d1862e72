// Progress of the passes over a data set (train, validation, test, evaluate, cam) on stderr, the messages
// of a run (stderr, and the run's train.log while a RunLog is alive), and the two clocks the apps time
// things with.
//
// One bar per pass. On a terminal the bar is redrawn in place (at most 5 times a second), its bar narrowed
// (or left out) so that the numbers fit the terminal's width, the line cut to it, and cleared ("\r" then erase-line) before anything else is written: its next redraw,
// the pass's finished line, or a message() printed while it is shown. Without a terminal (stderr
// redirected to a file) a plain line is printed at the first batch and then every kPlainLineSeconds.
// A training bar shows the running loss and accuracy; every bar shows images/s and the ETA of its pass,
// and, when the pass belongs to a RunPlan, the ETA of the whole run:
//   epoch 2/10 train [=====>      ] 12/40 loss 0.6931 acc 0.512 | 153.2 img/s | ETA 0:21, run 4:02
//   test [===========>] 9/10 | 402.7 img/s | ETA 0:01
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>

namespace experiment {

// A message: printf-formatted text on stderr (clearing a progress bar shown there first), also appended
// to the open RunLog (when there is one).
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

// Where messages and progress bars go and the clock the bars read: by default stderr (a terminal or not,
// its width read at each redraw) and now_seconds(); tests install a string sink and a fake clock.
struct Console {
  std::function<void(const std::string&)> write;  // shows text as it is (no newline added)
  std::function<double()> clock;                  // seconds, steady
  std::function<int()> columns;                   // the terminal's width
  bool tty = false;                               // a terminal: bars redrawn in place
};
// Installs `console` for its lifetime (the previous one is restored after). Not for concurrent use.
class ScopedConsole {
 public:
  explicit ScopedConsole(Console console);
  ~ScopedConsole();
  ScopedConsole(const ScopedConsole&) = delete;
  ScopedConsole& operator=(const ScopedConsole&) = delete;

 private:
  Console previous_;
};

// The plan of a whole run, for its ETA: the batches each phase (e.g. "train", "val", "test") will run
// and how long the batches done so far took. The remaining time is the sum over phases of the batches
// left times that phase's measured seconds per batch; a phase not timed yet is estimated from the timed
// ones through the relative `cost` of its batches (an evaluation batch, forward only, costs about a
// third of a training batch). Fed by the Progress bars given the plan.
class RunPlan {
 public:
  void add(const std::string& phase, int64_t batches, double cost = 1);
  void record(const std::string& phase, int64_t batches, double seconds);
  // Seconds left; NaN while no batch has been timed. With a pass in progress (not yet recorded) of
  // `pass_total` batches of `phase`, `done` of them in `seconds`: its own batches left at its own rate
  // (so that the run's ETA is never below the pass's), the rest at the phases' rates, its batches done
  // counted in its phase's rate.
  double remaining_seconds(const std::string& phase = "", int64_t done = 0, double seconds = 0,
                           int64_t pass_total = 0) const;

 private:
  struct Phase {
    int64_t planned = 0, done = 0;
    double seconds = 0, cost = 1;
  };
  std::map<std::string, Phase> phases_;
};

constexpr double kPlainLineSeconds = 5;  // without a terminal: a progress line this often
constexpr double kRedrawSeconds = 0.2;   // on a terminal: at most this often

// One pass's bar (see the file comment). `total` batches; `plan` (may be null) is fed this pass's work as
// `phase` and gives the run's ETA. A bar still shown when the Progress ends is cleared.
class Progress {
 public:
  Progress(std::string label, int64_t total, bool quiet, RunPlan* plan = nullptr, std::string phase = "");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  // An evaluation pass: `done` batches, `images` images so far.
  void update(int64_t done, int64_t images);
  // A training pass: also the running loss and accuracy.
  void update(int64_t done, int64_t images, double loss, double accuracy);
  // The pass's last line: "label summary", on stderr (not when quiet) and in the RunLog.
  void finish(const std::string& summary);

 private:
  void show(int64_t done, int64_t images, const std::string& running);
  void record();  // this pass's batches into the plan, once

  std::string label_, phase_;
  int64_t total_, done_ = 0;
  bool quiet_, recorded_ = false;
  RunPlan* plan_;
  double start_, elapsed_ = 0, last_print_ = -1;
};

double now_seconds();         // a steady clock, for durations
double wall_clock_seconds();  // seconds since 1970 (the system clock)
// "0:07", "12:34", "1:02:03"; "--:--" for NaN or negative.
std::string format_duration(double seconds);

}  // namespace experiment
