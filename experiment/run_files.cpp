// args.json and the checkpoints of a training run (see run_files.h).
#include "experiment/run_files.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "data/io_util.h"
#include "engine/serialize.h"
#include "experiment/lr_schedule.h"
#include "nets/registry.h"

namespace experiment {

std::string g9(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}

namespace {

constexpr const char* kCheckpointFormat = "mura-engine-checkpoint-v1";
constexpr const char* kArgsFormat = "mura-engine-args-v1";

// Every option with its args.json key, in the file's order: the one list the writer and the reader share.
// TrainOptions may be const (writing) or not (reading).
template <typename Options, typename Visit>
void visit_options(Options& o, Visit&& visit) {
  visit("arch", o.arch);
  visit("recipe", o.recipe);
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
  visit("weight_decay", o.weight_decay);
  visit("sched", o.sched);
  visit("warmup_epochs", o.warmup_epochs);
  visit("decay_epochs", o.decay_epochs);
  visit("decay_rate", o.decay_rate);
  visit("min_lr", o.min_lr);
  visit("patience_epochs", o.patience_epochs);
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
  visit("best_metric", o.best_metric);
  visit("deterministic", o.deterministic);
  visit("precision", o.precision);
  visit("memory_efficient", o.memory_efficient);
  visit("no_graph", o.no_graph);
  visit("test_checkpoint", o.test_checkpoint);
  visit("checkpoint_hist", o.checkpoint_hist);
  visit("quiet", o.quiet);
  visit("max_bad_fraction", o.max_bad_fraction);
}

bool is_file(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// A user's file is wrong: a plain message (no source location).
[[noreturn]] void file_error(const std::string& message) { throw engine::UserError(message); }

// A value of args.json as the command line would spell it: strings bare, numbers and switches as JSON.
// Numbers in their shortest form that reads back to the same double ("1e-05", as a user types it).
std::string option_text(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (!value.is_number_float()) return value.dump();
  const double v = value.get<double>();
  char buffer[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {  // a whole number as one: "30", not "3e+01"
    std::snprintf(buffer, sizeof buffer, "%.0f", v);
    return buffer;
  }
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*g", precision, v);
    if (std::strtod(buffer, nullptr) == v) break;
  }
  return buffer;
}

}  // namespace

std::string absolute_path(const std::string& path) {
  if (path.empty()) return path;
  return std::filesystem::absolute(path).lexically_normal().string();
}

void make_paths_absolute(TrainOptions& o) {
  o.data = absolute_path(o.data);
  o.synthetic_dir = absolute_path(o.synthetic_dir);
  o.weights = absolute_path(o.weights);
}

bool parse_file_int(const std::string& text, int64_t& value) {
  const char *begin = text.data(), *end = begin + text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  return !text.empty() && ec == std::errc() && ptr == end;
}

bool parse_file_double(const std::string& text, double& value) {
  const char *begin = text.data(), *end = begin + text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value, std::chars_format::general);
  return !text.empty() && ec == std::errc() && ptr == end;
}

// ---------------------------------------------------------------------------------------------------
// Precision

engine::Precision parse_precision(const std::string& name) {
  if (name == "f32") return engine::Precision::f32;
  if (name == "bf16") return engine::Precision::bf16;
  ENGINE_USER_FAIL() << "--precision '" << name << "' is not one of: f32, bf16";
}

void add_precision_flags(FlagParser& flags, std::string* precision, bool* amp) {
  flags.add("--precision", precision, "arithmetic: f32 | bf16 (mixed precision: bf16 activations, f32 weights and "
            "statistics; docs/precision.md)", "P");
  flags.add_switch("--amp", amp, "bf16 mixed precision: the same as --precision bf16");
}

void resolve_precision_flag(const FlagParser& flags, std::string& precision, bool amp) {
  if (amp) {
    ENGINE_USER_CHECK(!flags.given("--precision") || precision == "bf16")
        << "--amp means --precision bf16, but --precision " << precision << " was given too; pass one of them";
    precision = "bf16";
  }
  parse_precision(precision);  // a plain error for an unknown one
}

bool precision_aware_given(const FlagParser& flags, const std::string& flag) {
  return flags.given(flag) || (flag == "--precision" && flags.given("--amp"));
}

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
    ENGINE_USER_FAIL() << source << " is not valid JSON: " << e.what();
  }
  ENGINE_USER_CHECK(j.is_object() && j.contains("format") && j["format"] == kArgsFormat)
      << source << " is not the args.json of a training run (no \"format\": \"" << kArgsFormat << "\")";
  TrainOptions o;
  const auto read = [&](const char* key, auto& value) {
    const auto it = j.find(key);
    if (it == j.end()) return;  // an older args.json: the default
    try {
      it->get_to(value);
    } catch (const nlohmann::json::exception& e) {
      ENGINE_USER_FAIL() << source << ": \"" << key << "\" has the wrong type (" << it->type_name() << "): " << e.what();
    }
  };
  visit_options(o, read);
  if (!j.contains("checkpoint_hist")) {
    // Written before --checkpoint-hist: "keep_epoch_checkpoints" (true = every epoch, the default then).
    bool keep_every_epoch = true;
    read("keep_epoch_checkpoints", keep_every_epoch);
    o.checkpoint_hist = keep_every_epoch ? -1 : 0;
  }
  ENGINE_USER_CHECK(o.checkpoint_hist >= -1)
      << source << ": \"checkpoint_hist\" must be -1 (every epoch) or more, got " << o.checkpoint_hist;
  return o;
}

