// Learning-rate schedules and the monitored metric (see lr_schedule.h).
#include "experiment/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "engine/check.h"

namespace experiment {

namespace {
bool one_of(const std::string& value, const std::vector<std::string>& choices) {
  return std::find(choices.begin(), choices.end(), value) != choices.end();
}

std::string listed(const std::vector<std::string>& choices) {
  std::string list;
  for (const std::string& c : choices) list += (list.empty() ? "" : ", ") + c;
  return list;
}

// plateau's value after `reductions` decays, before the floor.
double decayed(const LrScheduleOptions& o, int64_t reductions) {
  return o.lr * std::pow(o.decay_rate, static_cast<double>(reductions));
}
}  // namespace

const std::vector<std::string>& lr_schedule_names() {
  static const std::vector<std::string> names = {"constant", "cosine", "step", "plateau"};
  return names;
}

void check_lr_schedule(const LrScheduleOptions& o) {
  ENGINE_USER_CHECK(one_of(o.sched, lr_schedule_names()))
      << "--sched '" << o.sched << "' is not one of: " << listed(lr_schedule_names());
  ENGINE_USER_CHECK(o.warmup_epochs >= 0) << "--warmup-epochs must not be negative, got " << o.warmup_epochs;
  ENGINE_USER_CHECK(o.decay_epochs >= 1) << "--decay-epochs must be at least 1, got " << o.decay_epochs;
  ENGINE_USER_CHECK(o.decay_rate > 0 && o.decay_rate <= 1)
      << "--decay-rate is the factor each decay multiplies the learning rate by (timm's meaning: 0.1 divides it "
         "by 10); it must be in (0, 1], got "
      << o.decay_rate;
  ENGINE_USER_CHECK(o.min_lr >= 0 && o.min_lr <= o.lr)
      << "--min-lr must be between 0 and --lr (" << o.lr << "), got " << o.min_lr;
  ENGINE_USER_CHECK(o.patience_epochs >= 1) << "--patience-epochs must be at least 1, got " << o.patience_epochs;
}

double epoch_lr(const LrScheduleOptions& o, int64_t epoch, const PlateauState& plateau) {
  if (o.sched == "step") return o.lr * std::pow(o.decay_rate, static_cast<double>(epoch / o.decay_epochs));
  if (o.sched == "cosine") {
    const double pi = std::acos(-1.0);
    const double t = static_cast<double>(epoch) / static_cast<double>(std::max<int64_t>(o.epochs, 1));
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + std::cos(pi * t));
  }
  if (o.sched == "plateau") return std::max(decayed(o, plateau.reductions), o.min_lr);
  return o.lr;
}

double warmup_factor(const LrScheduleOptions& o, int64_t step, int64_t steps_per_epoch) {
  const int64_t warmup_steps = o.warmup_epochs * steps_per_epoch;
  if (step >= warmup_steps) return 1;
  return static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
}

double scheduled_lr(const LrScheduleOptions& o, int64_t epoch, int64_t step, int64_t steps_per_epoch,
                    const PlateauState& plateau) {
  const double lr = epoch_lr(o, epoch, plateau);
  const double factor = warmup_factor(o, step, steps_per_epoch);
  return factor == 1 ? lr : lr * factor;
}

PlateauState plateau_after_epoch(const LrScheduleOptions& o, PlateauState s, bool improved) {
  if (o.sched != "plateau") return s;
  if (improved) {
    s.wait = 0;
    return s;
  }
  if (++s.wait >= o.patience_epochs) {
    s.wait = 0;
    if (decayed(o, s.reductions) > o.min_lr) ++s.reductions;  // at the floor: nothing left to decay
  }
  return s;
}

const std::vector<std::string>& best_metric_names() {
  static const std::vector<std::string> names = {"val_loss", "val_auroc", "val_kappa"};
  return names;
}

bool metric_higher_is_better(const std::string& metric) {
  ENGINE_CHECK(one_of(metric, best_metric_names())) << "unknown metric '" << metric << "'";
  return metric != "val_loss";
}

double metric_none_yet(const std::string& metric) { return metric_higher_is_better(metric) ? -INFINITY : INFINITY; }

bool metric_improved(const std::string& metric, double value, double best) {
  if (std::isnan(value)) return false;
  return metric_higher_is_better(metric) ? value > best : value < best;
}

}  // namespace experiment
