// The run files (experiment/run_files.h): args.json written and read back to the same options, with the
// keys other readers use; an older args.json and broken ones; a checkpoint written and read back to the
// same net, optimizer state and metadata; files that are not checkpoints refused.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>

#include "data/io_util.h"
#include "engine/serialize.h"
#include "experiment/metrics.h"
#include "experiment/run_files.h"
#include "experiment/trainer.h"
#include "support/gradcheck.h"

namespace {

using namespace experiment;
using engine::Tensor;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// `f` throws an engine::Error whose message holds `fragment`.
void expect_error(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one with: " << fragment;
  } catch (const engine::Error& e) {
    EXPECT_TRUE(contains(e.what(), fragment)) << e.what();
  }
}

// Every field away from its default.
TrainOptions unusual_options() {
  TrainOptions o;
  o.arch = "densenet_tiny";
  o.data = "/data/MURA \"v1.1\"";  // a quote to escape
  o.synthetic_dir = "/cache/synthetic";
  o.synthetic_patients = 12;
  o.weights = "w.safetensors";
  o.protocol = "patient";
  o.images = 3000;
  o.parts = "hand,wrist";
  o.epochs = 7;
  o.batch_size = 16;
  o.lr = 3.0000000000000001e-4;
  o.optimizer = "adam-torch";
  o.head = "gap";
  o.input_size = 96;
  o.preprocess = "torch";
  o.resize = "area";
  o.flavor = "torch";
  o.augment = true;
  o.rotation = 12.5;
  o.class_weights = true;
  o.device = "cuda:1";
  o.seed = 18446744073709551557ull;  // beyond a double's exact integers
  o.workers = 5;
  o.max_bad_fraction = 0.25;
  o.out = "runs/x";
  o.resume = true;
  o.early_stopping = 3;
  o.deterministic = true;
  o.memory_efficient = true;
  o.test_checkpoint = "best";
  o.checkpoint_hist = 4;
  o.quiet = true;
  return o;
}

// The training flags' ranges: --rotation -30 was once taken and silently ignored without --augment.
TEST(TrainFlags, RotationIsAnAngleInZeroTo180) {
  for (const char* bad : {"-30", "181", "nan", "inf"}) {
    TrainOptions o;
    FlagParser f("train", "");
    add_train_flags(f, o, {"densenet_tiny"});
    expect_error([&] { f.parse(std::vector<std::string>{"--rotation", bad}); }, "--rotation");
  }
  TrainOptions o;
  FlagParser f("train", "");
  add_train_flags(f, o, {"densenet_tiny"});
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--rotation", "15"}));
  EXPECT_EQ(o.rotation, 15);
}

TEST(RunFiles, ArgsJsonReadsBackToTheSameOptions) {
  const TrainOptions o = unusual_options();
  const std::string text = train_options_json(o, {{"data_root", "/resolved/MURA-v1.1"}, {"train_images", "80"}});
  const TrainOptions back = parse_train_options(text, "args.json");
  EXPECT_EQ(train_options_json(back, {}), train_options_json(o, {}));
  EXPECT_EQ(back.seed, o.seed);
  EXPECT_EQ(back.lr, o.lr);
  EXPECT_EQ(back.data, o.data);
  EXPECT_EQ(back.rotation, o.rotation);
  EXPECT_EQ(back.checkpoint_hist, 4);
  const TrainOptions defaults = parse_train_options(train_options_json(TrainOptions(), {}), "args.json");
  EXPECT_EQ(train_options_json(defaults, {}), train_options_json(TrainOptions(), {}));
}

