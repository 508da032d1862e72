// The files of a training run that other programs read back: args.json (the options) and the checkpoints.
//
// args.json (JSON, written and read with nlohmann-json): every TrainOptions field under its snake_case name
// ("arch", "lr", "batch_size", ..., "test_checkpoint"), then what the run resolved (strings: "data_root",
// "device_used", "processes", "sync_bn", "bucket_mb", "weights_used", "train_images", "validation_images",
// "test_images", and on the CPU "cpu_gemm": the GEMM's library and kernels), then
// "format": "mura-engine-args-v1". read_train_options turns it back into TrainOptions (keys absent from an
// older file keep their defaults, but for checkpoint_hist: see TrainOptions; the resolved keys are not
// options and are skipped).
//
// A checkpoint (safetensors) holds "model.<name>" (parameters and BN statistics), "optim.<name>" (the
// optimizer's state) and metadata: format = mura-engine-checkpoint-v1, the net's settings (arch, head,
// flavor, input_size, preprocess, resize), optimizer, lr (the base, --lr), epoch (epochs completed), step
// (optimizer steps), seed, data_order, best_metric and best_<metric> (e.g. best_val_loss), bad_epochs, and the
// plateau schedule's lr_reductions and plateau_wait. Every field is validated where a checkpoint is read
// (checkpoint_settings): a value out of range or not among the known choices is an error naming the file
// and the key, never a crash or an allocation sized by the file.
//
// Resuming (--resume): the settings of the run come from its args.json; the command line may change only
// the settings resume_may_change() lists (epochs, workers, quiet, device, ...), and not --epochs under
// --sched cosine (its horizon). resumed_options() merges.
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
#include "engine/training_step.h"
#include "experiment/flags.h"
#include "nets/net.h"

