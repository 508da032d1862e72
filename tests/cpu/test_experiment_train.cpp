// The shared trainer end to end on a small synthetic MURA with a tiny DenseNet at 64 px: it learns,
// resuming equals an uninterrupted run, bad --data / --weights fail before --out is created, and the
// written metrics agree with scikit-learn (when Debian's python3-sklearn is installed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "data/io_util.h"
#include "engine/serialize.h"
#include "experiment/lr_schedule.h"
#include "experiment/trainer.h"
#include "support/temp_path.h"
#include "support/tiny_training.h"

namespace {

namespace fs = std::filesystem;
using namespace experiment;

std::string temp_dir(const std::string& name) { return test_support::fresh_temp_path("experiment_train", name); }

// One synthetic set for the whole binary (about 210 images, generated in 1-2 s).
const std::string& synthetic_dir() {
  static const std::string dir = [] {
    const std::string d = ::testing::TempDir() + "/experiment_train_synth_" + std::to_string(::getpid());
    fs::remove_all(d);
    resolve_data_root("", d, 56);
    return d;
  }();
  return dir;
}

TrainOptions tiny_options(const std::string& out) {
  TrainOptions o = test_support::tiny_train_options(synthetic_dir(), 64);
  o.workers = 2;
  o.out = out;
  return o;
}

TEST(Trainer, LearnsTheTrainingSet) {
  TrainOptions o = tiny_options(temp_dir("learns"));
  o.images = 0;
  o.epochs = 8;
  o.flavor = "torch";  // BN running statistics (momentum 0.1) settle within these few steps; Keras's 0.01 do not
  o.checkpoint_hist = 1;  // epoch_008 kept beside last and best
  const TrainResult r = run_training(o);
  ASSERT_EQ(r.rows.size(), 8u);
  EXPECT_LT(r.rows.back().train_loss, 0.8 * r.rows.front().train_loss);
  // Re-evaluated on its own training images in eval mode, the net is far above chance.
  const CheckpointInfo c = read_checkpoint(o.out + "/checkpoints/last.safetensors");
  auto net = net_from_checkpoint(c);
  const data::Split split = data::read_split(o.out + "/split");
  const EvaluationResult train = predict_entries(*net, synthetic_dir() + "/MURA-v1.1", split.train,
                                                 eval_loader_options(c.metadata, 32, 2), engine::Device::cpu(), "train", true);
  EXPECT_GT(train.overall.image.auroc, 0.8);
  // The test report exists and is complete.
  ASSERT_TRUE(r.tested);
  EXPECT_EQ(r.test.images.size(), split.test.size());
  for (const char* f : {"/test/metrics.json", "/test/report.md", "/test/predictions_images.csv",
                        "/test/predictions_studies.csv", "/summary.csv", "/args.json", "/curves.svg",
                        "/split/train.csv", "/checkpoints/best.safetensors", "/checkpoints/epoch_008.safetensors",
                        "/train.log"})
    EXPECT_TRUE(fs::is_regular_file(o.out + f)) << f;
  fs::remove_all(o.out);
}

// The point of training: images the net never saw are classified well above chance. A larger synthetic
// set (200 train patients, about 740 images) so that the 74-image test split measures something.
TEST(Trainer, LearnsToClassifyHeldOutImages) {
  const std::string synth = temp_dir("synth200");
  TrainOptions o = tiny_options(temp_dir("heldout"));
  o.synthetic_dir = synth;
  o.synthetic_patients = 200;
  o.epochs = 8;
  o.lr = 2e-3;
  o.resize = "area";
  o.flavor = "torch";
  o.test_checkpoint = "best";  // the epoch of lowest val loss: one noisy last epoch does not decide the test
  const TrainResult r = run_training(o);
  ASSERT_TRUE(r.tested);
  ASSERT_GE(r.test.images.size(), 60u);
  const auto& image = r.test.overall.image;
  const double majority = std::max(image.positives, image.count - image.positives) / static_cast<double>(image.count);
  EXPECT_GT(image.accuracy, majority + 0.1) << "chance (the majority class) is " << majority;
  EXPECT_GT(image.auroc, 0.75);
  EXPECT_GT(r.test.overall.study.kappa, 0.3);
  fs::remove_all(o.out);
  fs::remove_all(synth);
}

TEST(Trainer, ResumeEqualsUninterrupted) {
  TrainOptions o = tiny_options(temp_dir("straight"));
  o.images = 60;
  o.epochs = 3;
  const TrainResult straight = run_training(o);

  TrainOptions a = tiny_options(temp_dir("resumed"));
  a.images = 60;
  a.epochs = 2;
  run_training(a);
  a.epochs = 3;
  a.resume = true;
  const TrainResult resumed = run_training(a);

  ASSERT_EQ(straight.rows.size(), 3u);
  ASSERT_EQ(resumed.rows.size(), 3u);
  // Epochs 1-2 of the resumed run come back from summary.csv (9 significant digits); epoch 3 is computed
  // after the resume and must be bit-identical.
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(straight.rows[i].train_loss, resumed.rows[i].train_loss, 1e-8) << "epoch " << i + 1;
    EXPECT_NEAR(straight.rows[i].val_loss, resumed.rows[i].val_loss, 1e-8) << "epoch " << i + 1;
  }
  EXPECT_EQ(straight.rows[2].train_loss, resumed.rows[2].train_loss);
  EXPECT_EQ(straight.rows[2].val_loss, resumed.rows[2].val_loss);
  EXPECT_EQ(straight.rows[2].train_acc, resumed.rows[2].train_acc);
  std::map<std::string, std::string> ma, mb;
  const auto ta = engine::load_tensors(o.out + "/checkpoints/last.safetensors", &ma);
  const auto tb = engine::load_tensors(a.out + "/checkpoints/last.safetensors", &mb);
  EXPECT_EQ(ma.at("step"), mb.at("step"));
  EXPECT_EQ(ma.at("epoch"), "3");
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) {
    const std::vector<float> x = t.to_vector(), y = tb.at(name).to_vector();
    ASSERT_EQ(x, y) << name;
  }
  EXPECT_EQ(straight.test.overall.image.accuracy, resumed.test.overall.image.accuracy);
  fs::remove_all(o.out);
  fs::remove_all(a.out);
}

