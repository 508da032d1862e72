// The progress display as text: a fake clock and a string sink stand for stderr. On a terminal each redraw
// and the finished line start by clearing the line, a message() clears a bar shown first, the bar narrows
// so that the numbers fit the terminal's width; without a terminal a plain line comes at the first batch
// and then every kPlainLineSeconds. The ETAs: of the pass (elapsed * left / done) and of the whole run
// (RunPlan).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>

#include "experiment/progress.h"

namespace {

using namespace experiment;

const std::string kClear = "\r\x1b[K";

// A console whose output is `text` and whose clock is `now`.
struct FakeConsole {
  std::string text;
  double now = 0;
  int columns = 200;
  Console console(bool tty) {
    Console c;
    c.write = [this](const std::string& s) { text += s; };
    c.clock = [this] { return now; };
    c.columns = [this] { return columns; };
    c.tty = tty;
    return c;
  }
  std::string take() { return std::exchange(text, ""); }
};

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Progress, DurationsAreMinutesSecondsOrHours) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(65.4), "1:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(NAN), "--:--");
  EXPECT_EQ(format_duration(-1), "--:--");
}

TEST(Progress, ATrainingBarShowsTheEtaOfItsPassAndOfTheWholeRun) {
  FakeConsole fake;
  const ScopedConsole scoped(fake.console(true));
  RunPlan plan;
  plan.add("train", 10);          // two epochs of 5 batches
  plan.add("val", 4, 1.0 / 3);    // two epochs of 2 batches, a third of a training batch each
  Progress progress("epoch 1/2 train", 5, false, &plan, "train");
  fake.now = 2;
  progress.update(1, 16, 0.5, 0.75);
  // The pass: 2 s for 1 of 5 batches -> 8 s left. The run: 9 train batches at 2 s, 4 val batches at
  // 2/3 s (not timed yet: a third of the train's rate) = 20.7 s.
  EXPECT_EQ(fake.take(), kClear + "epoch 1/2 train [====>                   ] 1/5 loss 0.5000 acc 0.750 | 8.0 img/s | "
                                  "ETA 0:08, run 0:21");
  fake.now = 2.1;  // within kRedrawSeconds: not redrawn
  progress.update(2, 32, 0.5, 0.75);
  EXPECT_EQ(fake.take(), "");
  fake.now = 10;  // the last batch is always drawn, and the pass is then in the plan
  progress.update(5, 80, 0.4, 0.8);
  EXPECT_EQ(fake.take(), kClear + "epoch 1/2 train [========================] 5/5 loss 0.4000 acc 0.800 | 8.0 img/s | "
                                  "ETA 0:00, run 0:13");  // 5 train batches at 2 s + 4 val at 2/3 s
  EXPECT_NEAR(plan.remaining_seconds(), 5 * 2 + 4 * 2.0 / 3, 1e-9);
  {
    // The validation pass (an evaluation bar: no loss or accuracy) replaces the train bar; its own rate
    // takes over from the estimate: 1 batch in 1 s -> 3 val batches at 1 s + 5 train batches at 2 s left.
    Progress val("epoch 1/2 val", 2, false, &plan, "val");
    fake.now = 11;
    val.update(1, 16);
    EXPECT_EQ(fake.take(), kClear + "epoch 1/2 val [============>           ] 1/2 | 16.0 img/s | ETA 0:01, run 0:13");
    fake.now = 12;
    val.update(2, 32);
    fake.take();
  }
  EXPECT_EQ(fake.take(), kClear);  // the bar is cleared when its pass ends
  progress.finish("loss 0.4000 acc 0.800 | val loss 0.6000 acc 0.700");
  EXPECT_EQ(fake.take(), "epoch 1/2 train loss 0.4000 acc 0.800 | val loss 0.6000 acc 0.700\n");
  EXPECT_NEAR(plan.remaining_seconds(), 5 * 2 + 2 * 1, 1e-9);
}

TEST(Progress, TheRunsEtaIsNeverBelowThePasss) {
  FakeConsole fake;
  const ScopedConsole scoped(fake.console(false));
  RunPlan plan;
  plan.add("train", 20);      // two epochs of 10 batches
  plan.record("train", 10, 10);  // the first at 1 s a batch
  plan.add("test", 1, 1.0 / 3);
  Progress progress("epoch 2/2 train", 10, false, &plan, "train");
  fake.now = 6;  // this epoch is slower: 3 s a batch
  progress.update(2, 32, 0.5, 0.5);
  // The pass: 8 batches at its own 3 s = 24 s; then the test batch at a third of the train's 16 s / 12 batches.
  EXPECT_EQ(fake.take(), "epoch 2/2 train 2/10 loss 0.5000 acc 0.500 | 5.3 img/s | ETA 0:24, run 0:24\n");
  EXPECT_NEAR(plan.remaining_seconds("train", 2, 6, 10), 24 + 16.0 / 12 / 3, 1e-9);
}

