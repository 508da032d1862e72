// Binary metrics, study aggregation and the evaluation files (see metrics.h for the maths).
#include "experiment/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include "data/csv.h"
#include "data/io_util.h"
#include "engine/check.h"

namespace experiment {

double probability_of_logit(double z) {
  return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
}

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double ratio(int64_t num, int64_t den) { return den > 0 ? static_cast<double>(num) / static_cast<double>(den) : kNaN; }

// Numerically stable BCE of a logit z against label t: max(z, 0) - z t + log(1 + exp(-|z|)).
double bce(double z, int t) { return std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::fabs(z))); }

std::string g17(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}
}  // namespace

namespace {

// A NaN score has no rank: refuse it, naming how many (callers with names, compute_metrics, check first).
void check_no_nan_scores(const std::vector<double>& scores, const char* what) {
  int64_t nan_count = 0;
  for (double s : scores) nan_count += std::isnan(s) ? 1 : 0;
  if (nan_count > 0)
    throw engine::Error(std::string(what) + ": " + std::to_string(nan_count) + " of " + std::to_string(scores.size()) +
                        " scores are NaN (a NaN score has no rank; the model's output is non-finite)");
}

// Indices of `scores` ordered by score (ascending, or descending), ties in index order. The scores hold
// no NaN (checked), so `<` is a strict weak order on them (infinities included) and std::sort is defined.
std::vector<size_t> order_by_score(const std::vector<double>& scores, bool descending) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return descending ? scores[a] > scores[b] : scores[a] < scores[b];
  });
  return order;
}

// The end of the run of scores tied with order[i]: the first position after i whose score is different.
// Starts at i + 1, so every run holds at least one item and a loop over runs always advances, whatever
// the floats are.
size_t end_of_tie(const std::vector<double>& scores, const std::vector<size_t>& order, size_t i) {
  size_t j = i + 1;
  while (j < order.size() && !(scores[order[j]] != scores[order[i]])) ++j;
  return j;
}

}  // namespace

double auroc(const std::vector<double>& scores, const std::vector<int>& labels) {
  ENGINE_CHECK(scores.size() == labels.size()) << "auroc: " << scores.size() << " scores but " << labels.size() << " labels";
  check_no_nan_scores(scores, "auroc");
  const size_t n = scores.size();
  const std::vector<size_t> order = order_by_score(scores, false);
  double positive_rank_sum = 0;
  int64_t positives = 0;
  for (size_t i = 0; i < n;) {
    const size_t j = end_of_tie(scores, order, i);
    const double mid_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;  // ranks i+1..j
    for (size_t k = i; k < j; ++k)
      if (labels[order[k]]) {
        positive_rank_sum += mid_rank;
        ++positives;
      }
    i = j;
  }
  const int64_t negatives = static_cast<int64_t>(n) - positives;
  if (positives == 0 || negatives == 0) return kNaN;
  const double p = static_cast<double>(positives);
  return (positive_rank_sum - p * (p + 1) / 2) / (p * static_cast<double>(negatives));
}

std::vector<std::pair<double, double>> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  ENGINE_CHECK(scores.size() == labels.size()) << "roc_curve: sizes differ";
  check_no_nan_scores(scores, "roc_curve");
  const std::vector<size_t> order = order_by_score(scores, true);
  int64_t pos = 0, neg = 0;
  for (int l : labels) (l ? pos : neg)++;
  std::vector<std::pair<double, double>> points{{0.0, 0.0}};
  int64_t tp = 0, fp = 0;
  for (size_t i = 0; i < order.size();) {
    const size_t j = end_of_tie(scores, order, i);
    for (size_t k = i; k < j; ++k) (labels[order[k]] ? tp : fp)++;
    points.emplace_back(neg ? static_cast<double>(fp) / neg : 0.0, pos ? static_cast<double>(tp) / pos : 0.0);
    i = j;
  }
  return points;
}

Confusion confusion_at(const std::vector<double>& probabilities, const std::vector<int>& labels, double threshold) {
  ENGINE_CHECK(probabilities.size() == labels.size()) << "confusion: sizes differ";
  Confusion c;
  for (size_t i = 0; i < labels.size(); ++i) {
    const bool predicted = probabilities[i] > threshold;
    if (labels[i]) (predicted ? c.tp : c.fn)++;
    else (predicted ? c.fp : c.tn)++;
  }
  return c;
}

