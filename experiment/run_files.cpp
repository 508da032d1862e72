// args.json and the checkpoints of a training run (see run_files.h).
#include "experiment/run_files.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "data/io_util.h"
#include "engine/serialize.h"
#include "nets/registry.h"

namespace experiment {

namespace {

constexpr const char* kCheckpointFormat = "mura-engine-checkpoint-v1";
constexpr const char* kArgsFormat = "mura-engine-args-v1";

std::string g9(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}

// Every option with its args.json key, in the file's order: the one list the writer and the reader share.
// TrainOptions may be const (writing) or not (reading).
template <typename Options, typename Visit>
void visit_options(Options& o, Visit&& visit) {
  visit("arch", o.arch);
  visit("data", o.data);
  visit("synthetic_dir", o.synthetic_dir);
  visit("synthetic_patients", o.synthetic_patients);
  visit("weights", o.weights);
  visit("protocol", o.protocol);
  visit("images", o.images);
  visit("parts", o.parts);
  visit("epochs", o.epochs);
  visit("batch_size", o.batch_size);
  visit("lr", o.lr);
  visit("optimizer", o.optimizer);
  visit("head", o.head);
  visit("input_size", o.input_size);
  visit("preprocess", o.preprocess);
  visit("resize", o.resize);
  visit("flavor", o.flavor);
  visit("augment", o.augment);
  visit("rotation", o.rotation);
  visit("class_weights", o.class_weights);
  visit("device", o.device);
  visit("seed", o.seed);
  visit("workers", o.workers);
  visit("out", o.out);
  visit("resume", o.resume);
  visit("early_stopping", o.early_stopping);
  visit("deterministic", o.deterministic);
  visit("memory_efficient", o.memory_efficient);
  visit("test_checkpoint", o.test_checkpoint);
  visit("keep_epoch_checkpoints", o.keep_epoch_checkpoints);
  visit("quiet", o.quiet);
}

bool is_file(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// args.json

std::string train_options_json(const TrainOptions& o, const std::vector<std::pair<std::string, std::string>>& extra) {
  nlohmann::ordered_json j;  // the keys in the order written (ordered_json), for a reader's eye
  visit_options(o, [&](const char* key, const auto& value) { j[key] = value; });
  for (const auto& [key, value] : extra) j[key] = value;
  j["format"] = kArgsFormat;
  return j.dump(2) + "\n";
}

TrainOptions parse_train_options(const std::string& json_text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    ENGINE_FAIL() << source << " is not valid JSON: " << e.what();
  }
  ENGINE_CHECK(j.is_object() && j.contains("format") && j["format"] == kArgsFormat)
      << source << " is not the args.json of a training run (no \"format\": \"" << kArgsFormat << "\")";
  TrainOptions o;
  visit_options(o, [&](const char* key, auto& value) {
    const auto it = j.find(key);
    if (it == j.end()) return;  // an older args.json: the default
    try {
      it->get_to(value);
    } catch (const nlohmann::json::exception& e) {
      ENGINE_FAIL() << source << ": \"" << key << "\" has the wrong type (" << it->type_name() << "): " << e.what();
    }
  });
  return o;
}

TrainOptions read_train_options(const std::string& path) {
  ENGINE_CHECK(is_file(path)) << path << " does not exist (a training run writes args.json into its --out folder)";
  return parse_train_options(data::read_file_text(path), path);
}

// ---------------------------------------------------------------------------------------------------
// Nets and checkpoints

std::shared_ptr<nets::Net> build_net(const std::string& arch, nets::Head head, nets::Flavor flavor, int64_t input_size,
                                     uint64_t seed, bool memory_efficient) {
  engine::Generator gen(seed, 0x1417);  // the initialisation stream
  nets::NetOptions options;
  options.memory_efficient = memory_efficient;
  return nets::make_net(arch, head, flavor, input_size, gen, options);
}

void write_checkpoint(const std::string& path, const nets::Net& net, const engine::Optimizer& optimizer,
                      const TrainOptions& o, const CheckpointProgress& progress) {
  engine::NamedTensors tensors;
  for (const auto& [name, t] : net.state()) tensors.emplace_back("model." + name, t);
  for (const auto& [name, t] : optimizer.state()) tensors.emplace_back("optim." + name, t);
  const std::map<std::string, std::string> metadata = {
      {"format", kCheckpointFormat},
      {"arch", o.arch},
      {"head", o.head},
      {"flavor", o.flavor},
      {"input_size", std::to_string(o.input_size)},
      {"preprocess", o.preprocess},
      {"resize", o.resize},
      {"optimizer", o.optimizer},
      {"lr", g9(o.lr)},
      {"epoch", std::to_string(progress.epoch)},
      {"step", std::to_string(optimizer.step_count())},
      {"seed", std::to_string(o.seed)},
      {"data_order", "loader order and augmentation of epoch e are functions of (seed, e); next epoch " +
                         std::to_string(progress.epoch)},
      {"best_val_loss", g9(progress.best_val_loss)},
      {"bad_epochs", std::to_string(progress.bad_epochs)},
  };
  engine::save_tensors(path, tensors, metadata);
}

CheckpointInfo read_checkpoint(const std::string& path) {
  ENGINE_CHECK(is_file(path)) << "checkpoint " << path << " does not exist (a run writes checkpoints/last.safetensors, "
                                 "best.safetensors and epoch_NNN.safetensors)";
  CheckpointInfo info;
  auto tensors = engine::load_tensors(path, &info.metadata);
  ENGINE_CHECK(info.metadata.count("format") && info.metadata.at("format") == kCheckpointFormat)
      << path << " is not a training checkpoint of this project (no metadata format=" << kCheckpointFormat
      << "); converted ImageNet weights go to --weights";
  for (auto& [name, t] : tensors) {
    if (name.rfind("model.", 0) == 0) info.model.emplace(name.substr(6), t);
    else if (name.rfind("optim.", 0) == 0) info.optimizer.emplace(name.substr(6), t);
  }
  return info;
}

const std::string& checkpoint_value(const std::map<std::string, std::string>& metadata, const std::string& key) {
  auto it = metadata.find(key);
  ENGINE_CHECK(it != metadata.end()) << "checkpoint metadata has no '" << key << "'";
  return it->second;
}

std::shared_ptr<nets::Net> net_from_checkpoint(const CheckpointInfo& c) {
  auto net = build_net(checkpoint_value(c.metadata, "arch"), nets::parse_head(checkpoint_value(c.metadata, "head")),
                       nets::parse_flavor(checkpoint_value(c.metadata, "flavor")),
                       std::stoll(checkpoint_value(c.metadata, "input_size")), 0);
  net->load_state(c.model);
  return net;
}

data::LoaderOptions eval_loader_options(const std::map<std::string, std::string>& m, int64_t batch_size, int workers) {
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.height = lo.width = static_cast<int>(std::stoll(checkpoint_value(m, "input_size")));
  lo.resize = data::parse_resize_mode(checkpoint_value(m, "resize"));
  lo.norm = data::parse_norm_mode(checkpoint_value(m, "preprocess"));
  lo.shuffle = false;
  lo.workers = workers;
  return lo;
}

}  // namespace experiment
