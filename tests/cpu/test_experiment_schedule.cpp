// The training options users of timm and Keras expect: learning-rate schedules (experiment/lr_schedule.h)
// against hand-computed values and against timm's and PyTorch's own schedulers, the monitored metric
// (--best-metric), recipes (--recipe), and how the new settings travel through args.json, resume, checkpoint
// metadata and summary.csv (experiment/run_files.h, experiment/curves.h).
//
// The timm and PyTorch values below were printed by timm 0.9.16 and PyTorch 1.13 (Debian's), e.g.
//   s = timm.scheduler.CosineLRScheduler(opt, t_initial=10, lr_min=1e-5); [s._get_lr(e)[0] for e in range(10)]
//   torch.optim.lr_scheduler.ReduceLROnPlateau(opt, 'min', factor=0.1, patience=1, threshold=0, min_lr=1e-6)
// with "%.17g", so they are the frameworks' doubles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "experiment/curves.h"
#include "experiment/flags.h"
#include "experiment/lr_schedule.h"
#include "experiment/run_files.h"
#include "experiment/trainer.h"
#include "support/error_of.h"

namespace {

using namespace experiment;
using test_support::error_of;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

LrScheduleOptions schedule(const std::string& sched, double lr = 1e-3) {
  LrScheduleOptions o;
  o.sched = sched;
  o.lr = lr;
  return o;
}

// Each epoch's learning rate (no warm-up), the plateau state advanced by `improved[e]` after epoch e.
std::vector<double> epoch_lrs(const LrScheduleOptions& o, int64_t epochs, const std::vector<bool>& improved = {}) {
  std::vector<double> lrs;
  PlateauState plateau;
  for (int64_t e = 0; e < epochs; ++e) {
    lrs.push_back(epoch_lr(o, e, plateau));
    if (static_cast<size_t>(e) < improved.size()) plateau = plateau_after_epoch(o, plateau, improved[static_cast<size_t>(e)]);
  }
  return lrs;
}

// Whether each value of a val-loss history improved on the best before it (the trainer's rule).
std::vector<bool> improvements(const std::string& metric, const std::vector<double>& history) {
  std::vector<bool> improved;
  double best = metric_none_yet(metric);
  for (double v : history) {
    improved.push_back(metric_improved(metric, v, best));
    if (improved.back()) best = v;
  }
  return improved;
}

void expect_lrs(const std::vector<double>& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t e = 0; e < actual.size(); ++e) EXPECT_DOUBLE_EQ(actual[e], expected[e]) << "epoch " << e;
}

TEST(LrSchedule, ConstantIsTheStudysLearningRate) {
  const LrScheduleOptions o = schedule("constant", 1e-5);
  for (int64_t e : {0, 1, 9, 1000}) EXPECT_EQ(epoch_lr(o, e, {}), 1e-5);
  EXPECT_EQ(scheduled_lr(o, 3, 123, 10, {}), 1e-5);
  EXPECT_EQ(static_cast<float>(scheduled_lr(o, 0, 0, 10, {})), 1e-5f) << "the float Adam had before schedules";
}

// lr 1e-3 to min_lr 1e-5 over 10 epochs: timm's CosineLRScheduler and torch's CosineAnnealingLR print the
// same values. By hand: epoch 5 is halfway, (1e-3 + 1e-5) / 2 = 5.05e-4.
TEST(LrSchedule, CosineMatchesTimmAndTorch) {
  LrScheduleOptions o = schedule("cosine");
  o.epochs = 10;
  o.min_lr = 1e-5;
  expect_lrs(epoch_lrs(o, 10), {0.001, 0.00097577297556610107, 0.00090546341221559902, 0.00079595369988477423,
                                0.00065796341221559902, 0.00050500000000000002, 0.00035203658778440108,
                                0.00021404630011522585, 0.00010453658778440107, 3.4227024433899005e-05});
  EXPECT_DOUBLE_EQ(epoch_lr(o, 5, {}), 5.05e-4);
  EXPECT_DOUBLE_EQ(epoch_lr(o, 10, {}), 1e-5) << "the horizon reaches min_lr";
}