double cohen_kappa(const Confusion& c) {
  const double n = static_cast<double>(c.total());
  if (n == 0) return kNaN;
  const double observed = static_cast<double>(c.tp + c.tn) / n;
  const double expected = (static_cast<double>(c.tp + c.fp) * static_cast<double>(c.tp + c.fn) +
                           static_cast<double>(c.tn + c.fn) * static_cast<double>(c.tn + c.fp)) / (n * n);
  if (expected >= 1.0) return kNaN;
  return (observed - expected) / (1.0 - expected);
}

BinaryMetrics binary_metrics(const std::vector<double>& probabilities, const std::vector<int>& labels,
                             const std::vector<double>& logits) {
  BinaryMetrics m;
  m.count = static_cast<int64_t>(labels.size());
  for (int l : labels) m.positives += l ? 1 : 0;
  m.confusion = confusion_at(probabilities, labels);
  const Confusion& c = m.confusion;
  m.accuracy = ratio(c.tp + c.tn, c.total());
  m.sensitivity = ratio(c.tp, c.tp + c.fn);
  m.specificity = ratio(c.tn, c.tn + c.fp);
  m.kappa = cohen_kappa(c);
  m.auroc = auroc(probabilities, labels);
  if (logits.empty() || labels.empty()) {
    m.loss = kNaN;
  } else {
    ENGINE_CHECK(logits.size() == labels.size()) << "binary_metrics: sizes differ";
    double sum = 0;
    for (size_t i = 0; i < labels.size(); ++i) sum += bce(logits[i], labels[i]);
    m.loss = sum / static_cast<double>(labels.size());
  }
  return m;
}

std::vector<StudyPrediction> aggregate_studies(const std::vector<ImagePrediction>& images) {
  std::vector<StudyPrediction> studies;
  std::unordered_map<std::string, size_t> where;
  for (const ImagePrediction& im : images) {
    auto [it, fresh] = where.emplace(im.study, studies.size());
    if (fresh) {
      StudyPrediction s;
      s.study = im.study;
      s.part = im.part;
      s.label = im.label;
      studies.push_back(s);
    }
    StudyPrediction& s = studies[it->second];
    ENGINE_USER_CHECK(s.label == im.label) << "study " << im.study << " has images with different labels (" << im.path
                                           << "): a study has one label; check the split file";
    s.images += 1;
    s.probability += im.probability;
  }
  for (StudyPrediction& s : studies) s.probability /= static_cast<double>(s.images);
  return studies;
}

namespace {
LevelMetrics level_metrics(const std::vector<ImagePrediction>& images, const std::vector<StudyPrediction>& studies) {
  std::vector<double> p, z, sp;
  std::vector<int> y, sy;
  for (const ImagePrediction& im : images) {
    p.push_back(im.probability);
    z.push_back(im.logit);
    y.push_back(im.label);
  }
  for (const StudyPrediction& s : studies) {
    sp.push_back(s.probability);
    sy.push_back(s.label);
  }
  return {binary_metrics(p, y, z), binary_metrics(sp, sy)};
}
}  // namespace

void check_finite_scores(const std::vector<ImagePrediction>& images) {
  std::vector<const ImagePrediction*> bad;
  for (const ImagePrediction& im : images)
    if (!std::isfinite(im.probability) || std::isnan(im.logit)) bad.push_back(&im);
  if (bad.empty()) return;
  std::string kinds, names;
  bool nan = false, inf = false;
  for (const ImagePrediction* im : bad) (std::isnan(im->probability) || std::isnan(im->logit) ? nan : inf) = true;
  kinds = nan && inf ? "NaN or infinite" : nan ? "NaN" : "infinite";
  constexpr size_t kNamed = 5;
  for (size_t i = 0; i < bad.size() && i < kNamed; ++i) names += (i ? ", " : "") + bad[i]->path;
  if (bad.size() > kNamed) names += ", ... (" + std::to_string(bad.size() - kNamed) + " more)";
  throw engine::UserError(std::to_string(bad.size()) + (bad.size() == 1 ? " image has" : " images have") +
                          " a non-finite score (" + kinds + "): " + names +
                          "; the checkpoint's weights are probably non-finite (check them, or train again)");
}

