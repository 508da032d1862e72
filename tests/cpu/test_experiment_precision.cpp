// --precision bf16 (and --amp) in the apps: a bf16 training run keeps f32 master weights in its checkpoints,
// so 1 epoch + --resume 1 equals 2 epochs bit for bit, and args.json records the precision (an older one
// without it reads as f32, and --resume refuses another precision); evaluate on bf16 activations gives
// probabilities close to f32's and says so in metrics.json; --amp beside another --precision is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include "data/csv.h"
#include "data/io_util.h"
#include "engine/serialize.h"
#include "experiment/trainer.h"
#include "support/run_app.h"
#include "support/prediction_csv.h"
#include "support/temp_path.h"
#include "support/tiny_training.h"

#ifndef ENGINE_APPS_DIR
#error "ENGINE_APPS_DIR (the folder of the built apps) is set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using namespace experiment;

std::string temp_dir(const std::string& name) { return test_support::fresh_temp_path("experiment_precision", name); }

test_support::AppRun run_app(const std::string& app, const std::vector<std::string>& args) {
  static int counter = 0;
  return test_support::run_program(std::string(ENGINE_APPS_DIR) + "/" + app, test_support::shell_quoted(args),
                                   temp_dir("cmd" + std::to_string(counter++)));
}

// One synthetic set for the whole binary.
const std::string& synthetic_dir() {
  static const std::string dir = [] {
    const std::string d = temp_dir("synth");
    resolve_data_root("", d, 56);
    return d;
  }();
  return dir;
}

TrainOptions tiny_options(const std::string& out, const std::string& precision) {
  TrainOptions o = test_support::tiny_train_options(synthetic_dir(), 48);
  o.images = 60;
  o.flavor = "torch";
  o.out = out;
  o.precision = precision;
  return o;
}

using test_support::probabilities_by_path;

TEST(Bf16Training, ResumeEqualsUninterruptedAndArgsJsonSaysBf16) {
  TrainOptions straight_options = tiny_options(temp_dir("straight"), "bf16");
  straight_options.epochs = 2;
  const TrainResult straight = run_training(straight_options);

  TrainOptions a = tiny_options(temp_dir("resumed"), "bf16");
  a.epochs = 1;
  run_training(a);
  a.epochs = 2;
  a.resume = true;
  const TrainResult resumed = run_training(a);

  ASSERT_EQ(straight.rows.size(), 2u);
  ASSERT_EQ(resumed.rows.size(), 2u);
  EXPECT_EQ(straight.rows[1].train_loss, resumed.rows[1].train_loss);
  EXPECT_EQ(straight.rows[1].val_loss, resumed.rows[1].val_loss);
  std::map<std::string, std::string> ma, mb;
  const auto ta = engine::load_tensors(straight_options.out + "/checkpoints/last.safetensors", &ma);
  const auto tb = engine::load_tensors(a.out + "/checkpoints/last.safetensors", &mb);
  EXPECT_EQ(ma.at("step"), mb.at("step"));
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) {
    EXPECT_EQ(t.dtype(), engine::DType::f32) << name << ": the checkpoint keeps the f32 master weights";
    ASSERT_EQ(t.to_vector(), tb.at(name).to_vector()) << name;
  }
  EXPECT_EQ(read_train_options(a.out + "/args.json").precision, "bf16");

  // The precision took effect: an f32 run of the same settings computes another first-epoch loss.
  TrainOptions f32_options = tiny_options(temp_dir("f32"), "f32");
  f32_options.epochs = 1;
  const TrainResult f32 = run_training(f32_options);
  EXPECT_NE(f32.rows[0].train_loss, straight.rows[0].train_loss);
  EXPECT_NEAR(f32.rows[0].train_loss, straight.rows[0].train_loss, 0.05 * f32.rows[0].train_loss);
  for (const std::string& out : {straight_options.out, a.out, f32_options.out}) fs::remove_all(out);
}

