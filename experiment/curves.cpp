// summary.csv, the training curves and their TensorBoard scalars (see curves.h).
#include "experiment/curves.h"

#include <algorithm>
#include <utility>

#include "data/csv.h"
#include "data/image_write.h"
#include "data/io_util.h"
#include "engine/check.h"
#include "experiment/chart_png.h"
#include "experiment/run_files.h"

namespace experiment {

namespace {
// summary.csv's columns after "epoch", in the file's order: the one list its writer and reader share.
// `since_v2`: added later (val_auroc, val_kappa); an older file lacks them and reads them as NaN.
struct SummaryColumn {
  const char* name;
  double EpochRow::*field;
  bool since_v2;
};
constexpr SummaryColumn kSummaryColumns[] = {
    {"train_loss", &EpochRow::train_loss, false}, {"train_acc", &EpochRow::train_acc, false},
    {"val_loss", &EpochRow::val_loss, false},     {"val_acc", &EpochRow::val_acc, false},
    {"val_auroc", &EpochRow::val_auroc, true},    {"val_kappa", &EpochRow::val_kappa, true},
    {"epoch_seconds", &EpochRow::seconds, false}, {"images_per_s", &EpochRow::images_per_s, false},
    {"lr", &EpochRow::lr, false}};
}  // namespace

std::string summary_csv(const std::vector<EpochRow>& rows) {
  std::string text = "epoch";
  for (const SummaryColumn& c : kSummaryColumns) text += std::string(",") + c.name;
  text += "\n";
  for (const EpochRow& r : rows) {
    text += std::to_string(r.epoch);
    for (const SummaryColumn& c : kSummaryColumns) text += "," + g9(r.*c.field);
    text += "\n";
  }
  return text;
}

std::vector<EpochRow> parse_summary_csv(const std::string& text, const std::string& source) {
  std::vector<EpochRow> rows;
  const auto csv = data::parse_csv(text, source);
  if (csv.empty()) return rows;
  // The header names the columns: where each of ours is (-1: absent, allowed for the later ones).
  const std::vector<std::string>& header = csv[0].fields;
  ENGINE_USER_CHECK(!header.empty() && header[0] == "epoch")
      << source << ":" << csv[0].line << ": the header does not start with 'epoch' (not a summary.csv)";
  std::vector<int> at;
  for (const SummaryColumn& c : kSummaryColumns) {
    const auto it = std::find(header.begin(), header.end(), c.name);
    ENGINE_USER_CHECK(it != header.end() || c.since_v2) << source << ":" << csv[0].line << ": no column '" << c.name << "'";
    at.push_back(it == header.end() ? -1 : static_cast<int>(it - header.begin()));
  }
  for (size_t i = 1; i < csv.size(); ++i) {
    const auto& f = csv[i].fields;
    ENGINE_USER_CHECK(f.size() == header.size())
        << source << ":" << csv[i].line << ": expected " << header.size() << " fields, got " << f.size();
    EpochRow r;
    ENGINE_USER_CHECK(parse_file_int(f[0], r.epoch) && r.epoch >= 1 && r.epoch <= kMaxCount)
        << source << ":" << csv[i].line << ": epoch '" << f[0] << "' is not a positive integer";
    for (size_t k = 0; k < at.size(); ++k) {
      if (at[k] < 0) continue;
      const std::string& field = f[static_cast<size_t>(at[k])];
      ENGINE_USER_CHECK(parse_file_double(field, r.*kSummaryColumns[k].field))
          << source << ":" << csv[i].line << ": " << kSummaryColumns[k].name << " '" << field << "' is not a number";
    }
    rows.push_back(r);
  }
  return rows;
}

std::vector<Chart> curves_charts(const std::vector<EpochRow>& rows) {
  // As Keras users plot their History: train and validation on one panel per quantity, epochs on x.
  std::vector<double> x, tl, vl, ta, va, sec;
  for (const EpochRow& r : rows) {
    x.push_back(static_cast<double>(r.epoch));
    tl.push_back(r.train_loss);
    vl.push_back(r.val_loss);
    ta.push_back(r.train_acc);
    va.push_back(r.val_acc);
    sec.push_back(r.seconds);
  }
  Chart loss{"loss", "epoch", {{"train", x, tl}, {"validation", x, vl}}};
  Chart accuracy{"accuracy", "epoch", {{"train", x, ta}, {"validation", x, va}}};
  Chart time{"epoch time (s)", "epoch", {{"train", x, sec}}};
  for (Chart* c : {&loss, &accuracy, &time}) c->integer_x = true;
  accuracy.y_floor = 0;
  accuracy.y_ceiling = 1;
  return {loss, accuracy, time};
}

std::string curves_svg(const std::vector<EpochRow>& rows, const std::string& title) {
  return svg_chart_grid(curves_charts(rows), title, kCurvesColumns, kCurvesPanelWidth, kCurvesPanelHeight);
}

EpochScalars epoch_scalar_events(const std::vector<EpochRow>& rows) {
  EpochScalars runs;
  double seconds = 0;
  for (const EpochRow& r : rows) {
    seconds += r.seconds;
    runs.train.push_back({r.epoch,
                          seconds,
                          {{"loss", static_cast<float>(r.train_loss)},
                           {"accuracy", static_cast<float>(r.train_acc)},
                           {"time/epoch_seconds", static_cast<float>(r.seconds)},
                           {"time/images_per_s", static_cast<float>(r.images_per_s)},
                           {"lr", static_cast<float>(r.lr)}}});
    runs.validation.push_back(
        {r.epoch, seconds, {{"loss", static_cast<float>(r.val_loss)}, {"accuracy", static_cast<float>(r.val_acc)}}});
    for (const auto& [tag, value] : {std::pair{"auroc", r.val_auroc}, std::pair{"kappa", r.val_kappa}})
      if (!std::isnan(value)) runs.validation.back().values.emplace_back(tag, static_cast<float>(value));
  }
  return runs;
}

void write_run_curves(const std::string& out, const std::vector<EpochRow>& rows, const std::string& title,
                  double start_wall_time) {
  const std::vector<Chart> charts = curves_charts(rows);
  data::write_file_atomic(out + "/curves.svg",
                           svg_chart_grid(charts, title, kCurvesColumns, kCurvesPanelWidth, kCurvesPanelHeight));
  data::write_png_file(out + "/curves.png",
                       png_chart_grid(charts, title, kCurvesColumns, kCurvesPanelWidth, kCurvesPanelHeight),
                       /*durable=*/true);
  // The numbers exactly as summary.csv holds them (9 digits), from which a resumed run regenerates the
  // file: then its bytes equal the file's, and the next epoch is appended to it (tensorboard.h).
  const std::vector<EpochRow> recorded = parse_summary_csv(summary_csv(rows), "summary.csv");
  const EpochScalars runs = epoch_scalar_events(recorded);
  remove_event_files(out + "/tensorboard");  // the older layout's single file, replaced by the two runs
  write_tensorboard_run(out + "/tensorboard/train", runs.train, start_wall_time);
  write_tensorboard_run(out + "/tensorboard/validation", runs.validation, start_wall_time);
}

}  // namespace experiment
