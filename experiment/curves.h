// The per-epoch record of a training run and what is drawn from it: summary.csv (written and read back),
// the study's five charts (curves.svg, curves.png) and the TensorBoard scalars (tensorboard/).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "experiment/svg.h"
#include "experiment/tensorboard.h"

namespace experiment {

struct EpochRow {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_acc = 0, val_loss = 0, val_acc = 0, seconds = 0, images_per_s = 0, lr = 0;
};

// summary.csv text; the study's five charts of the epoch rows (train loss, val loss, train accuracy, val
// accuracy, epoch time), which curves.svg and curves.png both draw; the SVG of them in one row.
std::string summary_csv(const std::vector<EpochRow>& rows);
std::vector<EpochRow> parse_summary_csv(const std::string& text, const std::string& source);
std::vector<Chart> curves_charts(const std::vector<EpochRow>& rows);
std::string curves_svg(const std::vector<EpochRow>& rows, const std::string& title);
// The rows as TensorBoard scalars, step = epoch, at the end of each epoch (the sum of epoch times so
// far): train/loss, train/accuracy, val/loss, val/accuracy, time/epoch_seconds, time/images_per_s, lr.
std::vector<ScalarEvent> epoch_scalar_events(const std::vector<EpochRow>& rows);

// curves.svg, curves.png and tensorboard/ in the run folder `out`, regenerated whole from the rows after
// every epoch.
void write_run_curves(const std::string& out, const std::vector<EpochRow>& rows, const std::string& title,
                      double start_wall_time);

}  // namespace experiment