TrainOptions read_train_options(const std::string& path) {
  ENGINE_USER_CHECK(is_file(path)) << path << " does not exist (a training run writes args.json into its --out folder)";
  return parse_train_options(data::read_file_text(path), path);
}

std::string option_flag(const std::string& key) {
  std::string flag = "--" + key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

// Not listed, so fixed for a run: everything that shapes what it computes, among them recipe, weight_decay,
// the schedule (sched, warmup_epochs, decay_epochs, decay_rate, min_lr, patience_epochs) and best_metric
// (which epoch was best, and the plateau state, were decided by it).
bool resume_may_change(const std::string& key) {
  static const std::set<std::string> keys = {"epochs",           "workers",          "quiet",
                                             "device",           "early_stopping",   "test_checkpoint",
                                             "checkpoint_hist",  "deterministic", "memory_efficient",
                                             "no_graph",         "max_bad_fraction", "out",              "resume"};
  return keys.count(key) > 0;
}

namespace {
// `command` with every setting whose flag was not given taken from `saved` (out and resume stay the
// command's). `check_given(key, flag, given_value, saved_value)` sees each given setting (as JSON).
TrainOptions merged_options(const TrainOptions& command, const TrainOptions& saved,
                            const std::function<bool(const std::string& flag)>& given,
                            const std::function<void(const std::string& key, const std::string& flag,
                                                     const nlohmann::json& given_value,
                                                     const nlohmann::json& saved_value)>& check_given) {
  // Both as JSON objects, key by key: one comparison for every type of setting.
  nlohmann::json merged, recorded;
  visit_options(command, [&](const char* key, const auto& value) { merged[key] = value; });
  visit_options(saved, [&](const char* key, const auto& value) { recorded[key] = value; });
  visit_options(command, [&](const char* key, const auto&) {
    if (std::string(key) == "out" || std::string(key) == "resume") return;
    const std::string flag = option_flag(key);
    if (!given(flag)) merged[key] = recorded[key];
    else check_given(key, flag, merged[key], recorded[key]);
  });
  TrainOptions o = command;
  visit_options(o, [&](const char* key, auto& value) { merged[key].get_to(value); });
  return o;
}
}  // namespace

TrainOptions resumed_options(const TrainOptions& command, const TrainOptions& run,
                             const std::function<bool(const std::string& flag)>& given) {
  std::string refused;
  TrainOptions o = merged_options(command, run, given, [&](const std::string& key, const std::string& flag,
                                                           const nlohmann::json& value, const nlohmann::json& recorded) {
    if (resume_may_change(key) || value == recorded) return;
    refused += (refused.empty() ? "" : "\n") + std::string("--resume: the run in ") + command.out + " used " + flag +
               " " + option_text(recorded) + " but this command says " + flag + " " + option_text(value) +
               "; pass the run's settings or leave the flag out";
  });
  // Cosine's horizon is --epochs: a longer or shorter run would change the schedule of the epochs done.
  if (run.sched == "cosine" && o.epochs != run.epochs)
    refused += (refused.empty() ? "" : "\n") + std::string("--resume: the run in ") + command.out +
               " follows --sched cosine over --epochs " + std::to_string(run.epochs) +
               ", which cannot change on resume (this command says --epochs " + std::to_string(o.epochs) +
               "); start a new run (--config " + command.out + "/args.json --out NEW) for another length";
  if (!refused.empty()) file_error(refused);
  return o;
}

TrainOptions configured_options(const TrainOptions& command, const TrainOptions& config,
                                const std::function<bool(const std::string& flag)>& given) {
  return merged_options(command, config, given, [](const std::string&, const std::string&, const nlohmann::json&,
                                                   const nlohmann::json&) {});
}

// ---------------------------------------------------------------------------------------------------
// Recipes

const std::vector<std::string>& recipe_names() {
  static const std::vector<std::string> names = {"study", "mura-paper"};
  return names;
}

Recipe recipe_settings(const std::string& recipe, const std::string& default_arch, const std::vector<std::string>& archs) {
  Recipe r;
  TrainOptions& o = r.options;
  o.arch = default_arch;
  if (recipe == "mura-paper") {
    o.arch = "densenet169";
    o.input_size = 320;
    o.head = "gap";
    o.flavor = "torch";
    o.preprocess = "torch";
    o.resize = "bilinear";
    o.augment = true;
    o.rotation = 30;
    o.class_weights = true;
    o.optimizer = "adam-torch";
    o.lr = 1e-4;
    o.sched = "plateau";
    o.decay_rate = 0.1;
    o.patience_epochs = 1;
    o.best_metric = "val_loss";
    o.batch_size = 8;
  } else if (recipe != "study") {
    std::string list;
    for (const std::string& name : recipe_names()) list += (list.empty() ? "" : ", ") + name;
    file_error("--recipe '" + recipe + "' is not one of: " + list);
  }
  if (std::find(archs.begin(), archs.end(), o.arch) != archs.end()) r.keys.push_back("arch");
  for (const char* key : {"input_size", "head", "flavor", "preprocess", "resize", "augment", "rotation",
                          "class_weights", "optimizer", "lr", "sched", "decay_rate", "patience_epochs", "best_metric",
                          "batch_size"})
    r.keys.push_back(key);
  return r;
}

TrainOptions apply_recipe(const TrainOptions& command, const std::string& default_arch,
                          const std::vector<std::string>& archs, const std::function<bool(const std::string& flag)>& given) {
  const Recipe r = recipe_settings(command.recipe, default_arch, archs);
  const auto sets = [&](const std::string& flag) {
    return std::any_of(r.keys.begin(), r.keys.end(), [&](const std::string& key) { return option_flag(key) == flag; });
  };
  // The recipe's value for each flag it sets and the command did not give; the command's for the rest.
  return merged_options(command, r.options, [&](const std::string& flag) { return given(flag) || !sets(flag); },
                        [](const std::string&, const std::string&, const nlohmann::json&, const nlohmann::json&) {});
}

std::string recipe_flags_text(const std::string& recipe, const std::string& default_arch,
                              const std::vector<std::string>& archs) {
  const Recipe r = recipe_settings(recipe, default_arch, archs);
  nlohmann::json values;
  visit_options(r.options, [&](const char* key, const auto& value) { values[key] = value; });
  std::string text;
  for (const std::string& key : r.keys) {
    const nlohmann::json& value = values[key];
    text += (text.empty() ? "" : " ") + option_flag(key);
    if (value.is_boolean()) {
      if (!value.get<bool>()) text += "=false";
    } else {
      text += " " + option_text(value);
    }
  }
  return text;
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
      {"best_metric", progress.best_metric},
      {"best_" + progress.best_metric, g9(progress.best_value)},
      {"bad_epochs", std::to_string(progress.bad_epochs)},
      {"lr_reductions", std::to_string(progress.lr_reductions)},
      {"plateau_wait", std::to_string(progress.plateau_wait)},
  };
  engine::save_tensors(path, tensors, metadata);
}