TEST(RunFiles, ArgsJsonKeepsTheKeysItsReadersUse) {
  const std::string text =
      train_options_json(unusual_options(), {{"data_root", "/resolved/MURA-v1.1"}, {"device_used", "cpu"}});
  // The apps read single fields with json_string_field (evaluate, cam: data_root; compare: test_checkpoint).
  EXPECT_EQ(json_string_field(text, "data_root"), "/resolved/MURA-v1.1");
  EXPECT_EQ(json_string_field(text, "test_checkpoint"), "best");
  EXPECT_EQ(json_string_field(text, "arch"), "densenet_tiny");
  EXPECT_EQ(json_string_field(text, "data"), "/data/MURA \"v1.1\"");
  for (const char* key : {"\"images\": 3000", "\"batch_size\": 16", "\"input_size\": 96", "\"augment\": true",
                          "\"device_used\": \"cpu\"", "\"early_stopping\": 3", "\"memory_efficient\": true"})
    EXPECT_TRUE(contains(text, key)) << key << " in\n" << text;
  EXPECT_LT(text.find("\"arch\""), text.find("\"data_root\"")) << "options first, then what the run resolved";
  EXPECT_TRUE(contains(text, "\"format\": \"mura-engine-args-v1\"\n}")) << "the format last:\n" << text;
}

TEST(RunFiles, AnOlderArgsJsonAndBrokenOnes) {
  // The text an earlier version wrote (numbers as %.17g, fewer keys): the absent keys keep their defaults.
  const std::string older =
      "{\n  \"arch\": \"densenet201\",\n  \"images\": 100,\n  \"lr\": 1.0000000000000001e-05,\n"
      "  \"seed\": 3,\n  \"augment\": false,\n  \"data_root\": \"/x\",\n  \"format\": \"mura-engine-args-v1\"\n}\n";
  const TrainOptions o = parse_train_options(older, "old/args.json");
  EXPECT_EQ(o.images, 100);
  EXPECT_EQ(o.lr, 1e-5);
  EXPECT_EQ(o.seed, 3u);
  EXPECT_EQ(o.synthetic_patients, TrainOptions().synthetic_patients);
  EXPECT_EQ(o.checkpoint_hist, -1) << "every epoch was kept then";
  // "keep_epoch_checkpoints" (before --checkpoint-hist): true = every epoch, false = last and best only.
  const auto with_keep = [](const char* keep) {
    return "{\"keep_epoch_checkpoints\": " + std::string(keep) + ", \"format\": \"mura-engine-args-v1\"}";
  };
  EXPECT_EQ(parse_train_options(with_keep("true"), "k/args.json").checkpoint_hist, -1);
  EXPECT_EQ(parse_train_options(with_keep("false"), "k/args.json").checkpoint_hist, 0);
  expect_error([&] { parse_train_options(with_keep("3"), "k/args.json"); }, "k/args.json: \"keep_epoch_checkpoints\" has the wrong type");
  expect_error([] { parse_train_options("{\"checkpoint_hist\": -2, \"format\": \"mura-engine-args-v1\"}", "h/args.json"); },
               "h/args.json: \"checkpoint_hist\" must be -1 (every epoch) or more, got -2");

  expect_error([] { parse_train_options("{\"arch\": ", "a/args.json"); }, "a/args.json is not valid JSON");
  expect_error([] { parse_train_options("{\"arch\": \"x\"}", "b/args.json"); },
               "b/args.json is not the args.json of a training run");
  expect_error([] { parse_train_options("{\"epochs\": \"ten\", \"format\": \"mura-engine-args-v1\"}", "c/args.json"); },
               "c/args.json: \"epochs\" has the wrong type (string)");
  expect_error([] { read_train_options("/no/such/run/args.json"); }, "/no/such/run/args.json does not exist");
}