// decay_epochs 3, decay_rate 0.5: timm's StepLRScheduler and torch's StepLR.
TEST(LrSchedule, StepMatchesTimmAndTorch) {
  LrScheduleOptions o = schedule("step");
  o.decay_epochs = 3;
  o.decay_rate = 0.5;
  expect_lrs(epoch_lrs(o, 10), {0.001, 0.001, 0.001, 0.0005, 0.0005, 0.0005, 0.00025, 0.00025, 0.00025, 0.000125});
}

// A val-loss history; our patience 2 is torch's (and timm's) patience 1, min_lr 1e-6.
TEST(LrSchedule, PlateauMatchesTorchReduceLrOnPlateau) {
  const std::vector<double> history = {1.0, 0.9, 0.95, 0.92, 0.91, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91};
  LrScheduleOptions o = schedule("plateau");
  o.decay_rate = 0.1;
  o.patience_epochs = 2;
  o.min_lr = 1e-6;
  expect_lrs(epoch_lrs(o, 13, improvements("val_loss", history)),
             {0.001, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.0001, 0.0001, 1.0000000000000001e-05,
              1.0000000000000001e-05, 1.0000000000000002e-06, 1.0000000000000002e-06, 1.0000000000000002e-06});
  // The MURA paper's: patience 1 (torch's 0), lr 1e-4 divided by 10 after each epoch without improvement.
  o = schedule("plateau", 1e-4);
  o.patience_epochs = 1;
  expect_lrs(epoch_lrs(o, 6, improvements("val_loss", history)),
             {0.0001, 0.0001, 0.0001, 1.0000000000000001e-05, 1.0000000000000002e-06, 1.0000000000000002e-07});
}

// The plateau state by hand: patience 2; a decay resets the count; an improvement resets it too; at the
// floor nothing more is counted.
TEST(LrSchedule, PlateauStateByHand) {
  LrScheduleOptions o = schedule("plateau");
  o.patience_epochs = 2;
  o.min_lr = 1e-4;
  PlateauState s;
  s = plateau_after_epoch(o, s, false);
  EXPECT_EQ(s.wait, 1);
  EXPECT_EQ(s.reductions, 0);
  s = plateau_after_epoch(o, s, false);
  EXPECT_EQ(s.wait, 0);
  EXPECT_EQ(s.reductions, 1);
  EXPECT_DOUBLE_EQ(epoch_lr(o, 0, s), 1e-4);
  s = plateau_after_epoch(o, s, false);
  s = plateau_after_epoch(o, s, true);
  EXPECT_EQ(s.wait, 0);
  EXPECT_EQ(s.reductions, 1);
  s = plateau_after_epoch(o, plateau_after_epoch(o, s, false), false);
  EXPECT_EQ(s.reductions, 1) << "at min_lr already: no decay is counted";
  EXPECT_DOUBLE_EQ(epoch_lr(o, 0, {5, 0}), 1e-4) << "the floor";
  // Other schedules keep no plateau state.
  for (const char* sched : {"constant", "cosine", "step"}) {
    const PlateauState kept = plateau_after_epoch(schedule(sched), {2, 1}, false);
    EXPECT_EQ(kept.reductions, 2) << sched;
    EXPECT_EQ(kept.wait, 1) << sched;
  }
}

// Warm-up per step: 2 epochs of 4 steps = 8 steps, factor (s + 1) / 8, on top of the epoch's value.
TEST(LrSchedule, WarmupIsLinearPerStep) {
  LrScheduleOptions o = schedule("constant", 8e-3);
  o.warmup_epochs = 2;
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 0, 0, 4, {}), 1e-3);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 0, 3, 4, {}), 4e-3);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 1, 4, 4, {}), 5e-3);
  EXPECT_EQ(scheduled_lr(o, 1, 7, 4, {}), 8e-3) << "the warm-up's last step has the full value";
  EXPECT_EQ(scheduled_lr(o, 2, 8, 4, {}), 8e-3);
  EXPECT_EQ(warmup_factor(o, 100, 4), 1);
  o.sched = "cosine";
  o.epochs = 4;
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 1, 5, 4, {}), 8e-3 * (1 + std::cos(std::acos(-1.0) / 4)) / 2 * 6 / 8);
  o.warmup_epochs = 0;
  EXPECT_EQ(warmup_factor(o, 0, 4), 1);
}