void compute_metrics(EvaluationResult& result) {
  check_finite_scores(result.images);
  result.studies = aggregate_studies(result.images);
  result.overall = level_metrics(result.images, result.studies);
  result.parts.clear();
  for (data::BodyPart part : data::kAllBodyParts) {
    std::vector<ImagePrediction> images;
    std::vector<StudyPrediction> studies;
    for (const ImagePrediction& im : result.images)
      if (im.part == part) images.push_back(im);
    for (const StudyPrediction& s : result.studies)
      if (s.part == part) studies.push_back(s);
    if (!images.empty()) result.parts[data::body_part_name(part)] = level_metrics(images, studies);
  }
  result.images_per_second = result.seconds > 0 ? static_cast<double>(result.images.size()) / result.seconds : 0;
}

std::string fmt(double value, int digits) {
  if (std::isnan(value)) return "n/a";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char ch : text) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (ch < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", ch);
          out += buffer;
        } else {
          out += static_cast<char>(ch);
        }
    }
  }
  return out + "\"";
}

std::string json_string_field(const std::string& json, const std::string& key) {
  const std::string needle = json_string(key) + ": \"";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  std::string out;
  for (size_t i = at + needle.size(); i < json.size(); ++i) {
    if (json[i] == '"') return out;
    if (json[i] == '\\' && i + 1 < json.size()) {
      const char c = json[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
    } else {
      out += json[i];
    }
  }
  return "";
}

std::string json_number(double value) { return std::isfinite(value) ? g17(value) : "null"; }

void write_image_predictions(const std::string& path, const std::vector<ImagePrediction>& images) {
  std::string text = "path,study,body_part,label,logit,probability,predicted\n";
  for (const ImagePrediction& im : images)
    text += data::csv_line({im.path, im.study, data::body_part_folder(im.part), std::to_string(im.label),
                            g17(im.logit), g17(im.probability), im.probability > kThreshold ? "1" : "0"});
  data::write_file_atomic(path, text);
}

void write_study_predictions(const std::string& path, const std::vector<StudyPrediction>& studies) {
  std::string text = "study,body_part,label,images,probability,predicted\n";
  for (const StudyPrediction& s : studies)
    text += data::csv_line({s.study, data::body_part_folder(s.part), std::to_string(s.label), std::to_string(s.images),
                            g17(s.probability), s.probability > kThreshold ? "1" : "0"});
  data::write_file_atomic(path, text);
}

namespace {
std::string metrics_object(const BinaryMetrics& m, const std::string& indent) {
  std::ostringstream o;
  o << "{\n"
    << indent << "  \"count\": " << m.count << ",\n"
    << indent << "  \"positives\": " << m.positives << ",\n"
    << indent << "  \"accuracy\": " << json_number(m.accuracy) << ",\n"
    << indent << "  \"loss\": " << json_number(m.loss) << ",\n"
    << indent << "  \"auroc\": " << json_number(m.auroc) << ",\n"
    << indent << "  \"kappa\": " << json_number(m.kappa) << ",\n"
    << indent << "  \"sensitivity\": " << json_number(m.sensitivity) << ",\n"
    << indent << "  \"specificity\": " << json_number(m.specificity) << ",\n"
    << indent << "  \"confusion\": {\"tp\": " << m.confusion.tp << ", \"fp\": " << m.confusion.fp
    << ", \"tn\": " << m.confusion.tn << ", \"fn\": " << m.confusion.fn << "}\n"
    << indent << "}";
  return o.str();
}
std::string level_object(const LevelMetrics& l, const std::string& indent) {
  return "{\n" + indent + "  \"image\": " + metrics_object(l.image, indent + "  ") + ",\n" + indent +
         "  \"study\": " + metrics_object(l.study, indent + "  ") + "\n" + indent + "}";
}
}  // namespace

std::string metrics_json(const EvaluationResult& r, const std::vector<std::pair<std::string, std::string>>& context) {
  std::ostringstream o;
  o << "{\n  \"context\": {";
  for (size_t i = 0; i < context.size(); ++i)
    o << (i ? ", " : "") << json_string(context[i].first) << ": " << json_string(context[i].second);
  o << "},\n  \"threshold\": " << kThreshold << ",\n  \"images\": " << r.images.size()
    << ",\n  \"studies\": " << r.studies.size() << ",\n  \"seconds\": " << json_number(r.seconds)
    << ",\n  \"images_per_second\": " << json_number(r.images_per_second)
    << ",\n  \"overall\": " << level_object(r.overall, "  ") << ",\n  \"body_parts\": {";
  size_t i = 0;
  for (const auto& [part, level] : r.parts) o << (i++ ? "," : "") << "\n    " << json_string(part) << ": " << level_object(level, "    ");
  o << "\n  }";
  if (!r.members.empty()) {
    o << ",\n  \"members\": [";
    for (size_t m = 0; m < r.members.size(); ++m) {
      o << (m ? "," : "") << "\n    {\"name\": " << json_string(r.members[m].name)
        << ", \"overall\": " << level_object(r.members[m].overall, "      ") << ", \"body_parts\": {";
      size_t j = 0;
      for (const auto& [part, level] : r.members[m].parts)
        o << (j++ ? "," : "") << "\n      " << json_string(part) << ": " << level_object(level, "      ");
      o << "}}";
    }
    o << "\n  ]";
  }
  o << "\n}\n";
  return o.str();
}

std::string report_markdown(const EvaluationResult& r, const std::string& title,
                            const std::vector<std::pair<std::string, std::string>>& context) {
  std::ostringstream o;
  o << "# " << title << "\n\n";
  for (const auto& [k, v] : context) o << "- " << k << ": " << v << "\n";
  o << "- test images: " << r.images.size() << ", studies: " << r.studies.size() << "\n";
  o << "- test-set wall time: " << fmt(r.seconds, 2) << " s (" << fmt(r.images_per_second, 1) << " images/s)\n\n";
  const auto& im = r.overall.image;
  const auto& st = r.overall.study;
  o << "## Overall (threshold 0.5; a study's probability is the mean of its images')\n\n"
    << "| level | n | accuracy | loss | AUROC | kappa | sensitivity | specificity | TP | FP | TN | FN |\n"
    << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& [name, m] : {std::pair<const char*, const BinaryMetrics*>{"image", &im}, {"study", &st}})
    o << "| " << name << " | " << m->count << " | " << fmt(m->accuracy) << " | " << fmt(m->loss) << " | "
      << fmt(m->auroc) << " | " << fmt(m->kappa) << " | " << fmt(m->sensitivity) << " | " << fmt(m->specificity)
      << " | " << m->confusion.tp << " | " << m->confusion.fp << " | " << m->confusion.tn << " | " << m->confusion.fn
      << " |\n";
  o << "\n## Per body part\n\n"
    << "| body part | images | image accuracy | image AUROC | studies | study accuracy | study AUROC | study kappa |\n"
    << "|---|---|---|---|---|---|---|---|\n";
  for (const auto& [part, l] : r.parts)
    o << "| " << part << " | " << l.image.count << " | " << fmt(l.image.accuracy) << " | " << fmt(l.image.auroc)
      << " | " << l.study.count << " | " << fmt(l.study.accuracy) << " | " << fmt(l.study.auroc) << " | "
      << fmt(l.study.kappa) << " |\n";
  if (!r.members.empty()) {
    // The ensemble beside each member alone: overall, then each body part's study AUROC.
    o << "\n## Members (each alone) and the ensemble (mean probability)\n\n"
      << "| model | image accuracy | image AUROC | study accuracy | study AUROC | study kappa |";
    for (const auto& [part, l] : r.parts) o << " " << part << " study AUROC |";
    o << "\n|---|---|---|---|---|---|";
    for (size_t p = 0; p < r.parts.size(); ++p) o << "---|";
    o << "\n";
    const auto row = [&](const std::string& name, const LevelMetrics& overall, const std::map<std::string, LevelMetrics>& parts) {
      o << "| " << name << " | " << fmt(overall.image.accuracy) << " | " << fmt(overall.image.auroc) << " | "
        << fmt(overall.study.accuracy) << " | " << fmt(overall.study.auroc) << " | " << fmt(overall.study.kappa) << " |";
      for (const auto& [part, l] : r.parts) {
        const auto it = parts.find(part);
        o << " " << (it == parts.end() ? std::string("n/a") : fmt(it->second.study.auroc)) << " |";
      }
      o << "\n";
    };
    for (const MemberMetrics& m : r.members) row(m.name, m.overall, m.parts);
    row("**ensemble**", r.overall, r.parts);
  }
  o << "\nn/a: undefined (one class only, or no cases).\n";
  return o.str();
}

void write_evaluation(const std::string& folder, const EvaluationResult& result, const std::string& title,
                      const std::vector<std::pair<std::string, std::string>>& context) {
  data::make_directories(folder);
  write_image_predictions(folder + "/predictions_images.csv", result.images);
  write_study_predictions(folder + "/predictions_studies.csv", result.studies);
  data::write_file_atomic(folder + "/metrics.json", metrics_json(result, context));
  data::write_file_atomic(folder + "/report.md", report_markdown(result, title, context));
}

}  // namespace experiment