TEST(RunFiles, ACheckpointReadsBackToTheSameNetAndState) {
  const std::string dir = ::testing::TempDir() + "test_run_files_ckpt";
  std::filesystem::create_directories(dir);
  TrainOptions o;
  o.arch = "densenet_tiny";
  o.head = "gap";
  o.flavor = "torch";
  o.input_size = 48;
  o.preprocess = "tf";
  o.resize = "bilinear";
  o.seed = 9;
  auto net = build_net(o.arch, nets::Head::gap, nets::Flavor::torch, o.input_size, o.seed);
  engine::ParameterArena arena(net->named_parameters());
  engine::Adam adam(arena, engine::Adam::keras(1e-3f));
  engine::Generator data(4);
  for (const auto& [name, t] : adam.state()) t.copy_from(test_support::random_tensor(t.shape(), data, 0.0f, 1.0f));
  adam.set_step_count(42);

  const std::string path = dir + "/last.safetensors";
  write_checkpoint(path, *net, adam, o, {3, 0.625, 1});
  const CheckpointInfo c = read_checkpoint(path);
  EXPECT_EQ(checkpoint_value(c.metadata, "epoch"), "3");
  EXPECT_EQ(checkpoint_value(c.metadata, "step"), "42");
  EXPECT_EQ(checkpoint_value(c.metadata, "best_val_loss"), "0.625");
  EXPECT_EQ(checkpoint_value(c.metadata, "bad_epochs"), "1");
  EXPECT_EQ(checkpoint_value(c.metadata, "arch"), "densenet_tiny");
  expect_error([&] { checkpoint_value(c.metadata, "nope"); }, "checkpoint metadata has no 'nope'");
  for (const auto& [name, t] : adam.state()) EXPECT_EQ(c.optimizer.at(name).to_vector(), t.to_vector()) << name;

  auto back = net_from_checkpoint(c);
  EXPECT_EQ(back->arch(), "densenet_tiny");
  net->eval();
  back->eval();
  const Tensor images = test_support::random_tensor({2, 48, 48, 3}, data);
  engine::NoGradGuard no_grad;
  EXPECT_EQ(back->forward(images).to_vector(), net->forward(images).to_vector());

  const data::LoaderOptions lo = eval_loader_options(c.metadata, 8, 3);
  EXPECT_EQ(lo.height, 48);
  EXPECT_EQ(lo.width, 48);
  EXPECT_EQ(lo.batch_size, 8);
  EXPECT_EQ(lo.workers, 3);
  EXPECT_EQ(lo.resize, data::ResizeMode::bilinear);
  EXPECT_EQ(lo.norm, data::parse_norm_mode("tf"));
  EXPECT_FALSE(lo.shuffle);

  // Not checkpoints: a missing file, and weights without the checkpoint format.
  expect_error([&] { read_checkpoint(dir + "/none.safetensors"); }, "does not exist");
  engine::save_tensors(dir + "/weights.safetensors", net->state(), {{"arch", "densenet_tiny"}});
  expect_error([&] { read_checkpoint(dir + "/weights.safetensors"); }, "is not a training checkpoint of this project");
  std::filesystem::remove_all(dir);
}