TEST(LrSchedule, BadSettingsNameTheirFlag) {
  const auto error = [](const std::function<void(LrScheduleOptions&)>& change) {
    LrScheduleOptions o = schedule("step");
    change(o);
    return error_of([&] { check_lr_schedule(o); });
  };
  EXPECT_EQ(error([](LrScheduleOptions&) {}), "");
  EXPECT_TRUE(contains(error([](LrScheduleOptions& o) { o.sched = "linear"; }),
                       "--sched 'linear' is not one of: constant, cosine, step, plateau"));
  EXPECT_TRUE(contains(error([](LrScheduleOptions& o) { o.decay_rate = 10; }), "0.1 divides it by 10"));
  EXPECT_TRUE(contains(error([](LrScheduleOptions& o) { o.decay_rate = 0; }), "--decay-rate"));
  EXPECT_TRUE(contains(error([](LrScheduleOptions& o) { o.decay_epochs = 0; }), "--decay-epochs must be at least 1"));
  EXPECT_TRUE(contains(error([](LrScheduleOptions& o) { o.min_lr = 1; }), "--min-lr must be between 0 and --lr"));
  EXPECT_TRUE(contains(error([](LrScheduleOptions& o) { o.patience_epochs = 0; }), "--patience-epochs"));
  EXPECT_TRUE(contains(error([](LrScheduleOptions& o) { o.warmup_epochs = -1; }), "--warmup-epochs"));
}

TEST(BestMetric, DirectionNoneYetAndNaN) {
  EXPECT_EQ(best_metric_names(), (std::vector<std::string>{"val_loss", "val_auroc", "val_kappa"}));
  EXPECT_EQ(metric_none_yet("val_loss"), INFINITY);
  EXPECT_EQ(metric_none_yet("val_auroc"), -INFINITY);
  EXPECT_TRUE(metric_improved("val_loss", 0.5, INFINITY));
  EXPECT_TRUE(metric_improved("val_loss", 0.4, 0.5));
  EXPECT_FALSE(metric_improved("val_loss", 0.5, 0.5)) << "strictly better";
  EXPECT_TRUE(metric_improved("val_auroc", 0.7, 0.6));
  EXPECT_FALSE(metric_improved("val_auroc", 0.6, 0.7));
  EXPECT_TRUE(metric_improved("val_kappa", -0.2, -INFINITY));
  EXPECT_FALSE(metric_improved("val_auroc", NAN, -INFINITY)) << "an undefined AUROC never improves";
  EXPECT_FALSE(metric_improved("val_loss", NAN, INFINITY));
}

// --- Recipes ---

