// The shared trainer of train_densenet and train_irv2, and the evaluation pass of evaluate.
//
// A run: resolve the data (a MURA root, or the synthetic set generated once into a cache folder), make the
// split (or read it back when resuming), build the net, load ImageNet weights (or say loudly that it is
// random), then epochs of Adam on BCE with a validation pass after each, a summary row, checkpoints and a
// progress display; at the end the test split is evaluated (image and study level) and written out.
// Everything that can be wrong with the inputs (data, weights, flags) is checked before --out is created,
// so a failed start leaves no half-written output folder.
//
// Output folder:
//   args.json                  the options and what they resolved to (data root, device)
//   split/{train,validation,test}.csv, split.txt
//   summary.csv                epoch,train_loss,train_acc,val_loss,val_acc,epoch_seconds,images_per_s,lr
//   curves.svg, curves.png     the study's five panels: train loss, val loss, train acc., val acc., epoch time
//   tensorboard/events.out.tfevents.<start>.mura-engine   the summary.csv scalars per epoch (TensorBoard)
//   checkpoints/last.safetensors, best.safetensors (lowest val loss), epoch_NNN.safetensors
//   test/metrics.json, report.md, predictions_images.csv, predictions_studies.csv
// A checkpoint holds "model.<name>" (parameters and BN statistics), "optim.<name>" (Adam's moments) and
// metadata: the format, epoch (epochs completed), optimizer step, seed, the net's settings, best val loss
// and the early-stopping count. The data order and augmentation of epoch e are functions of (seed, e), so
// (seed, epoch) is the whole RNG state: resuming from last continues exactly as an uninterrupted run.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "experiment/flags.h"
#include "experiment/metrics.h"
#include "experiment/svg.h"
#include "experiment/tensorboard.h"
#include "nets/net.h"

namespace experiment {

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

// Registers every training flag on `flags` (defaults = the study's).
void add_train_flags(FlagParser& flags, TrainOptions& options, const std::vector<std::string>& archs);
std::string train_options_json(const TrainOptions& options, const std::vector<std::pair<std::string, std::string>>& extra);

struct EpochRow {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_acc = 0, val_loss = 0, val_acc = 0, seconds = 0, images_per_s = 0, lr = 0;
};

struct TrainResult {
  std::vector<EpochRow> rows;  // every epoch of the run (resumed ones included)
  bool nonfinite = false;      // stopped by a non-finite loss
  bool early_stopped = false;
  EvaluationResult test;
  bool tested = false;
  std::string out;
  int64_t train_images = 0, validation_images = 0, test_images = 0;  // the split's sizes
};

// The whole run. Throws engine::Error with an actionable message on bad input.
TrainResult run_training(const TrainOptions& options);

// The main() of train_densenet / train_irv2: flags, run, exit status (0 ok, 1 error, 2 usage, 3 non-finite).
int train_main(int argc, char** argv, const std::string& program, const std::string& description,
               const std::string& default_arch, const std::vector<std::string>& archs);

// --- Shared pieces (evaluate, predict, compare, tests) ---

// The data root: options.data checked (a clear error when missing or not MURA-shaped), or the synthetic
// set, generated once (atomically: a temporary folder renamed into place).
std::string resolve_data_root(const std::string& data, const std::string& synthetic_dir, int synthetic_patients);
std::string default_synthetic_dir(int synthetic_patients);

// Builds a net by arch name: the four of nets::make_net plus "densenet_tiny" (a DenseNet with blocks
// [2, 2, 2, 2], growth 8, bottleneck 32, stem 16: for tests and quick demos only). memory_efficient: the
// DenseNets' recomputing mode (ignored by Inception-ResNet-v2).
std::shared_ptr<nets::Net> build_net(const std::string& arch, nets::Head head, nets::Flavor flavor, int64_t input_size,
                                     uint64_t seed, bool memory_efficient = false);

struct CheckpointInfo {
  std::map<std::string, std::string> metadata;
  std::map<std::string, engine::Tensor> model, optimizer;  // prefixes stripped
};
CheckpointInfo read_checkpoint(const std::string& path);
// A net as the checkpoint's metadata describes it, with its weights loaded (CPU).
std::shared_ptr<nets::Net> net_from_checkpoint(const CheckpointInfo& checkpoint);

// Runs the net (eval mode, no grad) over entries; returns per-image predictions and the wall time.
EvaluationResult predict_entries(nets::Net& net, const std::string& root, const std::vector<data::SplitEntry>& entries,
                                 const data::LoaderOptions& loader_options, engine::Device device,
                                 const std::string& label, bool quiet);

// Loader options for evaluation from checkpoint metadata (input size, resize, preprocessing).
data::LoaderOptions eval_loader_options(const std::map<std::string, std::string>& metadata, int64_t batch_size,
                                        int workers);

// summary.csv text; the study's five charts of the epoch rows (train loss, val loss, train accuracy, val
// accuracy, epoch time), which curves.svg and curves.png both draw; the SVG of them in one row.
std::string summary_csv(const std::vector<EpochRow>& rows);
std::vector<EpochRow> parse_summary_csv(const std::string& text, const std::string& source);
std::vector<Chart> curves_charts(const std::vector<EpochRow>& rows);
std::string curves_svg(const std::vector<EpochRow>& rows, const std::string& title);
// The rows as TensorBoard scalars, step = epoch, at the end of each epoch (the sum of epoch times so
// far): train/loss, train/accuracy, val/loss, val/accuracy, time/epoch_seconds, time/images_per_s, lr.
std::vector<ScalarEvent> epoch_scalar_events(const std::vector<EpochRow>& rows);

// Progress: a bar redrawn in place on a terminal, periodic plain lines otherwise (stderr).
class Progress {
 public:
  Progress(std::string label, int64_t total, bool quiet);
  void update(int64_t done, int64_t images, double loss, double accuracy);
  void finish(const std::string& summary);

 private:
  std::string label_;
  int64_t total_;
  bool quiet_, tty_;
  double start_, last_print_ = -1;
};
double now_seconds();         // a steady clock, for durations
double wall_clock_seconds();  // seconds since 1970 (the system clock)

}  // namespace experiment
