// The apps as a user runs them (the built executables): evaluate reproduces a run's own test report,
// predict agrees with it image by image, compare writes results.md and a results.html that a real headless
// browser renders with its tables, figures and links to each run's report and Grad-CAM gallery; bad inputs
// fail with a clear message and leave nothing behind; and a non-finite loss stops training with a debug
// checkpoint while `last` is kept. The trainer's reliability: one trainer per run folder, a clean stop on
// SIGINT / SIGTERM that --resume continues, --resume that keeps the run's settings, data paths recorded
// absolute (evaluate works from any folder), and --max-bad-fraction for unreadable images.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "data/csv.h"
#include "data/image.h"
#include "data/io_util.h"
#include "engine/serialize.h"
#include "experiment/compare.h"
#include "experiment/trainer.h"
#include "support/browser.h"
#include "support/prediction_csv.h"
#include "support/run_app.h"
#include "support/temp_path.h"
#include "support/tiny_training.h"

#ifndef ENGINE_APPS_DIR
#error "ENGINE_APPS_DIR (the folder of the built apps) is set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using namespace experiment;

std::string temp_path(const std::string& name) { return test_support::fresh_temp_path("experiment_apps", name); }

using Command = test_support::AppRun;

// Runs an app of the build with `args` (already shell-quoted where needed), in the folder `cwd` when one is
// given; captures stdout and stderr.
Command run_app(const std::string& app, const std::string& args, const std::string& cwd = "") {
  static int counter = 0;
  return test_support::run_program((cwd.empty() ? "" : "cd " + cwd + " && ") + std::string(ENGINE_APPS_DIR) + "/" + app,
                                   " " + args, temp_path("cmd" + std::to_string(counter++)));
}

// The synthetic set (56 train patients, about 210 images) and one short run of the tiny DenseNet on it,
// shared by the tests of this binary.
struct Fixture {
  std::string synthetic, run;
};
const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    x.synthetic = temp_path("synth");
    x.run = temp_path("run");
    TrainOptions o = test_support::tiny_train_options(x.synthetic, 48);
    o.epochs = 1;
    o.flavor = "torch";
    o.out = x.run;
    run_training(o);
    return x;
  }();
  return f;
}

using test_support::probabilities_by_path;

TEST(EvaluateApp, ReproducesTheRunsOwnTestReport) {
  const Fixture& f = fixture();
  const std::string out = temp_path("evaluate");
  const Command c = run_app("evaluate", "--checkpoint " + f.run + "/checkpoints/last.safetensors --split " + f.run +
                                            "/split --list test --quiet --out " + out);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.out.find("| kappa |"), std::string::npos) << c.out;  // the printed report has the kappa column
  // The same checkpoint on the same images: the same predictions as the end of training wrote.
  const auto ours = probabilities_by_path(out + "/predictions_images.csv");
  const auto run = probabilities_by_path(f.run + "/test/predictions_images.csv");
  ASSERT_EQ(ours.size(), run.size());
  ASSERT_FALSE(ours.empty());
  for (const auto& [path, p] : run) {
    ASSERT_TRUE(ours.count(path)) << path;
    EXPECT_NEAR(ours.at(path), p, 1e-6) << path;
  }
  for (const char* key : {"\"accuracy\"", "\"auroc\"", "\"kappa\""}) {
    const std::string a = data::read_file_text(out + "/metrics.json"), b = data::read_file_text(f.run + "/test/metrics.json");
    const auto value = [&](const std::string& json) { return json.substr(json.find(key), 40); };
    EXPECT_EQ(value(a), value(b)) << key;
  }
  fs::remove_all(out);
}

TEST(EvaluateApp, BadInputFailsClearlyAndWritesNothing) {
  const Fixture& f = fixture();
  const std::string out = temp_path("evaluate_bad");
  Command c = run_app("evaluate", "--checkpoint /nonexistent/last.safetensors --split " + f.run + "/split --out " + out);
  EXPECT_EQ(c.status, 1);
  EXPECT_NE(c.err.find("does not exist"), std::string::npos) << c.err;
  EXPECT_FALSE(fs::exists(out));

  c = run_app("evaluate", "--checkpoint " + f.run + "/checkpoints/last.safetensors --out " + out);
  EXPECT_EQ(c.status, 2);  // usage: neither --split nor --data
  EXPECT_NE(c.err.find("--split"), std::string::npos) << c.err;

  // A corrupt checkpoint: named in the message.
  const std::string junk = temp_path("junk.safetensors");
  std::ofstream(junk) << "not a checkpoint";
  c = run_app("evaluate", "--checkpoint " + junk + " --split " + f.run + "/split --out " + out);
  EXPECT_EQ(c.status, 1);
  EXPECT_NE(c.err.find(junk), std::string::npos) << c.err;
  EXPECT_FALSE(fs::exists(out));
  fs::remove(junk);
}