TEST(Recipe, MuraPaperSetsItsDefaultsAndGivenFlagsWin) {
  const std::vector<std::string> densenets = {"densenet201", "densenet169", "densenet121"};
  TrainOptions command;
  command.recipe = "mura-paper";
  command.lr = 3e-4;
  const std::set<std::string> given = {"--recipe", "--lr"};
  const TrainOptions o = apply_recipe(command, "densenet201", densenets,
                                      [&](const std::string& flag) { return given.count(flag) > 0; });
  EXPECT_EQ(o.arch, "densenet169");
  EXPECT_EQ(o.input_size, 320);
  EXPECT_EQ(o.preprocess, "torch");
  EXPECT_TRUE(o.augment);
  EXPECT_EQ(o.rotation, 30);
  EXPECT_TRUE(o.class_weights);
  EXPECT_EQ(o.optimizer, "adam-torch");
  EXPECT_EQ(o.sched, "plateau");
  EXPECT_EQ(o.decay_rate, 0.1);
  EXPECT_EQ(o.patience_epochs, 1);
  EXPECT_EQ(o.best_metric, "val_loss");
  EXPECT_EQ(o.batch_size, 8);
  EXPECT_EQ(o.lr, 3e-4) << "given: the command's";
  EXPECT_EQ(o.recipe, "mura-paper");
  EXPECT_EQ(o.epochs, TrainOptions().epochs) << "not a recipe's setting";

  // train_irv2 keeps its net; the rest applies.
  const TrainOptions irv2 = apply_recipe(command, "inception_resnet_v2", {"inception_resnet_v2"},
                                         [&](const std::string& flag) { return flag == "--recipe"; });
  EXPECT_EQ(irv2.arch, TrainOptions().arch) << "the command's (train_main sets the program's default)";
  EXPECT_EQ(irv2.input_size, 320);
  EXPECT_EQ(irv2.lr, 1e-4);
  EXPECT_FALSE(contains(recipe_flags_text("mura-paper", "inception_resnet_v2", {"inception_resnet_v2"}), "--arch"));
  EXPECT_EQ(recipe_flags_text("mura-paper", "densenet201", densenets),
            "--arch densenet169 --input-size 320 --head gap --flavor torch --preprocess torch --resize bilinear "
            "--augment --rotation 30 --class-weights --optimizer adam-torch --lr 0.0001 --sched plateau "
            "--decay-rate 0.1 --patience-epochs 1 --best-metric val_loss --batch-size 8");

  // study: the defaults, for the same settings (so --config X --recipe study resets them).
  TrainOptions paper = o;
  paper.recipe = "study";
  const TrainOptions study = apply_recipe(paper, "densenet201", densenets,
                                          [&](const std::string& flag) { return flag == "--recipe"; });
  TrainOptions expected;
  expected.recipe = "study";
  expected.arch = "densenet201";
  EXPECT_EQ(train_options_json(study, {}), train_options_json(expected, {}));
  EXPECT_TRUE(contains(error_of([&] { recipe_settings("timm", "densenet201", densenets); }),
                       "--recipe 'timm' is not one of: study, mura-paper"));
}

// --- args.json, resume, checkpoints, summary.csv ---

TrainOptions with_new_settings() {
  TrainOptions o;
  o.recipe = "mura-paper";
  o.weight_decay = 0.05;
  o.sched = "cosine";
  o.warmup_epochs = 2;
  o.decay_epochs = 7;
  o.decay_rate = 0.5;
  o.min_lr = 1e-7;
  o.patience_epochs = 3;
  o.best_metric = "val_kappa";
  return o;
}

TEST(TrainingOptions, NewSettingsGoThroughArgsJsonAndOlderFilesGetDefaults) {
  const TrainOptions o = with_new_settings();
  const std::string text = train_options_json(o, {});
  for (const char* key : {"\"recipe\": \"mura-paper\"", "\"weight_decay\": 0.05", "\"sched\": \"cosine\"",
                          "\"warmup_epochs\": 2", "\"decay_epochs\": 7", "\"decay_rate\": 0.5", "\"min_lr\": 1e-07",
                          "\"patience_epochs\": 3", "\"best_metric\": \"val_kappa\""})
    EXPECT_TRUE(contains(text, key)) << key << " in " << text;
  EXPECT_EQ(train_options_json(parse_train_options(text, "args.json"), {}), text);
  const TrainOptions older = parse_train_options("{\"lr\": 0.001, \"format\": \"mura-engine-args-v1\"}", "old.json");
  EXPECT_EQ(older.sched, "constant");
  EXPECT_EQ(older.weight_decay, 0);
  EXPECT_EQ(older.best_metric, "val_loss");
  EXPECT_EQ(older.recipe, "study");
}