TEST(Progress, EveryDrawClearsTheLineSoAShorterLineLeavesNothingBehind) {
  FakeConsole fake;
  const ScopedConsole scoped(fake.console(true));
  Progress progress("cam", 1000, false);
  fake.now = 1;
  progress.update(1, 1000000);  // a long rate
  fake.now = 2;
  progress.update(2, 2);  // a short one
  const std::string text = fake.take();
  EXPECT_EQ(count(text, kClear), 2u) << text;
  EXPECT_EQ(text.rfind(kClear), text.find(kClear + "cam [>", 1)) << text;
  EXPECT_EQ(text.find("loss"), std::string::npos) << "no placeholder loss on an evaluation bar";
  // A message while the bar is shown clears it first; the next one (no bar shown) does not clear.
  message("skipped an image\n");
  message("and another\n");
  EXPECT_EQ(fake.take(), kClear + "skipped an image\nand another\n");
  // The finished line clears a bar shown.
  fake.now = 3;
  progress.update(3, 3);
  fake.take();
  progress.finish("3 images");
  EXPECT_EQ(fake.take(), kClear + "cam 3 images\n");
}

TEST(Progress, TheBarNarrowsSoThatTheNumbersFitTheTerminal) {
  FakeConsole fake;
  const ScopedConsole scoped(fake.console(true));
  Progress progress("test", 4, false);
  fake.now = 1;
  fake.columns = 50;  // 49 usable - 31 of text - 4 of brackets and spaces: a bar of 14
  progress.update(1, 16);
  EXPECT_EQ(fake.take(), kClear + "test [===>          ] 1/4 | 16.0 img/s | ETA 0:03");
  fake.now = 2;
  fake.columns = 40;  // no room for a bar of 10: the numbers alone
  progress.update(2, 32);
  EXPECT_EQ(fake.take(), kClear + "test 2/4 | 16.0 img/s | ETA 0:02");
  fake.now = 3;
  fake.columns = 20;  // not even for the numbers: cut to 19 columns
  progress.update(3, 48);
  EXPECT_EQ(fake.take(), kClear + "test 3/4 | 16.0 img");
}

TEST(Progress, WithoutATerminalAPlainLineComesFromTheFirstBatchThenEveryFewSeconds) {
  FakeConsole fake;
  const ScopedConsole scoped(fake.console(false));
  Progress progress("evaluate", 100, false);
  fake.now = 0.5;
  progress.update(1, 10);
  EXPECT_EQ(fake.take(), "evaluate 1/100 | 20.0 img/s | ETA 0:50\n");
  for (int b = 2; b < 10; ++b) {
    fake.now = 0.5 * b;  // up to 4.5 s: within kPlainLineSeconds of the first line
    progress.update(b, 10 * b);
  }
  EXPECT_EQ(fake.take(), "");
  fake.now = 6;
  progress.update(12, 120);
  EXPECT_EQ(fake.take(), "evaluate 12/100 | 20.0 img/s | ETA 0:44\n");
  fake.now = 10.9;
  progress.update(20, 200);
  EXPECT_EQ(fake.take(), "");
  fake.now = 11.1;
  progress.update(21, 210);
  EXPECT_EQ(count(fake.take(), "\n"), 1u);
  progress.finish("100 images");
  EXPECT_EQ(fake.take(), "evaluate 100 images\n");  // no terminal codes anywhere
}

TEST(Progress, QuietShowsNothingButStillFeedsThePlan) {
  FakeConsole fake;
  const ScopedConsole scoped(fake.console(true));
  RunPlan plan;
  plan.add("test", 4);
  EXPECT_TRUE(std::isnan(plan.remaining_seconds()));  // nothing timed yet
  {
    Progress progress("test", 4, true, &plan, "test");
    fake.now = 3;
    progress.update(1, 8);
  }
  EXPECT_EQ(fake.take(), "");
  EXPECT_NEAR(plan.remaining_seconds(), 3 * 3.0, 1e-9);  // the pass ended early: its batch timed, 3 left
}

}  // namespace