TEST(PredictApp, AStudyFolderAgreesWithTheEvaluation) {
  const Fixture& f = fixture();
  const auto run = probabilities_by_path(f.run + "/test/predictions_images.csv");
  ASSERT_FALSE(run.empty());
  // The first test study, given as a folder.
  const std::string first = run.begin()->first;  // e.g. train/XR_HAND/patient00004/study1_positive/image2.png
  const std::string study = fs::path(first).parent_path().string();
  const std::string root = f.synthetic + "/MURA-v1.1/";
  const std::string csv = temp_path("predict.csv");
  const Command c = run_app("predict", "--checkpoint " + f.run + "/checkpoints/last.safetensors " + root + study +
                                           " --out " + csv);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.out.find("mean p ="), std::string::npos) << c.out;
  const auto ours = probabilities_by_path(csv);
  int compared = 0;
  for (const auto& [path, p] : ours) {
    const std::string relative = path.substr(root.size());
    if (!run.count(relative)) continue;  // the study may have images in other splits (seed protocol)
    EXPECT_NEAR(p, run.at(relative), 1e-5) << path;
    ++compared;
  }
  EXPECT_GE(compared, 1);
  fs::remove(csv);
}

TEST(PredictApp, AnUnreadableImageIsNamed) {
  const Fixture& f = fixture();
  const std::string bad = temp_path("broken.png");
  std::ofstream(bad) << "\x89PNG\r\n\x1a\n truncated";
  const std::string csv = temp_path("predict_bad.csv");
  Command c = run_app("predict", "--checkpoint " + f.run + "/checkpoints/last.safetensors " + bad + " --out " + csv);
  EXPECT_EQ(c.status, 1);
  EXPECT_NE(c.err.find("broken.png"), std::string::npos) << c.err;
  EXPECT_FALSE(fs::exists(csv));
  c = run_app("predict", "--checkpoint " + f.run + "/checkpoints/last.safetensors /nonexistent.png");
  EXPECT_EQ(c.status, 1);
  EXPECT_NE(c.err.find("no such file"), std::string::npos) << c.err;
  fs::remove(bad);
}

// The fraction of a screenshot's pixels that differ from its most common colour (0 = blank page).
double ink_fraction(const std::string& png) {
  const data::Image im = data::decode_image_file(png);
  std::map<int, int64_t> counts;
  const int64_t pixels = static_cast<int64_t>(im.width) * im.height;
  for (int64_t i = 0; i < pixels; ++i) ++counts[static_cast<int>(im.pixels[static_cast<size_t>(i * im.channels)])];
  int64_t most = 0;
  for (const auto& [v, n] : counts) most = std::max(most, n);
  return 1.0 - static_cast<double>(most) / static_cast<double>(pixels);
}