// A schedule with state (plateau on val AUROC, patience 1), a per-step warm-up and AdamW: 2 + 1 epochs
// equal 3 bit for bit, and each epoch's lr in summary.csv is the schedule's, replayed from the rows.
TEST(Trainer, ResumeContinuesTheScheduleExactly) {
  const auto options = [](const std::string& name, int64_t epochs) {
    TrainOptions o = tiny_options(temp_dir(name));
    o.images = 60;
    o.epochs = epochs;
    o.sched = "plateau";
    o.patience_epochs = 1;
    o.decay_rate = 0.5;
    o.warmup_epochs = 1;
    o.weight_decay = 0.05;
    o.best_metric = "val_auroc";
    return o;
  };
  const TrainOptions o = options("sched_straight", 3);
  const TrainResult straight = run_training(o);
  TrainOptions a = options("sched_resumed", 2);
  run_training(a);
  a.epochs = 3;
  a.resume = true;
  const TrainResult resumed = run_training(a);
  ASSERT_EQ(straight.rows.size(), 3u);
  ASSERT_EQ(resumed.rows.size(), 3u);
  EXPECT_EQ(straight.rows[2].train_loss, resumed.rows[2].train_loss);
  EXPECT_EQ(straight.rows[2].val_loss, resumed.rows[2].val_loss);
  EXPECT_EQ(straight.rows[2].lr, resumed.rows[2].lr);
  std::map<std::string, std::string> ma, mb;
  const auto ta = engine::load_tensors(o.out + "/checkpoints/last.safetensors", &ma);
  const auto tb = engine::load_tensors(a.out + "/checkpoints/last.safetensors", &mb);
  for (const char* key : {"step", "best_metric", "best_val_auroc", "bad_epochs", "lr_reductions", "plateau_wait"})
    EXPECT_EQ(ma.at(key), mb.at(key)) << key;
  EXPECT_EQ(ma.at("best_metric"), "val_auroc");
  for (const auto& [name, t] : ta) ASSERT_EQ(t.to_vector(), tb.at(name).to_vector()) << name;

  // The lr column: the warm-up's last step (end of epoch 1) has the full value; then the plateau's.
  LrScheduleOptions schedule;
  schedule.sched = "plateau";
  schedule.lr = o.lr;
  schedule.patience_epochs = 1;
  schedule.decay_rate = 0.5;
  PlateauState plateau;
  double best = metric_none_yet("val_auroc");
  for (const EpochRow& r : straight.rows) {
    EXPECT_EQ(r.lr, static_cast<float>(epoch_lr(schedule, r.epoch - 1, plateau))) << "epoch " << r.epoch;
    const bool improved = metric_improved("val_auroc", r.val_auroc, best);
    if (improved) best = r.val_auroc;
    plateau = plateau_after_epoch(schedule, plateau, improved);
  }
  EXPECT_EQ(std::to_string(plateau.reductions), ma.at("lr_reductions"));
  const std::string summary = data::read_file_text(o.out + "/summary.csv");
  EXPECT_EQ(summary.substr(0, summary.find('\n')),
            "epoch,train_loss,train_acc,val_loss,val_acc,val_auroc,val_kappa,epoch_seconds,images_per_s,lr");
  const std::string args = data::read_file_text(o.out + "/args.json");
  for (const char* key : {"\"sched\": \"plateau\"", "\"weight_decay\": 0.05", "\"best_metric\": \"val_auroc\""})
    EXPECT_NE(args.find(key), std::string::npos) << key;
  // A CPU run records its GEMM's library and kernels (its last bits depend on them); a GPU run does not.
  const bool on_cpu = args.find("\"device_used\": \"cpu\"") != std::string::npos;
  EXPECT_EQ(args.find("\"cpu_gemm\": \"") != std::string::npos, on_cpu) << args;
  fs::remove_all(o.out);
  fs::remove_all(a.out);
}