// Checkpoint metadata is a user's file: every field is checked where it is read, with the file and the
// key named, before anything is sized by it (a bad input_size once ended in "stoll", std::bad_alloc or
// gigabytes of memory).
TEST(RunFiles, CheckpointMetadataIsValidated) {
  const std::map<std::string, std::string> good = {
      {"format", "mura-engine-checkpoint-v1"}, {"arch", "densenet_tiny"}, {"head", "gap"}, {"flavor", "torch"},
      {"input_size", "48"}, {"preprocess", "study"}, {"resize", "nearest"}, {"optimizer", "adam-keras"},
      {"lr", "0.001"}, {"epoch", "2"}, {"step", "30"}, {"seed", "18446744073709551615"},
      {"best_val_loss", "inf"}, {"bad_epochs", "0"}};
  const CheckpointSettings s = checkpoint_settings(good, "runs/x/checkpoints/last.safetensors");
  EXPECT_EQ(s.input_size, 48);
  EXPECT_EQ(s.epoch, 2);
  EXPECT_EQ(s.step, 30);
  EXPECT_EQ(s.seed, 18446744073709551615ull);
  EXPECT_TRUE(std::isinf(s.best_value));
  struct Case {
    std::string key, value, expect;
  };
  const std::vector<Case> cases = {
      {"input_size", "abc", "runs/x/checkpoints/last.safetensors: metadata input_size 'abc' is not an integer"},
      {"input_size", "300000", "metadata input_size 300000 is out of range (32 to 1024)"},
      {"input_size", "99999", "metadata input_size 99999 is out of range"},
      {"input_size", "16", "out of range"},
      {"input_size", " 48", "is not an integer"},
      {"input_size", "48px", "is not an integer"},
      {"input_size", "", "is not an integer"},
      {"epoch", "-1", "metadata epoch -1 is out of range"},
      {"epoch", "99999999999999999999", "metadata epoch '99999999999999999999' is not an integer"},
      {"step", "1e3", "metadata step '1e3' is not an integer"},
      {"bad_epochs", "x", "metadata bad_epochs 'x' is not an integer"},
      {"seed", "-3", "metadata seed '-3' is not an unsigned 64-bit integer"},
      {"lr", "nan", "metadata lr 'nan' is not a positive number"},
      {"lr", "0", "is not a positive number"},
      {"best_val_loss", "nan", "metadata best_val_loss 'nan' is not a non-negative number or inf"},
      {"best_val_loss", "0.5x", "is not a non-negative number or inf"},
      {"arch", "densenet999", "metadata arch 'densenet999' is not one of:"},
      {"head", "imagenet", "metadata head 'imagenet' is not one of: flatten, gap"},
      {"flavor", "caffe", "metadata flavor 'caffe' is not one of: keras, torch"},
      {"preprocess", "none", "metadata preprocess 'none' is not one of: study, torch, tf"},
      {"resize", "cubic", "metadata resize 'cubic' is not one of: nearest, bilinear, area"},
      {"optimizer", "sgd", "metadata optimizer 'sgd' is not one of: adam-keras, adam-torch"},
  };
  for (const Case& c : cases) {
    std::map<std::string, std::string> m = good;
    m[c.key] = c.value;
    expect_error([&] { checkpoint_settings(m, "runs/x/checkpoints/last.safetensors"); }, c.expect);
    CheckpointInfo info;
    info.path = "runs/y/checkpoints/best.safetensors";
    info.metadata = m;
    expect_error([&] { net_from_checkpoint(info); }, "runs/y/checkpoints/best.safetensors: metadata " + c.key);
    expect_error([&] { eval_loader_options(m, 8, 1, "z.safetensors"); }, "z.safetensors: metadata " + c.key);
  }
  // The net's keys are required; the progress keys only where resuming reads them.
  std::map<std::string, std::string> missing = good;
  missing.erase("input_size");
  expect_error([&] { checkpoint_settings(missing, "c.safetensors"); }, "c.safetensors: checkpoint metadata has no 'input_size'");
  missing = good;
  missing.erase("epoch");
  EXPECT_EQ(checkpoint_settings(missing, "c.safetensors").epoch, 0);
}

TEST(RunFiles, StrictFileNumbers) {
  int64_t i = 0;
  double d = 0;
  EXPECT_TRUE(parse_file_int("-12", i));
  EXPECT_EQ(i, -12);
  for (const char* bad : {"", " 1", "1 ", "+1", "0x10", "1e3", "1.0", "abc", "99999999999999999999"})
    EXPECT_FALSE(parse_file_int(bad, i)) << bad;
  EXPECT_TRUE(parse_file_double("1e-05", d));
  EXPECT_EQ(d, 1e-5);
  EXPECT_TRUE(parse_file_double("inf", d));
  EXPECT_TRUE(std::isinf(d));
  EXPECT_TRUE(parse_file_double("nan", d));
  for (const char* bad : {"", " 1", "1 ", "1.5x", "abc", "0x1p3", "1e999"}) EXPECT_FALSE(parse_file_double(bad, d)) << bad;
}

