// The evaluation pass shared by the trainer (validation, test), evaluate, predict and compare: the net in
// eval mode, without gradients, over a list of split entries in their order, unaugmented, the images cached
// in memory; per-image predictions and the metrics of experiment/metrics.h.
//
// Test-time augmentation (--tta flip): each image's probability is the mean of the probabilities (the
// sigmoid of the logit, not the logit) of the image and of its horizontal mirror, as timm averages softmax
// outputs; the recorded logit is that of the mean probability, log(p / (1 - p)), so the loss is the
// cross-entropy of the averaged prediction. The mirror is made of the host batch before it is moved.
//
// An ensemble: several nets over the same images; each image's probability is the mean of the members'
// probabilities (again probabilities, not logits), the logit that of the mean; the metrics are computed
// anew from those probabilities (a study's probability: the mean of its images' ensemble probabilities).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "engine/device.h"
#include "engine/tensor.h"
#include "experiment/metrics.h"
#include "experiment/progress.h"
#include "experiment/run_files.h"
#include "nets/net.h"

namespace experiment {

enum class Tta { none, flip };
Tta parse_tta(const std::string& value);  // "none" | "flip"; a plain error naming --tta otherwise
const char* tta_name(Tta tta);

// How one evaluation pass runs beyond its net and images.
struct PassOptions {
  Tta tta = Tta::none;
  RunPlan* plan = nullptr;        // the run's plan (the trainer's), fed this pass as `phase`
  std::string phase = "evaluate";
  // bf16: the net runs on bf16 activations (the batch converted before forward, as the training step's
  // activation_input does); the logits are read back as f32.
  engine::Precision precision = engine::Precision::f32;
  // --fold-bn: every batch norm that follows a convolution folded into it for the pass (Net::fold_batch_norms).
  bool fold_batch_norms = false;
};

// The loader of one evaluation pass: split order, no augmentation, images cached in memory.
std::unique_ptr<data::Loader> evaluation_loader(const std::string& root, const std::vector<data::SplitEntry>& entries,
                                                const data::LoaderOptions& loader_options, const std::string& label);

// The net (eval mode, no grad) over one pass of `loader`.
EvaluationResult predict_with_loader(nets::Net& net, data::Loader& loader, engine::Device device,
                                     const std::string& label, bool quiet, const PassOptions& pass = {});

// Runs the net (eval mode, no grad) over entries; returns per-image predictions, the metrics and the wall
// time. `label` names the progress bar and the error when there is nothing to evaluate.
EvaluationResult predict_entries(nets::Net& net, const std::string& root, const std::vector<data::SplitEntry>& entries,
                                 const data::LoaderOptions& loader_options, engine::Device device,
                                 const std::string& label, bool quiet, const PassOptions& pass = {});

// A batch of images [N, H, W, C] (on the host) mirrored left to right: x'[n, h, w, c] = x[n, h, W-1-w, c].
engine::Tensor mirror_horizontally(const engine::Tensor& images);

// log(p / (1 - p)): +-inf at 1 and 0.
double logit_of_probability(double p);

// The ensemble of members' results over the same images (same paths and labels, in the same order; a
// plain error naming the first difference otherwise, e.g. an image one member could not read): the mean
// probability per image, its metrics, members[i].overall and parts kept in `members` named by `names`,
// the seconds summed.
EvaluationResult ensemble_of(const std::vector<EvaluationResult>& members, const std::vector<std::string>& names);

// Checkpoints over the same entries, each with its own preprocessing (its metadata's input size, resize and
// normalisation), one after the other: the one member's result, or the ensemble of several (ensemble_of,
// the members named by their paths; each member's own result in `member_results` when given). `label`
// names the progress bars ("label member 2/3" for the second member).
struct CheckpointPass {
  int64_t batch_size = 32;
  int workers = 2;
  engine::Device device = engine::Device::cpu();
  std::string label = "evaluate";
  bool quiet = false;
  Tta tta = Tta::none;
  engine::Precision precision = engine::Precision::f32;
  bool fold_batch_norms = false;  // PassOptions::fold_batch_norms
};
EvaluationResult predict_checkpoints(const std::vector<CheckpointInfo>& checkpoints, const std::string& root,
                                     const std::vector<data::SplitEntry>& entries, const CheckpointPass& pass,
                                     std::vector<EvaluationResult>* member_results = nullptr);

// An ensemble evaluated on a split list (e.g. test) is honest only if no member trained on its images: a
// member whose checkpoint lies in a run folder (RUN/checkpoints/X.safetensors, next to RUN/split/) must
// have the same `list` (RUN/split/<list>.csv) as the images evaluated. A plain error naming the member and
// the difference otherwise. Members outside a run folder are not checked.
void check_members_share_split(const std::vector<std::string>& checkpoint_paths, const std::string& list,
                               const std::vector<data::SplitEntry>& entries);

}  // namespace experiment