// The schedule, its settings, the weight decay, the recipe and the best metric shape the run: none may
// change on --resume; nor may --epochs under cosine (its horizon).
TEST(TrainingOptions, ResumeRefusesChangedScheduleSettings) {
  TrainOptions run = with_new_settings();
  run.out = "runs/x";
  for (const char* key : {"recipe", "weight_decay", "sched", "warmup_epochs", "decay_epochs", "decay_rate", "min_lr",
                          "patience_epochs", "best_metric"})
    EXPECT_FALSE(resume_may_change(key)) << key;
  TrainOptions command;
  command.out = "runs/x";
  command.resume = true;
  const std::vector<std::string> flags = {"--recipe", "--weight-decay", "--sched", "--warmup-epochs", "--decay-epochs",
                                          "--decay-rate", "--min-lr", "--patience-epochs", "--best-metric"};
  const std::string error = error_of([&] {
    resumed_options(command, run, [&](const std::string& flag) {
      return std::find(flags.begin(), flags.end(), flag) != flags.end();
    });
  });
  for (const std::string& flag : flags) EXPECT_TRUE(contains(error, "used " + flag + " ")) << flag << ": " << error;
  EXPECT_TRUE(contains(error, "used --sched cosine but this command says --sched constant")) << error;

  // Not given: the run's own. --epochs under cosine may not change; under the others it may.
  const auto only_epochs = [](const std::string& flag) { return flag == "--epochs"; };
  command.epochs = run.epochs;
  EXPECT_EQ(resumed_options(command, run, only_epochs).sched, "cosine");
  command.epochs = run.epochs + 5;
  EXPECT_TRUE(contains(error_of([&] { resumed_options(command, run, only_epochs); }),
                       "follows --sched cosine over --epochs 10, which cannot change on resume"));
  // The run's schedule decides: a command that names another is refused for that alone.
  run.sched = "plateau";
  EXPECT_EQ(resumed_options(command, run, only_epochs).epochs, run.epochs + 5);
  command.sched = "cosine";
  const std::string changed = error_of([&] {
    resumed_options(command, run, [](const std::string& flag) { return flag == "--epochs" || flag == "--sched"; });
  });
  EXPECT_TRUE(contains(changed, "used --sched plateau but this command says --sched cosine")) << changed;
  EXPECT_FALSE(contains(changed, "follows --sched cosine")) << changed;
}

std::map<std::string, std::string> good_metadata() {
  return {{"format", "mura-engine-checkpoint-v1"}, {"arch", "densenet_tiny"}, {"head", "gap"}, {"flavor", "torch"},
          {"input_size", "48"}, {"preprocess", "study"}, {"resize", "nearest"}};
}

TEST(CheckpointMetadata, BestMetricAndPlateauState) {
  // A checkpoint from before --best-metric: val_loss, its best_val_loss.
  auto m = good_metadata();
  m["best_val_loss"] = "0.25";
  CheckpointSettings s = checkpoint_settings(m, "old.safetensors");
  EXPECT_EQ(s.best_metric, "val_loss");
  EXPECT_EQ(s.best_value, 0.25);
  EXPECT_EQ(s.lr_reductions, 0);
  // Another metric: its own key, -inf before any epoch.
  m = good_metadata();
  m["best_metric"] = "val_auroc";
  s = checkpoint_settings(m, "c");
  EXPECT_EQ(s.best_value, -INFINITY);
  m["best_val_auroc"] = "0.875";
  m["lr_reductions"] = "2";
  m["plateau_wait"] = "1";
  s = checkpoint_settings(m, "c");
  EXPECT_EQ(s.best_value, 0.875);
  EXPECT_EQ(s.lr_reductions, 2);
  EXPECT_EQ(s.plateau_wait, 1);
  struct Case {
    std::string key, value, expect;
  };
  const std::vector<Case> cases = {
      {"best_metric", "accuracy", "c: metadata best_metric 'accuracy' is not one of: val_loss, val_auroc, val_kappa"},
      {"best_val_auroc", "1.5", "c: metadata best_val_auroc '1.5' is not a number in [0, 1] or -inf"},
      {"best_val_auroc", "nan", "is not a number in [0, 1] or -inf"},
      {"lr_reductions", "-1", "metadata lr_reductions -1 is out of range"},
      {"plateau_wait", "x", "metadata plateau_wait 'x' is not an integer"},
  };
  for (const Case& c : cases) {
    auto bad = m;
    bad[c.key] = c.value;
    EXPECT_TRUE(contains(error_of([&] { checkpoint_settings(bad, "c"); }), c.expect)) << c.key << " " << c.value;
  }
  m["best_metric"] = "val_kappa";
  m["best_val_kappa"] = "-0.5";
  EXPECT_EQ(checkpoint_settings(m, "c").best_value, -0.5);
  m["best_val_kappa"] = "-1.5";
  EXPECT_TRUE(contains(error_of([&] { checkpoint_settings(m, "c"); }), "is not a number in [-1, 1] or -inf"));
}