// --resume: the flags not given come from the run's args.json; a given one that shapes the run must equal
// the run's, each difference named by its flag; the few that may change do.
TEST(RunFiles, ResumedOptionsTakeTheRunsSettingsAndRefuseChangedOnes) {
  TrainOptions run = unusual_options();
  run.out = "runs/x";
  run.lr = 1e-5;
  TrainOptions command;  // the defaults, then what the command line gave
  command.out = "runs/x";
  command.resume = true;
  command.lr = 1e-3;
  command.epochs = 20;
  command.workers = 1;
  std::set<std::string> given = {"--out", "--resume", "--epochs", "--workers"};
  const auto given_fn = [&](const std::string& flag) { return given.count(flag) > 0; };
  const TrainOptions merged = resumed_options(command, run, given_fn);
  EXPECT_EQ(merged.lr, run.lr);  // not given: the run's
  EXPECT_EQ(merged.seed, run.seed);
  EXPECT_EQ(merged.protocol, "patient");
  EXPECT_EQ(merged.images, 3000);
  EXPECT_EQ(merged.data, run.data);
  EXPECT_EQ(merged.max_bad_fraction, run.max_bad_fraction);
  EXPECT_EQ(merged.epochs, 20);  // given, and may change
  EXPECT_EQ(merged.workers, 1);
  EXPECT_TRUE(merged.resume);

  given.insert("--lr");
  expect_error([&] { resumed_options(command, run, given_fn); },
               "--resume: the run in runs/x used --lr 1e-05 but this command says --lr 0.001; pass "
               "the run's settings or leave the flag out");
  given.insert("--protocol");
  given.insert("--images");
  given.insert("--seed");
  given.insert("--batch-size");
  given.insert("--checkpoint-hist");
  try {
    resumed_options(command, run, given_fn);
    ADD_FAILURE() << "no error";
  } catch (const engine::Error& e) {
    for (const char* part : {"used --lr", "used --protocol patient but this command says --protocol seed",
                             "used --images 3000 but this command says --images 0", "used --seed", "used --batch-size 16"})
      EXPECT_TRUE(contains(e.what(), part)) << part << " in " << e.what();
    EXPECT_FALSE(contains(e.what(), "--checkpoint-hist")) << e.what();
  }
  // Given and equal to the run's: accepted.
  command.lr = run.lr;
  command.protocol = run.protocol;
  command.images = run.images;
  command.seed = run.seed;
  command.batch_size = run.batch_size;
  EXPECT_EQ(resumed_options(command, run, given_fn).lr, run.lr);
  EXPECT_EQ(option_flag("checkpoint_hist"), "--checkpoint-hist");
  EXPECT_EQ(option_flag("max_bad_fraction"), "--max-bad-fraction");
  EXPECT_TRUE(resume_may_change("epochs"));
  EXPECT_FALSE(resume_may_change("seed"));
}

// --config: a new run takes a saved args.json's settings for the flags not given; the given ones win, and
// out and resume stay the command's.
TEST(RunFiles, ConfiguredOptionsTakeTheSavedSettingsAndTheGivenOnesWin) {
  TrainOptions saved = unusual_options();
  saved.out = "runs/old";
  saved.resume = true;
  TrainOptions command;
  command.out = "runs/new";
  command.lr = 0.25;
  const std::set<std::string> given = {"--out", "--lr", "--config"};
  const TrainOptions o = configured_options(command, saved, [&](const std::string& flag) { return given.count(flag) > 0; });
  EXPECT_EQ(o.lr, 0.25);  // given: the command's
  EXPECT_EQ(o.out, "runs/new");
  EXPECT_FALSE(o.resume);
  TrainOptions expected = saved;  // every other setting: the saved one
  expected.lr = 0.25;
  expected.out = "runs/new";
  expected.resume = false;
  EXPECT_EQ(train_options_json(o, {}), train_options_json(expected, {}));
}

TEST(RunFiles, PathsAreMadeAbsolute) {
  TrainOptions o;
  o.data = "some/../data/MURA-v1.1";
  o.weights = "w.safetensors";
  make_paths_absolute(o);
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(o.data, cwd + "/data/MURA-v1.1");
  EXPECT_EQ(o.weights, cwd + "/w.safetensors");
  EXPECT_EQ(o.synthetic_dir, "");
  EXPECT_EQ(absolute_path("/a/./b/../c"), "/a/c");
}

}  // namespace
