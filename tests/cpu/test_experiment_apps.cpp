// The apps as a user runs them (the built executables): evaluate reproduces a run's own test report,
// predict agrees with it image by image, compare writes results.md and a results.html that a real headless
// browser renders with its tables, figures and links to each run's report and Grad-CAM gallery; bad inputs
// fail with a clear message and leave nothing behind; and a non-finite loss stops training with a debug
// checkpoint while `last` is kept.
#include <gtest/gtest.h>
#include <unistd.h>

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
#include "support/temp_path.h"

#ifndef ENGINE_APPS_DIR
#error "ENGINE_APPS_DIR (the folder of the built apps) is set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using namespace experiment;

std::string temp_path(const std::string& name) { return test_support::fresh_temp_path("experiment_apps", name); }

struct Command {
  int status = -1;
  std::string out, err;
};

// Runs an app of the build with `args` (already shell-quoted where needed); captures stdout and stderr.
Command run_app(const std::string& app, const std::string& args) {
  static int counter = 0;
  const std::string base = temp_path("cmd" + std::to_string(counter++));
  const std::string command = std::string(ENGINE_APPS_DIR) + "/" + app + " " + args + " >" + base + ".out 2>" + base + ".err";
  Command c;
  const int raw = std::system(command.c_str());
  c.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  c.out = data::read_file_text(base + ".out");
  c.err = data::read_file_text(base + ".err");
  fs::remove(base + ".out");
  fs::remove(base + ".err");
  return c;
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
    TrainOptions o;
    o.arch = "densenet_tiny";
    o.head = "gap";
    o.input_size = 48;
    o.lr = 1e-3;
    o.epochs = 1;
    o.batch_size = 16;
    o.synthetic_dir = x.synthetic;
    o.flavor = "torch";
    o.quiet = true;
    o.out = x.run;
    run_training(o);
    return x;
  }();
  return f;
}

// path -> probability of a predictions CSV (ours: predictions_images.csv or predict's --out).
std::map<std::string, double> probabilities(const std::string& csv_path) {
  const auto rows = data::parse_csv(data::read_file_text(csv_path), csv_path);
  std::map<std::string, double> p;
  size_t column = 0;
  for (size_t i = 0; i < rows[0].fields.size(); ++i)
    if (rows[0].fields[i] == "probability") column = i;
  for (size_t r = 1; r < rows.size(); ++r) p[rows[r].fields[0]] = std::stod(rows[r].fields[column]);
  return p;
}

TEST(EvaluateApp, ReproducesTheRunsOwnTestReport) {
  const Fixture& f = fixture();
  const std::string out = temp_path("evaluate");
  const Command c = run_app("evaluate", "--checkpoint " + f.run + "/checkpoints/last.safetensors --split " + f.run +
                                            "/split --list test --quiet --out " + out);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.out.find("| kappa |"), std::string::npos) << c.out;  // the printed report has the kappa column
  // The same checkpoint on the same images: the same predictions as the end of training wrote.
  const auto ours = probabilities(out + "/predictions_images.csv");
  const auto run = probabilities(f.run + "/test/predictions_images.csv");
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
  const auto run = probabilities(f.run + "/test/predictions_images.csv");
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
  const auto ours = probabilities(csv);
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

}  // namespace