// A run written before --best-metric, the schedules and the val_auroc/val_kappa columns (its checkpoint
// without best_metric, lr_reductions, plateau_wait; its summary.csv with 8 columns; its args.json without
// the new keys) still resumes, as a val_loss run with the constant schedule.
TEST(Trainer, ARunFromBeforeTheScheduleOptionsResumes) {
  TrainOptions o = tiny_options(temp_dir("older"));
  o.images = 60;
  o.epochs = 1;
  run_training(o);
  const std::string last = o.out + "/checkpoints/last.safetensors";
  std::map<std::string, std::string> metadata;
  const auto tensors = engine::load_tensors(last, &metadata);
  for (const char* key : {"best_metric", "lr_reductions", "plateau_wait"}) ASSERT_EQ(metadata.erase(key), 1u) << key;
  engine::NamedTensors named(tensors.begin(), tensors.end());
  engine::save_tensors(last, named, metadata);
  const std::string summary = o.out + "/summary.csv";
  const std::vector<EpochRow> rows = parse_summary_csv(data::read_file_text(summary), summary);
  ASSERT_EQ(rows.size(), 1u);
  char line[256];
  std::snprintf(line, sizeof line, "1,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", rows[0].train_loss, rows[0].train_acc,
                rows[0].val_loss, rows[0].val_acc, rows[0].seconds, rows[0].images_per_s, rows[0].lr);
  data::write_file_atomic(summary, std::string("epoch,train_loss,train_acc,val_loss,val_acc,epoch_seconds,images_per_s,lr\n") + line);
  std::string args = data::read_file_text(o.out + "/args.json");
  for (const char* key : {"recipe", "weight_decay", "sched", "warmup_epochs", "decay_epochs", "decay_rate", "min_lr",
                          "patience_epochs", "best_metric"}) {
    const size_t at = args.find(std::string("\"") + key + "\":");
    ASSERT_NE(at, std::string::npos) << key;
    args.erase(at, args.find('\n', at) - at + 1);
  }
  data::write_file_atomic(o.out + "/args.json", args);
  const TrainOptions older = read_train_options(o.out + "/args.json");
  EXPECT_EQ(older.sched, "constant");

  TrainOptions again = older;
  again.epochs = 2;
  again.resume = true;
  const TrainResult r = run_training(again);
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_TRUE(std::isnan(r.rows[0].val_auroc)) << "not in the older summary.csv";
  EXPECT_FALSE(std::isnan(r.rows[1].val_loss));
  std::map<std::string, std::string> after;
  engine::load_tensors(last, &after);
  EXPECT_EQ(after.at("best_metric"), "val_loss");
  EXPECT_EQ(after.at("epoch"), "2");
  fs::remove_all(o.out);
}

