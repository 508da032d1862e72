// Learning-rate schedules of the trainer, and the validation metric that picks the best epoch.
//
// A schedule is a pure function of (epoch, optimizer step, plateau state): the trainer sets the optimizer's
// learning rate from it before every step, so a resumed run (the step count and the plateau state come
// back from the checkpoint) continues it exactly. epoch e and step s count from 0; E = --epochs,
// lr = --lr, rate = --decay-rate (a factor, as timm's: 0.1 divides by 10).
//
//   constant  lr                                                         (the study)
//   step      lr * rate^floor(e / decay_epochs)                          (timm StepLRScheduler, torch StepLR)
//   cosine    min_lr + (lr - min_lr) * (1 + cos(pi * e / E)) / 2         (timm CosineLRScheduler without
//                                                                          restarts, torch CosineAnnealingLR)
//   plateau   max(lr * rate^k, min_lr), k = the reductions so far: one more each time the monitored
//             metric has not improved for patience_epochs epochs in a row (then the count starts again)
//             (Keras ReduceLROnPlateau's patience; torch's and timm's patience p reduces after p + 1 bad
//             epochs, so their p is our p + 1; no threshold: any improvement counts, as for best.safetensors)
//
// Warm-up, per step: during the first warmup_epochs epochs the scheduled value is scaled by
// (s + 1) / (warmup_epochs * steps_per_epoch), a linear ramp that reaches the full value on the warm-up's
// last step (smoother than timm's per-epoch ramp; no step has a learning rate of 0). The schedules above
// change per epoch, as timm's do by default.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace experiment {

struct LrScheduleOptions {
  std::string sched = "constant";  // constant | cosine | step | plateau
  double lr = 1e-5;                // the base learning rate
  int64_t epochs = 10;             // the run's length: cosine's horizon E
  int64_t warmup_epochs = 0;
  int64_t decay_epochs = 90;       // step: epochs between decays (timm's default)
  double decay_rate = 0.1;         // step, plateau: the factor of each decay
  double min_lr = 0;               // cosine's end, plateau's floor
  int64_t patience_epochs = 10;    // plateau: epochs without improvement before a decay (timm's default)
};

const std::vector<std::string>& lr_schedule_names();  // constant, cosine, step, plateau

// A user's mistake in the schedule's flags: a plain message naming the flag.
void check_lr_schedule(const LrScheduleOptions& options);

// What plateau remembers between epochs (checkpoint metadata lr_reductions, plateau_wait).
struct PlateauState {
  int64_t reductions = 0;  // decays so far
  int64_t wait = 0;        // epochs without improvement since the last improvement or decay
};

// The scheduled value of epoch `epoch`, before warm-up.
double epoch_lr(const LrScheduleOptions& options, int64_t epoch, const PlateauState& plateau);
// The warm-up factor of optimizer step `step` (0-based, over the whole run): 1 after the warm-up.
double warmup_factor(const LrScheduleOptions& options, int64_t step, int64_t steps_per_epoch);
// The learning rate of optimizer step `step`, taken in epoch `epoch`: epoch_lr * warmup_factor.
double scheduled_lr(const LrScheduleOptions& options, int64_t epoch, int64_t step, int64_t steps_per_epoch,
                    const PlateauState& plateau);
// The plateau state after an epoch whose monitored metric did (not) improve; unchanged for the other
// schedules. A decay is counted only while the learning rate is above min_lr.
PlateauState plateau_after_epoch(const LrScheduleOptions& options, PlateauState state, bool improved);

// --- The monitored metric (--best-metric): best.safetensors, --early-stopping and plateau ---
//   val_loss   the validation loss (image level), lower is better
//   val_auroc  the validation AUROC (image level), higher is better
//   val_kappa  the validation Cohen's kappa (study level, MURA's), higher is better
const std::vector<std::string>& best_metric_names();
bool metric_higher_is_better(const std::string& metric);
// The best value before any epoch: inf for a loss, -inf for the others.
double metric_none_yet(const std::string& metric);
// True when `value` is strictly better than `best`; a NaN value (AUROC with one class) never is.
bool metric_improved(const std::string& metric, double value, double best);

}  // namespace experiment