CheckpointInfo read_checkpoint(const std::string& path) {
  ENGINE_USER_CHECK(is_file(path)) << "checkpoint " << path << " does not exist (a run writes checkpoints/last.safetensors, "
                                 "best.safetensors and, with --checkpoint-hist, epoch_NNN.safetensors)";
  CheckpointInfo info;
  info.path = path;
  auto tensors = engine::load_tensors(path, &info.metadata);
  ENGINE_USER_CHECK(info.metadata.count("format") && info.metadata.at("format") == kCheckpointFormat)
      << path << " is not a training checkpoint of this project (no metadata format=" << kCheckpointFormat
      << "); converted ImageNet weights go to --weights";
  checkpoint_settings(info.metadata, path);
  for (auto& [name, t] : tensors) {
    if (name.rfind("model.", 0) == 0) info.model.emplace(name.substr(6), t);
    else if (name.rfind("optim.", 0) == 0) info.optimizer.emplace(name.substr(6), t);
  }
  return info;
}

const std::string& checkpoint_value(const std::map<std::string, std::string>& metadata, const std::string& key) {
  auto it = metadata.find(key);
  ENGINE_USER_CHECK(it != metadata.end()) << "checkpoint metadata has no '" << key << "'";
  return it->second;
}

CheckpointSettings checkpoint_settings(const std::map<std::string, std::string>& m, const std::string& source) {
  const auto find = [&](const char* key, bool required) -> const std::string* {
    const auto it = m.find(key);
    if (it != m.end()) return &it->second;
    if (required) file_error(source + ": checkpoint metadata has no '" + key + "'");
    return nullptr;
  };
  // Quoted for the message, cut short: a value may be anything.
  const auto shown = [](const std::string& value) {
    return "'" + (value.size() > 40 ? value.substr(0, 40) + "..." : value) + "'";
  };
  const auto integer = [&](const char* key, bool required, int64_t min, int64_t max, int64_t& out) {
    const std::string* text = find(key, required);
    if (!text) return;
    if (!parse_file_int(*text, out))
      file_error(source + ": metadata " + key + " " + shown(*text) + " is not an integer");
    if (out < min || out > max)
      file_error(source + ": metadata " + key + " " + *text + " is out of range (" + std::to_string(min) + " to " +
                 std::to_string(max) + ")");
  };
  const auto choice = [&](const char* key, bool required, const std::vector<std::string>& choices, std::string& out) {
    const std::string* text = find(key, required);
    if (!text) return;
    std::string list;
    for (const std::string& c : choices) {
      if (c == *text) {
        out = c;
        return;
      }
      list += (list.empty() ? "" : ", ") + c;
    }
    file_error(source + ": metadata " + key + " " + shown(*text) + " is not one of: " + list);
  };
  CheckpointSettings s;
  choice("arch", true, nets::all_arch_names(), s.arch);
  choice("head", true, {"flatten", "gap"}, s.head);
  choice("flavor", true, {"keras", "torch"}, s.flavor);
  choice("preprocess", true, {"study", "torch", "tf"}, s.preprocess);
  choice("resize", true, {"nearest", "bilinear", "area"}, s.resize);
  choice("optimizer", false, {"adam-keras", "adam-torch"}, s.optimizer);
  integer("input_size", true, kMinInputSize, kMaxInputSize, s.input_size);
  integer("epoch", false, 0, kMaxCount, s.epoch);
  integer("step", false, 0, kMaxCount, s.step);
  integer("bad_epochs", false, 0, kMaxCount, s.bad_epochs);
  integer("lr_reductions", false, 0, kMaxCount, s.lr_reductions);
  integer("plateau_wait", false, 0, kMaxCount, s.plateau_wait);
  if (const std::string* text = find("seed", false)) {
    const char *begin = text->data(), *end = begin + text->size();
    const auto [ptr, ec] = std::from_chars(begin, end, s.seed);
    if (text->empty() || ec != std::errc() || ptr != end)
      file_error(source + ": metadata seed " + shown(*text) + " is not an unsigned 64-bit integer");
  }
  if (const std::string* text = find("lr", false))
    if (!parse_file_double(*text, s.lr) || !std::isfinite(s.lr) || s.lr <= 0)
      file_error(source + ": metadata lr " + shown(*text) + " is not a positive number");
  s.best_metric = "val_loss";  // a checkpoint from before --best-metric
  choice("best_metric", false, best_metric_names(), s.best_metric);
  const std::string best_key = "best_" + s.best_metric;
  s.best_value = metric_none_yet(s.best_metric);
  if (const std::string* text = find(best_key.c_str(), false)) {
    double& v = s.best_value;
    const bool number = parse_file_double(*text, v) && !std::isnan(v);
    if (s.best_metric == "val_loss" && !(number && v >= 0))
      file_error(source + ": metadata best_val_loss " + shown(*text) + " is not a non-negative number or inf");
    const double low = s.best_metric == "val_kappa" ? -1 : 0;
    if (s.best_metric != "val_loss" && !(number && (v == -INFINITY || (v >= low && v <= 1))))
      file_error(source + ": metadata " + best_key + " " + shown(*text) + " is not a number in [" + g9(low) +
                 ", 1] or -inf");
  }
  return s;
}

std::shared_ptr<nets::Net> net_from_checkpoint(const CheckpointInfo& c) {
  const CheckpointSettings s = checkpoint_settings(c.metadata, c.path.empty() ? "checkpoint" : c.path);
  auto net = build_net(s.arch, nets::parse_head(s.head), nets::parse_flavor(s.flavor), s.input_size, 0);
  net->load_state(c.model);
  return net;
}

data::LoaderOptions eval_loader_options(const std::map<std::string, std::string>& m, int64_t batch_size, int workers,
                                        const std::string& source) {
  const CheckpointSettings s = checkpoint_settings(m, source);
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.height = lo.width = static_cast<int>(s.input_size);
  lo.resize = data::parse_resize_mode(s.resize);
  lo.norm = data::parse_norm_mode(s.preprocess);
  lo.shuffle = false;
  lo.workers = workers;
  return lo;
}

}  // namespace experiment