TEST(CompareApp, WritesTheStudysTablesAndAPageABrowserRenders) {
  const Fixture& f = fixture();
  const std::string out = temp_path("compare");
  const Command c = run_app("compare", "--archs densenet_tiny --sizes 60,0 --epochs 2 --input-size 48 --batch-size 16 "
                                       "--head gap --flavor torch --lr 1e-3 --quiet --synthetic-dir " + f.synthetic +
                                           " --out " + out);
  ASSERT_EQ(c.status, 0) << c.err;
  const std::string md = data::read_file_text(out + "/results.md");
  for (const char* text : {"The study's table: test time (s)", "The study's table: test accuracy", "| 60 |", "| all |",
                           "study kappa", "runs/seed/densenet_tiny-n60/test/report.md"})
    EXPECT_NE(md.find(text), std::string::npos) << text << "\n" << md;
  EXPECT_EQ(c.out, md);  // the table is also printed
  for (const char* run : {"/runs/seed/densenet_tiny-n60", "/runs/seed/densenet_tiny-nall"}) {
    EXPECT_TRUE(fs::is_regular_file(out + run + "/test/metrics.json")) << run;
    EXPECT_EQ(parse_summary_csv(data::read_file_text(out + run + "/summary.csv"), run).size(), 2u) << run;
  }

  const test_support::BrowserPage page = test_support::render_in_browser(out + "/results.html", out + "/browser");
  if (!page.available) GTEST_SKIP() << page.skip_reason;
  // The DOM after load: the three tables of the protocol, their rows, the figures as inline SVG.
  size_t tables = 0, svgs = 0, polylines = 0;
  for (size_t p = page.dom.find("<table"); p != std::string::npos; p = page.dom.find("<table", p + 1)) ++tables;
  for (size_t p = page.dom.find("<svg"); p != std::string::npos; p = page.dom.find("<svg", p + 1)) ++svgs;
  for (size_t p = page.dom.find("<polyline"); p != std::string::npos; p = page.dom.find("<polyline", p + 1)) ++polylines;
  EXPECT_EQ(tables, 4u);  // the study's two, ours beside them, Grad-CAM's localisation
  EXPECT_EQ(svgs, 8u);  // accuracy, kappa, time vs images; five training curves
  EXPECT_GE(polylines, 8u);
  EXPECT_NE(page.dom.find("<td>all</td>"), std::string::npos);
  EXPECT_NE(page.dom.find("href=\"runs/seed/densenet_tiny-n60/test/report.md\""), std::string::npos);
  EXPECT_NE(page.dom.find("href=\"runs/seed/densenet_tiny-n60/cam/gallery.html\""), std::string::npos);
  EXPECT_TRUE(fs::is_regular_file(out + "/runs/seed/densenet_tiny-n60/cam/gallery.html"));
  EXPECT_GT(ink_fraction(page.screenshot_png), 0.02) << page.screenshot_png;
  fs::remove_all(out);
}

