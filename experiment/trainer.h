// The shared trainer of train_densenet and train_irv2, and the evaluation pass of evaluate.
//
// A run: resolve the data (a MURA root, or the synthetic set generated once into a cache folder), make the
// split (or read it back when resuming), build the net, load ImageNet weights (or say loudly that it is
// random), then epochs of Adam (AdamW with --weight-decay) on BCE, the learning rate set before every step by
// the schedule (experiment/lr_schedule.h), with a validation pass after each, a summary row, checkpoints and a
// progress display; at the end the test split is evaluated (image and study level) and written out.
// Everything that can be wrong with the inputs (data, weights, flags) is checked before --out is created,
// so a failed start leaves no half-written output folder.
// run_training is four stages over one Run state (trainer.cpp): setup (options, data, split, net, weights),
// resume (the state of checkpoints/last), one epoch (train + val + checkpoints + curves), test. A training
// step is engine::TrainingStep; args.json and the checkpoints are written and read by experiment/run_files.h.
//
// Output folder:
//   args.json                  the options and what they resolved to (data root, device); run_files.h
//   split/{train,validation,test}.csv, split.txt
//   summary.csv                epoch,train_loss,train_acc,val_loss,val_acc,val_auroc,val_kappa,epoch_seconds,
//                              images_per_s,lr (the learning rate of the epoch's last step)
//   curves.svg, curves.png     loss and accuracy (train and validation on each panel), epoch time
//   tensorboard/{train,validation}/events.out.tfevents.<start>.mura-engine   summary.csv's scalars (TensorBoard)
//   checkpoints/last.safetensors, best.safetensors (best --best-metric), epoch_NNN.safetensors (--checkpoint-hist)
//   test/metrics.json, report.md, predictions_images.csv, predictions_studies.csv
//   train.log                  every message of the run (stderr's lines, the epoch summaries), appended on resume
// A checkpoint holds "model.<name>" (parameters and BN statistics), "optim.<name>" (Adam's moments) and
// metadata: the format, epoch (epochs completed), optimizer step, seed, the net's settings, the best value of
// --best-metric, the early-stopping count and the plateau schedule's state. The data order and augmentation
// of epoch e are functions of (seed, e), so (seed, epoch) is the whole RNG state, and the learning rate is a
// function of (epoch, step, plateau state): resuming from last continues exactly as an uninterrupted run.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "experiment/curves.h"
#include "experiment/evaluation.h"
#include "experiment/flags.h"
#include "experiment/metrics.h"
#include "experiment/progress.h"
#include "experiment/run_files.h"
#include "nets/net.h"

namespace experiment {

// Registers every training flag on `flags` (defaults = the study's).
void add_train_flags(FlagParser& flags, TrainOptions& options, const std::vector<std::string>& archs);

struct TrainResult {
  std::vector<EpochRow> rows;  // every epoch of the run (resumed ones included)
  bool nonfinite = false;      // stopped by a non-finite loss
  int interrupted_exit_status = 0;  // stopped by SIGINT / SIGTERM: 128 + the signal (130, 143); else 0
  bool early_stopped = false;
  EvaluationResult test;
  bool tested = false;
  std::string out;
  int64_t train_images = 0, validation_images = 0, test_images = 0;  // the split's sizes
};

// The whole run. Throws engine::Error with an actionable message on bad input. The run holds --out's
// RunFolderLock (experiment/run_guard.h) from the end of setup on: a second run on the same folder is
// refused, naming the holder. With options.resume, the options are taken as given (the net's settings must
// match the checkpoint's); train_main merges them with the run's args.json first (resumed_options in
// run_files.h), refusing changed settings. SIGINT / SIGTERM stop it between batches, with
// checkpoints/last intact (interrupted_exit_status set).
TrainResult run_training(const TrainOptions& options);

// The main() of train_densenet / train_irv2: flags, run, exit status (0 ok, 1 error, 2 usage, 3 non-finite,
// 130 / 143 interrupted by SIGINT / SIGTERM). With --resume, the flags not given come from the run's
// args.json.
int train_main(int argc, char** argv, const std::string& program, const std::string& description,
               const std::string& default_arch, const std::vector<std::string>& archs);

// --- Shared pieces (evaluate, predict, compare, tests; the run files are in experiment/run_files.h) ---

// The data root: options.data checked (a clear error when missing or not MURA-shaped), or the synthetic
// set, generated once (atomically: a temporary folder renamed into place).
std::string resolve_data_root(const std::string& data, const std::string& synthetic_dir, int synthetic_patients);
std::string default_synthetic_dir(int synthetic_patients);

}  // namespace experiment
