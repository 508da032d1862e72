// The files of a training run that other programs read back: args.json (the options) and the checkpoints.
//
// args.json (JSON, written and read with nlohmann-json): every TrainOptions field under its snake_case name
// ("arch", "lr", "batch_size", ..., "test_checkpoint"), then what the run resolved (strings: "data_root",
// "device_used", "weights_used", "train_images", "validation_images", "test_images"), then
// "format": "mura-engine-args-v1". read_train_options turns it back into TrainOptions (keys absent from an
// older file keep their defaults, but for checkpoint_hist: see TrainOptions; the resolved keys are not
// options and are skipped).
//
// A checkpoint (safetensors) holds "model.<name>" (parameters and BN statistics), "optim.<name>" (the
// optimizer's state) and metadata: format = mura-engine-checkpoint-v1, the net's settings (arch, head,
// flavor, input_size, preprocess, resize), optimizer, lr, epoch (epochs completed), step (optimizer steps),
// seed, data_order, best_val_loss, bad_epochs. Every field is validated where a checkpoint is read
// (checkpoint_settings): a value out of range or not among the known choices is an error naming the file
// and the key, never a crash or an allocation sized by the file.
//
// Resuming (--resume): the settings of the run come from its args.json; the command line may change only
// the settings resume_may_change() lists (epochs, workers, quiet, device, ...). resumed_options() merges.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "engine/optim.h"
#include "nets/net.h"