TEST(Bf16Training, OlderArgsJsonReadsAsF32AndResumeKeepsThePrecision) {
  TrainOptions o;
  o.precision = "bf16";
  std::string text = train_options_json(o, {});
  ASSERT_NE(text.find("\"precision\": \"bf16\""), std::string::npos) << text;
  EXPECT_EQ(parse_train_options(text, "args.json").precision, "bf16");
  const size_t at = text.find("  \"precision\"");
  text.erase(at, text.find('\n', at) + 1 - at);
  EXPECT_EQ(parse_train_options(text, "args.json").precision, "f32");

  EXPECT_FALSE(resume_may_change("precision"));
  TrainOptions command, run;
  command.precision = "bf16";
  run.precision = "f32";
  try {
    resumed_options(command, run, [](const std::string& flag) { return flag == "--precision"; });
    ADD_FAILURE() << "a resume in another precision was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("--precision"), std::string::npos) << e.what();
  }
  EXPECT_EQ(resumed_options(TrainOptions{}, run, [](const std::string&) { return false; }).precision, "f32");
}

TEST(PrecisionFlags, AmpBesideAnotherPrecisionIsRefused) {
  const test_support::AppRun train = run_app("train_densenet", {"--amp", "--precision", "f32", "--out", temp_dir("no")});
  EXPECT_EQ(train.status, 2);
  EXPECT_NE(train.err.find("--amp means --precision bf16"), std::string::npos) << train.err;
  EXPECT_FALSE(fs::exists(temp_dir("no")));
  const test_support::AppRun evaluate =
      run_app("evaluate", {"--checkpoint", "x.safetensors", "--split", "s", "--out", "o", "--precision", "f16"});
  EXPECT_EQ(evaluate.status, 2);
  EXPECT_NE(evaluate.err.find("--precision 'f16' is not one of: f32, bf16"), std::string::npos) << evaluate.err;
}

// A tiny checkpoint evaluated in f32 and in bf16 (--amp): every probability within 2e-2 (bf16 keeps 8
// significant bits of each activation; the tiny net's logits move by far less than that), and
// metrics.json records each pass's precision.
TEST(Bf16Evaluation, ProbabilitiesAreCloseToF32AndMetricsJsonSaysBf16) {
  TrainOptions o = tiny_options(temp_dir("run"), "f32");
  o.epochs = 1;
  run_training(o);
  const std::string checkpoint = o.out + "/checkpoints/last.safetensors";
  const std::string f32_out = temp_dir("eval_f32"), bf16_out = temp_dir("eval_bf16");
  const test_support::AppRun f32 =
      run_app("evaluate", {"--checkpoint", checkpoint, "--split", o.out + "/split", "--quiet", "--out", f32_out});
  ASSERT_EQ(f32.status, 0) << f32.err;
  const test_support::AppRun bf16 = run_app(
      "evaluate", {"--checkpoint", checkpoint, "--split", o.out + "/split", "--quiet", "--amp", "--out", bf16_out});
  ASSERT_EQ(bf16.status, 0) << bf16.err;
  EXPECT_NE(data::read_file_text(f32_out + "/metrics.json").find("\"precision\": \"f32\""), std::string::npos);
  EXPECT_NE(data::read_file_text(bf16_out + "/metrics.json").find("\"precision\": \"bf16\""), std::string::npos);
  const auto p32 = probabilities_by_path(f32_out + "/predictions_images.csv");
  const auto p16 = probabilities_by_path(bf16_out + "/predictions_images.csv");
  ASSERT_EQ(p32.size(), p16.size());
  ASSERT_FALSE(p32.empty());
  double largest = 0;
  for (const auto& [path, p] : p32) {
    ASSERT_TRUE(p16.count(path)) << path;
    EXPECT_NEAR(p16.at(path), p, 2e-2) << path;
    largest = std::max(largest, std::fabs(p16.at(path) - p));
  }
  EXPECT_GT(largest, 0.0) << "the bf16 pass computed exactly the f32 probabilities: did it run in bf16?";
  for (const std::string& out : {o.out, f32_out, bf16_out}) fs::remove_all(out);
}

}  // namespace
