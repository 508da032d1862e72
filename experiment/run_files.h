// The files of a training run that other programs read back: args.json (the options) and the checkpoints.
//
// args.json (JSON, written and read with nlohmann-json): every TrainOptions field under its snake_case name
// ("arch", "lr", "batch_size", ..., "test_checkpoint"), then what the run resolved (strings: "data_root",
// "device_used", "weights_used", "train_images", "validation_images", "test_images"), then
// "format": "mura-engine-args-v1". read_train_options turns it back into TrainOptions (keys absent from an
// older file keep their defaults; the resolved keys are not options and are skipped).
//
// A checkpoint (safetensors) holds "model.<name>" (parameters and BN statistics), "optim.<name>" (the
// optimizer's state) and metadata: format = mura-engine-checkpoint-v1, the net's settings (arch, head,
// flavor, input_size, preprocess, resize), optimizer, lr, epoch (epochs completed), step (optimizer steps),
// seed, data_order, best_val_loss, bad_epochs.
#pragma once
#include <cstdint>
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
  bool keep_epoch_checkpoints = true;
  bool quiet = false;  // no progress display
};

// --- args.json ---

// The text of args.json: the options, then `extra` (what the run resolved, as strings), then the format.
std::string train_options_json(const TrainOptions& options, const std::vector<std::pair<std::string, std::string>>& extra);
// The options of an args.json text; `source` names it in errors (a malformed file, a value of the wrong
// type, another format).
TrainOptions parse_train_options(const std::string& json_text, const std::string& source);
// The options of RUN/args.json (a file path).
TrainOptions read_train_options(const std::string& path);

// --- Nets ---

// Builds a net by arch name (nets::make_net: the study's four and "densenet_tiny", for tests and quick
// demos), initialised from `seed`'s initialisation stream. memory_efficient: the DenseNets' recomputing
// mode (ignored by Inception-ResNet-v2).
std::shared_ptr<nets::Net> build_net(const std::string& arch, nets::Head head, nets::Flavor flavor, int64_t input_size,
                                     uint64_t seed, bool memory_efficient = false);

// --- Checkpoints ---

struct CheckpointInfo {
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
CheckpointInfo read_checkpoint(const std::string& path);
// A metadata value; a clear error naming the key when the checkpoint lacks it.
const std::string& checkpoint_value(const std::map<std::string, std::string>& metadata, const std::string& key);
// A net as the checkpoint's metadata describes it, with its weights loaded (CPU).
std::shared_ptr<nets::Net> net_from_checkpoint(const CheckpointInfo& checkpoint);

// Loader options for evaluation from checkpoint metadata (input size, resize, preprocessing).
data::LoaderOptions eval_loader_options(const std::map<std::string, std::string>& metadata, int64_t batch_size,
                                        int workers);

}  // namespace experiment