namespace experiment {

// The options of a training run (the flags of train_densenet / train_irv2; experiment/trainer.h).
struct TrainOptions {
  std::string arch = "densenet201";
  std::string data;     // a MURA-v1.1 root; "" = the synthetic set
  std::string synthetic_dir;  // "" = ${XDG_CACHE_HOME:-~/.cache}/mura-engine/synthetic-v2-p<patients>
  int synthetic_patients = 56;  // train patients of the synthetic set (valid: a quarter of it)
  std::string weights;  // converted ImageNet safetensors; "" = random init
  std::string protocol = "seed";
  int64_t images = 0;   // N sampled images; 0 = all
  std::string parts = "all";
  int64_t epochs = 10;
  int64_t batch_size = 32;
  double lr = 1e-5;
  std::string optimizer = "adam-keras";  // adam-keras | adam-torch
  std::string head = "flatten";
  int64_t input_size = 224;
  std::string preprocess = "study";
  std::string resize = "nearest";
  std::string flavor = "keras";
  bool augment = false;
  double rotation = 30;  // degrees, with --augment
  bool class_weights = false;
  std::string device = "auto";
  uint64_t seed = 0;
  int workers = 2;
  std::string out;
  bool resume = false;
  int64_t early_stopping = 0;  // epochs without a val-loss improvement before stopping; 0 = off
  bool deterministic = false;
  bool memory_efficient = false;  // DenseNet: BN+ReLU recomputed in backward (nets/densenet.h)
  std::string test_checkpoint = "last";  // which weights the final test uses: last | best
  // checkpoints/epoch_NNN.safetensors kept: the last N epochs (older ones deleted after each epoch); 0 = none
  // (last and best only); -1 = every epoch. An older args.json's "keep_epoch_checkpoints" (true: every
  // epoch; also what a file with neither key did) is read into it.
  int64_t checkpoint_hist = 0;
  bool quiet = false;  // no progress display
  double max_bad_fraction = 0;  // share of a split's images that may be unreadable (skipped and counted)
};

// The path made absolute (against the current folder) and lexically normal; "" stays "".
std::string absolute_path(const std::string& path);
// data, synthetic_dir and weights made absolute, so that args.json names them from any folder.
void make_paths_absolute(TrainOptions& options);

// --- args.json ---

// The text of args.json: the options, then `extra` (what the run resolved, as strings), then the format.
std::string train_options_json(const TrainOptions& options, const std::vector<std::pair<std::string, std::string>>& extra);
// The options of an args.json text; `source` names it in errors (a malformed file, a value of the wrong
// type, another format).
TrainOptions parse_train_options(const std::string& json_text, const std::string& source);
// The options of RUN/args.json (a file path).
TrainOptions read_train_options(const std::string& path);

// The command-line flag of an args.json key ("batch_size" -> "--batch-size").
std::string option_flag(const std::string& key);
// True for the settings a resumed run may change: epochs (to extend a run), workers, quiet, device,
// early_stopping, test_checkpoint, checkpoint_hist, deterministic, memory_efficient,
// max_bad_fraction (and out, resume themselves). Every other setting shapes the run and must stay.
bool resume_may_change(const std::string& key);
// On --resume: `command` with every setting whose flag was not given (`given(flag)` false) taken from
// `run` (the run's args.json). A given setting that differs from the run's and may not change is an
// error naming each one by flag: "--resume: the run in runs/x used --lr 1e-05 but this command says --lr
// 0.001; pass the run's settings or leave the flag out". out and resume are the command's.
TrainOptions resumed_options(const TrainOptions& command, const TrainOptions& run,
                             const std::function<bool(const std::string& flag)>& given);

// On --config FILE (a new run from a saved args.json): `command` with every setting whose flag was not
// given taken from `config`; the given ones override it. out and resume are the command's (a new run
// needs its own --out).
TrainOptions configured_options(const TrainOptions& command, const TrainOptions& config,
                                const std::function<bool(const std::string& flag)>& given);

// --- Nets ---

// Builds a net by arch name (nets::make_net: the study's four and "densenet_tiny", for tests and quick
// demos), initialised from `seed`'s initialisation stream. memory_efficient: the DenseNets' recomputing
// mode (ignored by Inception-ResNet-v2).
std::shared_ptr<nets::Net> build_net(const std::string& arch, nets::Head head, nets::Flavor flavor, int64_t input_size,
                                     uint64_t seed, bool memory_efficient = false);

// --- Checkpoints ---

struct CheckpointInfo {
  std::string path;  // where it was read from (names it in errors)
  std::map<std::string, std::string> metadata;
  std::map<std::string, engine::Tensor> model, optimizer;  // prefixes stripped
};

// What a checkpoint records beyond the tensors (see the top of this file).
struct CheckpointProgress {
  int64_t epoch = 0;  // epochs completed
  double best_val_loss = 0;
  int64_t bad_epochs = 0;  // epochs since the best val loss
};
void write_checkpoint(const std::string& path, const nets::Net& net, const engine::Optimizer& optimizer,
                      const TrainOptions& options, const CheckpointProgress& progress);
// Reads and validates (checkpoint_settings) a checkpoint.
CheckpointInfo read_checkpoint(const std::string& path);

// The checkpoint metadata, validated: input_size within [kMinInputSize, kMaxInputSize]; epoch, step,
// bad_epochs non-negative integers (at most kMaxCount); seed an unsigned 64-bit integer; lr a positive
// finite number; best_val_loss a non-negative number or inf (none yet); arch, head, flavor, preprocess,
// resize, optimizer among the known choices. The net's keys (arch, head, flavor, input_size, preprocess,
// resize) are required; the others are checked when present (absent: 0 / inf / ""). Errors name `source`
// (the file) and the key: "runs/x/checkpoints/last.safetensors: metadata input_size 'abc' is not an integer".
struct CheckpointSettings {
  std::string arch, head, flavor, preprocess, resize, optimizer;
  int64_t input_size = 0, epoch = 0, step = 0, bad_epochs = 0;
  uint64_t seed = 0;
  double lr = 0, best_val_loss = 0;
};
constexpr int64_t kMinInputSize = 32, kMaxInputSize = 1024, kMaxCount = int64_t{1} << 40;
CheckpointSettings checkpoint_settings(const std::map<std::string, std::string>& metadata, const std::string& source);

// Strict number parsing for files (the whole text or nothing; no spaces, no hexadecimal): false when
// `text` is not one. parse_file_double accepts "inf", "-inf" and "nan" (our writers print them so).
bool parse_file_int(const std::string& text, int64_t& value);
// A number as the run files write it: "%.9g", enough digits to read a float back exactly.
std::string g9(double v);
bool parse_file_double(const std::string& text, double& value);
// A metadata value; a clear error naming the key when the checkpoint lacks it.
const std::string& checkpoint_value(const std::map<std::string, std::string>& metadata, const std::string& key);
// A net as the checkpoint's metadata describes it (validated), with its weights loaded (CPU).
std::shared_ptr<nets::Net> net_from_checkpoint(const CheckpointInfo& checkpoint);

// Loader options for evaluation from checkpoint metadata (input size, resize, preprocessing), validated;
// `source` names the checkpoint in errors.
data::LoaderOptions eval_loader_options(const std::map<std::string, std::string>& metadata, int64_t batch_size,
                                        int workers, const std::string& source = "checkpoint");

}  // namespace experiment
