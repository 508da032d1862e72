// The run files (experiment/run_files.h): args.json written and read back to the same options, with the
// keys other readers use; an older args.json and broken ones; a checkpoint written and read back to the
// same net, optimizer state and metadata; files that are not checkpoints refused.
#include <cstdio>
#include <filesystem>
#include <functional>

#include "data/io_util.h"
#include "engine/serialize.h"
#include "experiment/metrics.h"
#include "experiment/run_files.h"
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
  o.out = "runs/x";
  o.resume = true;
  o.early_stopping = 3;
  o.deterministic = true;
  o.memory_efficient = true;
  o.test_checkpoint = "best";
  o.keep_epoch_checkpoints = false;
  o.quiet = true;
  return o;
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
  EXPECT_FALSE(back.keep_epoch_checkpoints);
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
  EXPECT_TRUE(o.keep_epoch_checkpoints);

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

}  // namespace