TEST(CompareApp, BadOptionsFailBeforeAnyRun) {
  const std::string out = temp_path("compare_bad");
  Command c = run_app("compare", "--archs densenet_tiny --sizes 60,-5 --out " + out);
  EXPECT_EQ(c.status, 1);
  EXPECT_NE(c.err.find("negative"), std::string::npos) << c.err;
  c = run_app("compare", "--archs densenet_tiny --protocols seed,kfold --out " + out);
  EXPECT_EQ(c.status, 1);
  EXPECT_NE(c.err.find("kfold"), std::string::npos) << c.err;
  c = run_app("compare", "--weights-densenet /nonexistent.safetensors --out " + out);
  EXPECT_EQ(c.status, 1);
  EXPECT_NE(c.err.find("/nonexistent.safetensors"), std::string::npos) << c.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST(Training, ANonFiniteLossStopsWithADebugCheckpointAndKeepsLast) {
  const Fixture& f = fixture();
  const std::string out = temp_path("nonfinite");
  fs::create_directories(out);
  fs::copy(f.run, out, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  TrainOptions o;
  o.arch = "densenet_tiny";
  o.head = "gap";
  o.input_size = 48;
  o.batch_size = 16;
  o.flavor = "torch";
  o.synthetic_dir = f.synthetic;
  o.quiet = true;
  o.out = out;
  o.resume = true;
  o.epochs = 3;
  o.lr = 1e35;  // one Adam step moves every weight by about 1e35: activations overflow at the next step
  o.optimizer = "adam-torch";
  const TrainResult r = run_training(o);
  EXPECT_TRUE(r.nonfinite);
  EXPECT_FALSE(r.tested);
  ASSERT_EQ(r.rows.size(), 1u);  // epoch 1, from before the resume
  std::map<std::string, std::string> meta;
  engine::load_tensors(out + "/checkpoints/last.safetensors", &meta);
  EXPECT_EQ(meta.at("epoch"), "1");  // last is the last finished epoch, untouched
  std::map<std::string, std::string> debug_meta;
  const auto debug = engine::load_tensors(out + "/checkpoints/debug_nonfinite.safetensors", &debug_meta);
  EXPECT_EQ(debug_meta.at("epoch"), "2");
  EXPECT_TRUE(debug.count("batch.images"));
  EXPECT_TRUE(debug.count("batch.logits"));
  EXPECT_EQ(parse_summary_csv(data::read_file_text(out + "/summary.csv"), "summary.csv").size(), 1u);
  fs::remove_all(out);
}

// --- The trainer's reliability, through the built train_densenet ---

// A short run of the tiny DenseNet on the fixture's synthetic set (32 px, 60 images, no epoch checkpoints).
std::string tiny_train_args(const Fixture& f) {
  return "--arch densenet_tiny --head gap --input-size 32 --batch-size 16 --lr 0.001 --images 60 --flavor torch "
         "--epoch-checkpoints=false --quiet --synthetic-dir " + f.synthetic;
}

// Starts an app in the background (its own process: the pid is the app's), stderr to `err_file`.
pid_t start_app(const std::string& app, const std::string& args, const std::string& err_file) {
  const std::string command = "exec " + std::string(ENGINE_APPS_DIR) + "/" + app + " " + args + " >/dev/null 2>" + err_file;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// The exit status as a shell reports it: the code, or 128 + the signal that killed it.
int wait_for_exit(pid_t pid) {
  int raw = 0;
  if (::waitpid(pid, &raw, 0) != pid) return -1;
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}

// A started app that is killed (SIGKILL) and reaped if the test ends before it does, so that a failed
// assertion never leaves a 1000-epoch run behind.
struct Started {
  pid_t pid;
  ~Started() {
    if (pid > 0 && ::waitpid(pid, nullptr, WNOHANG) == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

bool wait_for_file(const std::string& path, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (fs::is_regular_file(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Two trainers on one --out once both ran and mixed their files: the second is refused, naming the first's
// pid; SIGTERM then stops the first cleanly with status 143.
TEST(TrainApp, ASecondTrainerOnTheSameFolderIsRefusedNamingTheFirst) {
  const Fixture& f = fixture();
  const std::string out = temp_path("locked"), err = temp_path("locked.err");
  const pid_t first = start_app("train_densenet", tiny_train_args(f) + " --epochs 1000 --out " + out, err);
  ASSERT_GT(first, 0);
  Started started{first};
  ASSERT_TRUE(wait_for_file(out + "/checkpoints/last.safetensors", 120)) << data::read_file_text(err);
  const Command second = run_app("train_densenet", "--out " + out + " --resume --quiet --epochs 1001");
  ::kill(first, SIGTERM);
  const int first_status = wait_for_exit(first);
  started.pid = 0;
  EXPECT_EQ(second.status, 1) << second.err;
  EXPECT_TRUE(contains(second.err, out + " is in use by process " + std::to_string(first))) << second.err;
  EXPECT_EQ(first_status, 143);
  EXPECT_TRUE(contains(data::read_file_text(err), "interrupted (SIGTERM)")) << data::read_file_text(err);
  fs::remove_all(out);
  fs::remove(err);
}

// Ctrl-C stops between batches with the interruption message and status 130; last is intact and --resume
// (with the run's own settings from args.json) completes the run.
TEST(TrainApp, SigintStopsCleanlyAndResumeCompletesTheRun) {
  const Fixture& f = fixture();
  const std::string out = temp_path("sigint"), err = temp_path("sigint.err");
  const pid_t pid = start_app("train_densenet", tiny_train_args(f) + " --epochs 1000 --out " + out, err);
  ASSERT_GT(pid, 0);
  Started started{pid};
  ASSERT_TRUE(wait_for_file(out + "/checkpoints/last.safetensors", 120)) << data::read_file_text(err);
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_for_exit(pid), 130);
  started.pid = 0;
  const std::string message = data::read_file_text(err);
  EXPECT_TRUE(contains(message, "interrupted (SIGINT): stopped at epoch ")) << message;
  EXPECT_TRUE(contains(message, "is intact; resume with --resume")) << message;
  const CheckpointInfo last = read_checkpoint(out + "/checkpoints/last.safetensors");  // whole and valid
  const int64_t epoch = checkpoint_settings(last.metadata, "last").epoch;
  ASSERT_GE(epoch, 1);
  EXPECT_FALSE(fs::exists(out + "/test/metrics.json"));

  const Command resumed =
      run_app("train_densenet", "--out " + out + " --resume --quiet --epochs " + std::to_string(epoch + 1));
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_TRUE(fs::is_regular_file(out + "/test/metrics.json"));
  EXPECT_EQ(parse_summary_csv(data::read_file_text(out + "/summary.csv"), "summary.csv").size(),
            static_cast<size_t>(epoch + 1));
  fs::remove_all(out);
  fs::remove(err);
}

// A run started with a relative --data: args.json records the absolute root, so evaluate and --resume work
// from any folder. --resume takes the run's settings for the flags not given and refuses changed ones by
// flag; a stale temporary in the folder is swept (and said so) when the run starts.
TEST(TrainApp, ResumeKeepsTheRunsSettingsAndPathsAreAbsolute) {
  const Fixture& f = fixture();
  const std::string out = temp_path("relative"), evaluated = temp_path("relative_eval");
  const std::string root = fs::path(f.synthetic + "/MURA-v1.1").lexically_normal().string();
  Command c = run_app("train_densenet", tiny_train_args(f) + " --epochs 1 --data MURA-v1.1 --out " + out, f.synthetic);
  ASSERT_EQ(c.status, 0) << c.err;
  const std::string args = data::read_file_text(out + "/args.json");
  EXPECT_EQ(json_string_field(args, "data"), root);
  EXPECT_EQ(json_string_field(args, "data_root"), root);

  c = run_app("train_densenet", "--out " + out + " --resume --lr 0.5 --seed 3 --protocol patient --images 100", "/");
  EXPECT_EQ(c.status, 2);
  for (const std::string& part :
       {"--resume: the run in " + out + " used --lr 0.001 but this command says --lr 0.5; pass the run's settings or "
        "leave the flag out",
        std::string("used --seed 0 but this command says --seed 3"),
        std::string("used --protocol seed but this command says --protocol patient"),
        std::string("used --images 60 but this command says --images 100")})
    EXPECT_TRUE(contains(c.err, part)) << part << " in " << c.err;
  EXPECT_EQ(parse_summary_csv(data::read_file_text(out + "/summary.csv"), "summary.csv").size(), 1u) << "nothing ran";

  std::ofstream(out + "/summary.csv.tmp-4242") << "half written";
  c = run_app("train_densenet", "runs/elsewhere --quiet", "/");  // a folder without --resume is refused
  EXPECT_EQ(c.status, 2);
  EXPECT_TRUE(contains(c.err, "a run folder is taken only with --resume")) << c.err;
  c = run_app("train_densenet", "--resume " + out + " --out " + evaluated, "/");
  EXPECT_EQ(c.status, 2);
  EXPECT_TRUE(contains(c.err, "name different folders")) << c.err;
  // `--resume RUN_DIR` is `--out RUN_DIR --resume`.
  c = run_app("train_densenet", "--resume " + out + " --epochs 2 --quiet", "/");
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_TRUE(contains(c.err, "removed 1 temporary file(s)")) << c.err;
  EXPECT_FALSE(fs::exists(out + "/summary.csv.tmp-4242"));
  EXPECT_EQ(parse_summary_csv(data::read_file_text(out + "/summary.csv"), "summary.csv").size(), 2u);
  const TrainOptions recorded = read_train_options(out + "/args.json");
  EXPECT_EQ(recorded.lr, 0.001);
  EXPECT_EQ(recorded.images, 60);
  EXPECT_EQ(recorded.input_size, 32);
  EXPECT_EQ(recorded.epochs, 2);

  c = run_app("evaluate", "--checkpoint " + out + "/checkpoints/last.safetensors --split " + out +
                              "/split --list test --quiet --out " + evaluated, "/");
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_TRUE(fs::is_regular_file(evaluated + "/metrics.json"));
  fs::remove_all(out);
  fs::remove_all(evaluated);
}

// An unreadable image stops the run with a message that names --max-bad-fraction; with the flag, the run
// skips it and says so.
// --config FILE: a new run with another run's settings, the flags given overriding them; its --out must be
// new, and it does not combine with --resume.
TEST(TrainApp, ConfigStartsANewRunWithASavedRunsSettings) {
  const Fixture& f = fixture();
  const std::string out = temp_path("configured"), config = f.run + "/args.json";
  // (--epoch-checkpoints: the older switch, now --checkpoint-hist -1)
  Command c = run_app("train_densenet", "--config " + config + " --lr 0.002 --images 60 --epoch-checkpoints --out " + out, "/");
  ASSERT_EQ(c.status, 0) << c.err;
  TrainOptions expected = read_train_options(config);
  expected.lr = 0.002;
  expected.images = 60;
  expected.checkpoint_hist = -1;
  expected.out = out;
  EXPECT_EQ(train_options_json(read_train_options(out + "/args.json"), {}), train_options_json(expected, {}));

  c = run_app("train_densenet", "--config " + config + " --out " + f.run);
  EXPECT_EQ(c.status, 1);
  EXPECT_TRUE(contains(c.err, "already holds a run")) << c.err;
  c = run_app("train_densenet", "--config " + config + " --resume " + out);
  EXPECT_EQ(c.status, 2);
  EXPECT_TRUE(contains(c.err, "--config starts a new run and --resume continues one")) << c.err;
  fs::remove_all(out);
}

TEST(TrainApp, MaxBadFractionSkipsUnreadableImages) {
  const Fixture& f = fixture();
  const std::string data = temp_path("bad_data"), failed = temp_path("bad_failed"), skipped = temp_path("bad_skipped");
  fs::copy(f.synthetic + "/MURA-v1.1", data, fs::copy_options::recursive);
  std::string corrupt;
  for (const auto& entry : fs::recursive_directory_iterator(data + "/train"))
    if (entry.is_regular_file() && entry.path().extension() == ".png") {
      corrupt = entry.path().string();
      break;
    }
  ASSERT_FALSE(corrupt.empty());
  std::ofstream(corrupt, std::ios::trunc) << "not a PNG";
  // Every image (no --images sample), so the corrupt one is in one of the splits.
  const std::string run = "--arch densenet_tiny --head gap --input-size 32 --batch-size 32 --flavor torch --quiet "
                          "--epochs 1 --data " + data;
  Command c = run_app("train_densenet", run + " --out " + failed);
  EXPECT_EQ(c.status, 1) << c.err;
  EXPECT_TRUE(contains(c.err, "unreadable")) << c.err;
  EXPECT_TRUE(contains(c.err, "--max-bad-fraction")) << c.err;

  c = run_app("train_densenet", run + " --max-bad-fraction 0.1 --out " + skipped);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_TRUE(contains(c.err, "skipped an unreadable")) << c.err;
  EXPECT_TRUE(contains(c.err, fs::path(corrupt).filename().string())) << c.err;
  EXPECT_TRUE(contains(data::read_file_text(skipped + "/args.json"), "\"max_bad_fraction\": 0.1")) << "recorded";
  fs::remove_all(data);
  fs::remove_all(failed);
  fs::remove_all(skipped);
}

// A checkpoint's metadata is checked where it is read: a bad input_size once ended in "error: stoll",
// std::bad_alloc or gigabytes of memory; now evaluate names the file and the key.
TEST(EvaluateApp, BadCheckpointMetadataIsNamed) {
  const Fixture& f = fixture();
  std::map<std::string, std::string> metadata;
  const auto tensors = engine::load_tensors(f.run + "/checkpoints/last.safetensors", &metadata);
  engine::NamedTensors named(tensors.begin(), tensors.end());
  const std::string out = temp_path("evaluate_metadata"), checkpoint = temp_path("metadata.safetensors");
  for (const auto& [value, expect] : std::vector<std::pair<std::string, std::string>>{
           {"abc", "metadata input_size 'abc' is not an integer"},
           {"300000", "metadata input_size 300000 is out of range"},
           {"99999", "metadata input_size 99999 is out of range"}}) {
    std::map<std::string, std::string> bad = metadata;
    bad["input_size"] = value;
    engine::save_tensors(checkpoint, named, bad);
    const Command c = run_app("evaluate", "--checkpoint " + checkpoint + " --split " + f.run + "/split --quiet --out " + out);
    EXPECT_EQ(c.status, 1) << c.err;
    EXPECT_TRUE(contains(c.err, checkpoint + ": " + expect)) << c.err;
    EXPECT_FALSE(fs::exists(out));
  }
  fs::remove(checkpoint);
}

}  // namespace