namespace experiment {

// The options of a training run (the flags of train_densenet / train_irv2; experiment/trainer.h).
struct TrainOptions {
  std::string arch = "densenet201";
  // The recipe whose settings were the defaults (apply_recipe): study (the study's, the defaults below) |
  // mura-paper (the MURA paper's). Recorded; flags given beside it override its settings.
  std::string recipe = "study";
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
  double weight_decay = 0;  // decoupled (AdamW): p -= lr * weight_decay * p with every step
  // The learning-rate schedule (experiment/lr_schedule.h; timm's flag names and defaults).
  std::string sched = "constant";  // constant | cosine | step | plateau
  int64_t warmup_epochs = 0;       // linear warm-up, per step
  int64_t decay_epochs = 90;       // step: epochs between decays
  double decay_rate = 0.1;         // step, plateau: the factor of each decay
  double min_lr = 0;               // cosine's end, plateau's floor
  int64_t patience_epochs = 10;    // plateau: epochs without improvement before a decay
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
  int64_t early_stopping = 0;  // epochs without an improvement of best_metric before stopping; 0 = off
  // The metric that picks best.safetensors and drives --early-stopping and the plateau schedule:
  // val_loss | val_auroc | val_kappa (experiment/lr_schedule.h).
  std::string best_metric = "val_loss";
  bool deterministic = false;
  // The arithmetic of the training step and of the evaluation passes: f32 | bf16 (mixed precision:
  // bf16 activations, f32 master weights; docs/precision.md). An older args.json without it: f32.
  std::string precision = "f32";
  bool amp = false;  // --amp, the switch form of --precision bf16 (resolve_precision_flag); not in args.json
  bool memory_efficient = false;  // DenseNet: BN+ReLU recomputed in backward (nets/densenet.h)
  bool no_graph = false;  // CUDA: every training step eager, not replayed as a CUDA graph (engine/graph_step.h)
  std::string test_checkpoint = "last";  // which weights the final test uses: last | best
  // checkpoints/epoch_NNN.safetensors kept: the last N epochs (older ones deleted after each epoch); 0 = none
  // (last and best only); -1 = every epoch. An older args.json's "keep_epoch_checkpoints" (true: every
  // epoch; also what a file with neither key did) is read into it.
  int64_t checkpoint_hist = 0;
  bool quiet = false;  // no progress display
  double max_bad_fraction = 0;  // share of a split's images that may be unreadable (skipped and counted)
  // Data parallelism: batch-norm statistics over every process (engine/batch_norm_sync.h). A setting of
  // the launch, like workers: not in args.json (a resumed run may use another process count).
  bool sync_bn = false;
  // Data parallelism: the gradient all-reduce in buckets of this many MB, started during backward
  // (engine/grad_buckets.h); 0 = one all-reduce after backward. A launch setting too: not in args.json.
  double bucket_mb = 25;
};

// The path made absolute (against the current folder) and lexically normal; "" stays "".
std::string absolute_path(const std::string& path);
// data, synthetic_dir and weights made absolute, so that args.json names them from any folder.
void make_paths_absolute(TrainOptions& options);

// --- Precision (--precision f32|bf16, and --amp = --precision bf16) ---

// The step's precision of "f32" | "bf16"; a plain error naming --precision otherwise.
engine::Precision parse_precision(const std::string& name);
// Adds --precision (into *precision) and the switch --amp (into *amp).
void add_precision_flags(FlagParser& flags, std::string* precision, bool* amp);
// After parsing: --amp sets *precision to bf16; a plain error when --precision names another one, or an
// unknown one.
void resolve_precision_flag(const FlagParser& flags, std::string& precision, bool amp);
// flags.given(flag), --precision counting as given when --amp was.
bool precision_aware_given(const FlagParser& flags, const std::string& flag);

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
// early_stopping, test_checkpoint, checkpoint_hist, deterministic, memory_efficient, no_graph,
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

// --- Recipes (--recipe): named sets of defaults ---
//   study       the study's settings: the TrainOptions defaults (the program's own architecture)
//   mura-paper  the MURA paper's (Rajpurkar et al. 2017): DenseNet-169 (train_densenet; train_irv2 keeps
//               Inception-ResNet-v2), 320 px, the gap head (a single sigmoid output after global pooling),
//               torch batch-norm, ImageNet normalisation (preprocess torch, bilinear resizing), random
//               horizontal flips and rotations up to 30 degrees, per-body-part class weights, Adam (PyTorch)
//               at 1e-4 divided by 10 when the val loss has not improved for 1 epoch, batch 8.
const std::vector<std::string>& recipe_names();
// The settings `recipe` sets, as TrainOptions (the other fields: defaults) and the args.json keys it sets
// (every recipe sets the same keys, but arch, which is set only where the program has the recipe's net:
// `archs`; the study's arch is `default_arch`). Throws a user error for an unknown recipe.
struct Recipe {
  TrainOptions options;
  std::vector<std::string> keys;
};
Recipe recipe_settings(const std::string& recipe, const std::string& default_arch, const std::vector<std::string>& archs);
// `command` with the settings of its recipe (command.recipe) where their flag was not given.
TrainOptions apply_recipe(const TrainOptions& command, const std::string& default_arch,
                          const std::vector<std::string>& archs, const std::function<bool(const std::string& flag)>& given);
// What a recipe sets, as flags: "--arch densenet169 --input-size 320 ... --batch-size 8" (for --help).
std::string recipe_flags_text(const std::string& recipe, const std::string& default_arch,
                              const std::vector<std::string>& archs);

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
  double best_value = 0;  // the best value of best_metric so far (metric_none_yet before any)
  int64_t bad_epochs = 0;  // epochs since the best value
  std::string best_metric = "val_loss";  // --best-metric
  int64_t lr_reductions = 0, plateau_wait = 0;  // the plateau schedule's state (PlateauState)
};
void write_checkpoint(const std::string& path, const nets::Net& net, const engine::Optimizer& optimizer,
                      const TrainOptions& options, const CheckpointProgress& progress);
// Reads and validates (checkpoint_settings) a checkpoint.
CheckpointInfo read_checkpoint(const std::string& path);

// The checkpoint metadata, validated: input_size within [kMinInputSize, kMaxInputSize]; epoch, step,
// bad_epochs, lr_reductions, plateau_wait non-negative integers (at most kMaxCount); seed an unsigned 64-bit
// integer; lr a positive finite number; best_metric one of val_loss, val_auroc, val_kappa (absent: val_loss,
// as every checkpoint before --best-metric) and its best value under the key "best_<metric>": best_val_loss
// a non-negative number or inf, best_val_auroc in [0, 1], best_val_kappa in [-1, 1], either or -inf (none
// yet); arch, head, flavor, preprocess, resize, optimizer among the known choices. The net's keys (arch,
// head, flavor, input_size, preprocess, resize) are required; the others are checked when present (absent:
// 0 / none yet / ""). Errors name `source` (the file) and the key: "runs/x/checkpoints/last.safetensors:
// metadata input_size 'abc' is not an integer".
struct CheckpointSettings {
  std::string arch, head, flavor, preprocess, resize, optimizer, best_metric;
  int64_t input_size = 0, epoch = 0, step = 0, bad_epochs = 0, lr_reductions = 0, plateau_wait = 0;
  uint64_t seed = 0;
  double lr = 0, best_value = 0;
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