TEST(SummaryCsv, ValAurocAndKappaColumnsAndOlderFiles) {
  EpochRow r;
  r.epoch = 1;
  r.train_loss = 0.5;
  r.val_loss = 0.25;
  r.val_auroc = 0.8125;
  r.val_kappa = -0.125;
  r.lr = 1e-4;
  const std::string text = summary_csv({r});
  EXPECT_EQ(text.substr(0, text.find('\n')),
            "epoch,train_loss,train_acc,val_loss,val_acc,val_auroc,val_kappa,epoch_seconds,images_per_s,lr");
  const std::vector<EpochRow> back = parse_summary_csv(text, "s.csv");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].val_auroc, 0.8125);
  EXPECT_EQ(back[0].val_kappa, -0.125);
  EXPECT_EQ(back[0].lr, 1e-4);
  EXPECT_EQ(summary_csv(back), text);
  // A file from before the columns: they read as NaN; a missing older column is an error.
  const std::vector<EpochRow> old = parse_summary_csv(
      "epoch,train_loss,train_acc,val_loss,val_acc,epoch_seconds,images_per_s,lr\n1,0.5,0.75,0.25,0.5,1.5,100,1e-05\n",
      "old.csv");
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(old[0].val_loss, 0.25);
  EXPECT_EQ(old[0].lr, 1e-5);
  EXPECT_TRUE(std::isnan(old[0].val_auroc));
  EXPECT_TRUE(std::isnan(old[0].val_kappa));
  EXPECT_TRUE(contains(error_of([] { parse_summary_csv("epoch,train_loss\n1,0.5\n", "s.csv"); }),
                       "s.csv:1: no column 'train_acc'"));
  EXPECT_TRUE(contains(error_of([&] { parse_summary_csv(text + "2,0.5\n", "s.csv"); }), "s.csv:3: expected 10 fields, got 2"));
  // TensorBoard: the validation run's auroc and kappa after loss and accuracy, where known.
  const std::vector<ScalarEvent> events = epoch_scalar_events({r, old[0]}).validation;
  ASSERT_EQ(events[0].values.size(), 4u);
  EXPECT_EQ(events[0].values[2].first, "auroc");
  EXPECT_EQ(events[0].values[2].second, 0.8125f);
  EXPECT_EQ(events[0].values[3].first, "kappa");
  EXPECT_EQ(events[1].values.size(), 2u);
}

// The flags: parsed into the options, with their ranges.
TEST(TrainFlags, ScheduleWeightDecayBestMetricAndRecipe) {
  TrainOptions o;
  FlagParser f("train", "");
  add_train_flags(f, o, {"densenet201", "densenet169"});
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--sched", "step", "--warmup-epochs", "1", "--decay-epochs", "4",
                                               "--decay-rate", "0.5", "--min-lr", "1e-6", "--patience-epochs", "2",
                                               "--weight-decay", "0.01", "--best-metric", "val_auroc", "--recipe",
                                               "mura-paper"}));
  EXPECT_EQ(o.sched, "step");
  EXPECT_EQ(o.warmup_epochs, 1);
  EXPECT_EQ(o.decay_epochs, 4);
  EXPECT_EQ(o.decay_rate, 0.5);
  EXPECT_EQ(o.min_lr, 1e-6);
  EXPECT_EQ(o.patience_epochs, 2);
  EXPECT_EQ(o.weight_decay, 0.01);
  EXPECT_EQ(o.best_metric, "val_auroc");
  EXPECT_EQ(o.recipe, "mura-paper");
  // --help wraps its text: compare with each run of white space as one space.
  std::string help;
  for (const char c : f.help())
    if (!std::isspace(static_cast<unsigned char>(c)) || (!help.empty() && help.back() != ' ')) help += std::isspace(static_cast<unsigned char>(c)) ? ' ' : c;
  EXPECT_TRUE(contains(help, "mura-paper (the MURA paper's: --arch densenet169 --input-size 320")) << f.help();
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--weight-decay", "-1"}, {"--decay-rate", "2"}, {"--patience-epochs", "0"}, {"--warmup-epochs", "-2"}}) {
    TrainOptions p;
    FlagParser g("train", "");
    add_train_flags(g, p, {"densenet201"});
    EXPECT_TRUE(contains(error_of([&] { g.parse(bad); }), bad[0])) << bad[0];
  }
}

}  // namespace
