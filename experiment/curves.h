// The per-epoch record of a training run and what is drawn from it: summary.csv (written and read back),
// the study's charts (curves.svg, curves.png) and the TensorBoard scalars (tensorboard/train/,
// tensorboard/validation/).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "experiment/svg.h"
#include "experiment/tensorboard.h"

namespace experiment {

struct EpochRow {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_acc = 0, val_loss = 0, val_acc = 0, seconds = 0, images_per_s = 0;
  double lr = 0;  // the learning rate of the epoch's last step (experiment/lr_schedule.h)
  // Validation AUROC (image level) and Cohen's kappa (study level, MURA's); NaN when undefined (one class)
  // or unknown (a summary.csv written before these columns).
  double val_auroc = NAN, val_kappa = NAN;
};

// summary.csv text; the study's three charts of the epoch rows as Keras users plot them, train and
// validation on the same panel (loss; accuracy, its axis within [0, 1]; epoch time), integer epochs on
// x, which curves.svg and curves.png both draw in one row of kCurvesColumns panels; the SVG of them.
constexpr int kCurvesColumns = 3, kCurvesPanelWidth = 360, kCurvesPanelHeight = 250;
std::string summary_csv(const std::vector<EpochRow>& rows);
std::vector<EpochRow> parse_summary_csv(const std::string& text, const std::string& source);
std::vector<Chart> curves_charts(const std::vector<EpochRow>& rows);
std::string curves_svg(const std::vector<EpochRow>& rows, const std::string& title);
// summary.csv's header: epoch,train_loss,train_acc,val_loss,val_acc,val_auroc,val_kappa,epoch_seconds,
// images_per_s,lr. The reader takes the columns by the header's names, so a file from before val_auroc and
// val_kappa reads (them as NaN).
// The rows as TensorBoard scalars in two runs, as Keras' TensorBoard callback writes them, so that
// TensorBoard overlays train and validation in one chart per tag: step = epoch, at the end of each epoch
// (the sum of epoch times so far); train: loss, accuracy, time/epoch_seconds, time/images_per_s, lr;
// validation: loss, accuracy, then auroc and kappa where they are not NaN.
struct EpochScalars {
  std::vector<ScalarEvent> train, validation;
};
EpochScalars epoch_scalar_events(const std::vector<EpochRow>& rows);

// curves.svg, curves.png and tensorboard/{train,validation}/ in the run folder `out`, regenerated whole
// from the rows after every epoch.
void write_run_curves(const std::string& out, const std::vector<EpochRow>& rows, const std::string& title,
                      double start_wall_time);

}  // namespace experiment