// --checkpoint-hist N: the epoch checkpoints of the last N epochs stay, older ones go after each epoch; it
// is recorded in args.json and may change on resume (0: last and best only; -1: every epoch).
TEST(Trainer, CheckpointHistKeepsTheLastNEpochs) {
  TrainOptions o = tiny_options(temp_dir("hist"));
  o.images = 60;
  o.input_size = 32;
  o.epochs = 3;
  o.checkpoint_hist = 2;
  run_training(o);
  const std::string ckpt = o.out + "/checkpoints/";
  const auto kept = [&] {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(ckpt)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  using Names = std::vector<std::string>;
  EXPECT_EQ(kept(), (Names{"best.safetensors", "epoch_002.safetensors", "epoch_003.safetensors", "last.safetensors"}));
  EXPECT_EQ(read_train_options(o.out + "/args.json").checkpoint_hist, 2);
  EXPECT_EQ(read_checkpoint(ckpt + "epoch_003.safetensors").metadata.at("epoch"), "3");

  o.resume = true;
  o.epochs = 5;
  o.checkpoint_hist = -1;
  run_training(o);
  EXPECT_EQ(kept(), (Names{"best.safetensors", "epoch_002.safetensors", "epoch_003.safetensors",
                           "epoch_004.safetensors", "epoch_005.safetensors", "last.safetensors"}));
  o.epochs = 6;
  o.checkpoint_hist = 0;
  run_training(o);
  EXPECT_EQ(kept(), (Names{"best.safetensors", "last.safetensors"}));
  EXPECT_EQ(read_train_options(o.out + "/args.json").checkpoint_hist, 0);
  fs::remove_all(o.out);
}

// RUN/train.log: the run's messages (those from before the folder existed too), the epoch summaries (also
// with --quiet) and the test line; a resumed run appends to it.
TEST(Trainer, TrainLogKeepsTheRunsMessagesAndGrowsOnResume) {
  TrainOptions o = tiny_options(temp_dir("log"));
  o.images = 60;
  o.input_size = 32;
  o.epochs = 1;
  run_training(o);
  const std::string first = data::read_file_text(o.out + "/train.log");
  for (const char* part : {"WARNING: no --weights", "densenet_tiny (gap head, keras BN) on cpu", "epoch 1/1 train loss ",
                           "test: image accuracy "})
    EXPECT_NE(first.find(part), std::string::npos) << part << " in\n" << first;
  EXPECT_EQ(first.find('\r'), std::string::npos) << "no terminal redraws";

  o.resume = true;
  o.epochs = 2;
  run_training(o);
  const std::string both = data::read_file_text(o.out + "/train.log");
  EXPECT_EQ(both.compare(0, first.size(), first), 0) << "appended:\n" << both;
  for (const char* part : {"resuming ", "epoch 2/2 train loss "})
    EXPECT_NE(both.find(part, first.size()), std::string::npos) << part << " in\n" << both;

  o.epochs = 3;
  o.input_size = 48;  // not the checkpoint's net: refused on resume, and the error is logged too
  EXPECT_THROW(run_training(o), engine::Error);
  const std::string failed = data::read_file_text(o.out + "/train.log");
  EXPECT_NE(failed.find("error: ", both.size()), std::string::npos) << failed;
  fs::remove_all(o.out);
}

TEST(Trainer, BadInputFailsBeforeTheOutputFolderExists) {
  const std::string junk = temp_dir("junk");
  fs::create_directories(junk);
  std::ofstream(junk + "/readme.txt") << "not MURA";
  std::ofstream(junk + "/bad.safetensors") << "this is not a safetensors file at all";

  struct Case {
    std::string data, weights, expect;
  };
  const std::vector<Case> cases = {
      {junk + "/missing", "", "--data"},
      {junk, "", ""},  // a folder that is not MURA: the index says so
      {"", junk + "/missing.safetensors", "--weights"},
      {"", junk + "/bad.safetensors", ""},
  };
  for (const Case& c : cases) {
    TrainOptions o = tiny_options(temp_dir("bad"));
    o.data = c.data;
    o.weights = c.weights;
    o.epochs = 1;
    o.images = 60;
    try {
      run_training(o);
      ADD_FAILURE() << "no error for data '" << c.data << "', weights '" << c.weights << "'";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
      EXPECT_GT(std::string(e.what()).size(), 30u) << e.what();
    }
    EXPECT_FALSE(fs::exists(o.out)) << "left " << o.out << " behind for data '" << c.data << "', weights '" << c.weights << "'";
  }
  fs::remove_all(junk);
}

TEST(Trainer, RefusesToOverwriteARunWithoutResume) {
  TrainOptions o = tiny_options(temp_dir("twice"));
  o.images = 60;
  o.epochs = 1;
  run_training(o);
  EXPECT_THROW(run_training(o), std::exception);
  fs::remove_all(o.out);
}

// A non-finite loss in the first epoch: no epoch finished, so there is no last.safetensors, and the message
// must not claim one is kept.
TEST(Trainer, ANonFiniteFirstEpochSaysNoCheckpointIsKept) {
  TrainOptions o = tiny_options(temp_dir("nonfinite_first"));
  o.images = 60;
  o.epochs = 2;
  o.lr = 1e35;  // the first Adam step moves every weight by about 1e35: the next step overflows
  o.optimizer = "adam-torch";
  ::testing::internal::CaptureStderr();
  const TrainResult r = run_training(o);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(r.nonfinite);
  EXPECT_TRUE(r.rows.empty());
  EXPECT_FALSE(fs::exists(o.out + "/checkpoints/last.safetensors"));
  EXPECT_TRUE(fs::exists(o.out + "/checkpoints/debug_nonfinite.safetensors"));
  EXPECT_NE(err.find("at epoch 1,"), std::string::npos) << err;
  EXPECT_NE(err.find("no checkpoint was written (no epoch finished), so there is no last.safetensors"), std::string::npos)
      << err;
  EXPECT_EQ(err.find("is kept"), std::string::npos) << err;
  fs::remove_all(o.out);
}

// summary.csv is read back on --resume: a field that is not wholly a number is an error naming the file,
// the line and the column (it once went to std::stod, which took "0.5abc" and threw a bare "stod").
TEST(Trainer, SummaryCsvIsParsedStrictly) {
  const std::string header = "epoch,train_loss,train_acc,val_loss,val_acc,epoch_seconds,images_per_s,lr\n";
  const auto rows = parse_summary_csv(header + "1,0.5,0.75,nan,0.5,1.5,100,1e-05\n2,inf,0.5,0.25,0.5,1,2,1e-05\n", "s.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(std::isnan(rows[0].val_loss));
  EXPECT_EQ(rows[1].epoch, 2);
  EXPECT_EQ(rows[0].lr, 1e-5);
  EXPECT_EQ(parse_summary_csv(summary_csv(rows), "again.csv").size(), 2u);
  struct Case {
    std::string row, expect;
  };
  const std::vector<Case> cases = {
      {"1,0.5abc,0.75,0.5,0.5,1.5,100,1e-05", "s.csv:2: train_loss '0.5abc' is not a number"},
      {"x,0.5,0.75,0.5,0.5,1.5,100,1e-05", "s.csv:2: epoch 'x' is not a positive integer"},
      {"0,0.5,0.75,0.5,0.5,1.5,100,1e-05", "s.csv:2: epoch '0' is not a positive integer"},
      {"1.5,0.5,0.75,0.5,0.5,1.5,100,1e-05", "epoch '1.5' is not a positive integer"},
      {"1,0.5,0.75,0.5,0.5,1.5,100,1e-05x", "lr '1e-05x' is not a number"},
      {"1,0.5,0.75,0.5,0.5,,100,1e-05", "epoch_seconds '' is not a number"},
  };
  for (const Case& c : cases) {
    try {
      parse_summary_csv(header + c.row + "\n", "s.csv");
      ADD_FAILURE() << "no error for " << c.row;
    } catch (const engine::Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
    }
  }
}

TEST(Flags, ParsesFormsAndRejectsUnknown) {
  TrainOptions o;
  FlagParser f("t", "test");
  add_train_flags(f, o, {"densenet201", "densenet121"});
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--epochs", "3", "--lr=0.5", "--augment", "--arch", "densenet121"}));
  EXPECT_EQ(o.epochs, 3);
  EXPECT_EQ(o.lr, 0.5);
  EXPECT_TRUE(o.augment);
  EXPECT_EQ(o.arch, "densenet121");
  EXPECT_THROW(f.parse(std::vector<std::string>{"--nope", "1"}), std::exception);
  EXPECT_THROW(f.parse(std::vector<std::string>{"--epochs", "x"}), std::exception);
  EXPECT_NE(f.help().find("reproduce the study"), std::string::npos);
}

// scikit-learn on the written predictions: AUROC, Cohen's kappa and accuracy at both levels.
TEST(Metrics, AgreeWithScikitLearn) {
  if (std::system("/usr/bin/python3 -c 'import sklearn' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-sklearn is not installed (apt-get install python3-sklearn)";
  EvaluationResult r;
  engine::Generator gen(7);
  for (int s = 0; s < 60; ++s) {
    const int label = gen.below(5) < 2 ? 1 : 0;
    const int images = 1 + static_cast<int>(gen.below(4));
    for (int i = 0; i < images; ++i) {
      ImagePrediction p;
      p.study = "train/XR_HAND/patient" + std::to_string(s) + "/study1";
      p.path = p.study + "/image" + std::to_string(i) + ".png";
      p.part = data::kAllBodyParts[static_cast<size_t>(s % 7)];
      p.label = label;
      // Rounded to tenths: many ties. Informative but noisy.
      p.probability = std::min(0.9, std::max(0.1, std::round((0.35 + 0.3 * label + 0.7 * (gen.uniform() - 0.5)) * 10) / 10));
      p.logit = std::log(p.probability / (1 - p.probability));
      r.images.push_back(p);
    }
  }
  r.seconds = 1;
  compute_metrics(r);
  const std::string dir = temp_dir("sklearn");
  write_evaluation(dir, r, "sklearn check", {});
  const std::string script = dir + "/check.py";
  std::ofstream(script) << R"PY(
import csv, json, sys
from sklearn.metrics import roc_auc_score, cohen_kappa_score, accuracy_score, log_loss
d = sys.argv[1]
m = json.load(open(d + "/metrics.json"))
def check(name, ours, theirs):
    if abs(ours - theirs) > 1e-6:
        print("MISMATCH", name, ours, theirs); sys.exit(1)
for level, fname in (("image", "predictions_images.csv"), ("study", "predictions_studies.csv")):
    rows = list(csv.DictReader(open(d + "/" + fname)))
    y = [int(r["label"]) for r in rows]
    p = [float(r["probability"]) for r in rows]
    pred = [1 if x > 0.5 else 0 for x in p]
    o = m["overall"][level]
    check(level + " auroc", o["auroc"], roc_auc_score(y, p))
    check(level + " kappa", o["kappa"], cohen_kappa_score(y, pred))
    check(level + " accuracy", o["accuracy"], accuracy_score(y, pred))
    if level == "image":
        check("image loss", o["loss"], log_loss(y, p))
print("OK")
)PY";
  const int rc = std::system(("/usr/bin/python3 " + script + " " + dir).c_str());
  EXPECT_EQ(rc, 0) << "scikit-learn disagrees (see the output above)";
  fs::remove_all(dir);
}

}  // namespace
