// Binary classification metrics of the study and of MURA, at image level and at study level.
//
// A prediction is positive (abnormal) when its probability is > 0.5 (Keras's binary accuracy).
//   confusion      tp, fp, tn, fn at that threshold
//   accuracy       (tp + tn) / n
//   sensitivity    tp / (tp + fn)  (recall of abnormal; NaN without abnormal cases)
//   specificity    tn / (tn + fp)  (NaN without normal cases)
//   Cohen's kappa  (p_o - p_e) / (1 - p_e), p_o = accuracy,
//                  p_e = ((tp + fp)(tp + fn) + (tn + fn)(tn + fp)) / n^2   (NaN when p_e = 1, as sklearn)
//   AUROC          exact, by the Mann-Whitney statistic with mid-ranks for ties:
//                  AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos = sum of the positives'
//                  ranks among all scores (tied scores share their mean rank); equals the trapezoidal
//                  area under the ROC curve. NaN when one class is absent.
//   loss           mean binary cross-entropy of the logits (unweighted, as Keras's val_loss)
// Study level (MURA): a study's probability is the mean of its images' probabilities; its label is the
// study's label; the same metrics are computed over studies. Both levels are also given per body part.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/mura_index.h"

namespace experiment {

constexpr double kThreshold = 0.5;

struct Confusion {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
  int64_t total() const { return tp + fp + tn + fn; }
};

struct BinaryMetrics {
  int64_t count = 0, positives = 0;
  Confusion confusion;
  double accuracy = 0, sensitivity = 0, specificity = 0, kappa = 0, auroc = 0;
  double loss = 0;  // NaN at study level (studies have no logit)
};

// Exact AUROC with mid-ranks for ties (NaN when labels hold one class only). Sizes must match. Any
// float is handled without looping forever: infinities and denormals rank as numbers; a NaN score throws
// engine::Error (it has no rank). Every tie run holds at least one score, so the walk always advances.
double auroc(const std::vector<double>& scores, const std::vector<int>& labels);
Confusion confusion_at(const std::vector<double>& probabilities, const std::vector<int>& labels,
                       double threshold = kThreshold);
double cohen_kappa(const Confusion& c);
// Every metric of BinaryMetrics. `logits` may be empty (loss = NaN).
BinaryMetrics binary_metrics(const std::vector<double>& probabilities, const std::vector<int>& labels,
                             const std::vector<double>& logits = {});

// ROC curve points (false positive rate, true positive rate), from (0,0) to (1,1), one per distinct score.
// NaN scores throw, as in auroc.
std::vector<std::pair<double, double>> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);

struct ImagePrediction {
  std::string path;   // relative to the MURA root
  std::string study;  // study key
  data::BodyPart part = data::BodyPart::elbow;
  int label = 0;
  double logit = 0, probability = 0;
};

struct StudyPrediction {
  std::string study;
  data::BodyPart part = data::BodyPart::elbow;
  int label = 0;
  int64_t images = 0;
  double probability = 0;  // mean of the images' probabilities
};

// Studies in order of first appearance. Throws when one study's images disagree on the label.
std::vector<StudyPrediction> aggregate_studies(const std::vector<ImagePrediction>& images);

struct LevelMetrics {
  BinaryMetrics image, study;
};

// The logistic sigmoid 1 / (1 + e^-z), computed without overflow for either sign of z.
double probability_of_logit(double z);

// One member of an ensemble, evaluated alone (its name: the checkpoint's path).
struct MemberMetrics {
  std::string name;
  LevelMetrics overall;
  std::map<std::string, LevelMetrics> parts;
};

struct EvaluationResult {
  LevelMetrics overall;
  std::map<std::string, LevelMetrics> parts;  // by body_part_name ("elbow"), only parts present
  std::vector<ImagePrediction> images;
  std::vector<StudyPrediction> studies;
  double seconds = 0;            // wall time of the pass over the test images (decode included)
  double images_per_second = 0;  // images / seconds
  std::vector<MemberMetrics> members;  // an ensemble's members (metrics.json "members", report.md "Members")
};

// Throws engine::Error naming the images (the first few) whose probability is NaN or infinite or whose
// logit is NaN: "3 images have a non-finite score (NaN): a.png, ...; the checkpoint's weights are
// probably non-finite ...". An infinite logit is a saturated but valid prediction (probability 0 or 1).
void check_finite_scores(const std::vector<ImagePrediction>& images);
// Fills overall, parts and studies from images (seconds stays as given). Checks the scores first
// (check_finite_scores).
void compute_metrics(EvaluationResult& result);

// Files: predictions_images.csv (path,study,body_part,label,logit,probability,predicted),
// predictions_studies.csv (study,body_part,label,images,probability,predicted), metrics.json and
// report.md, each atomically. `title` heads the report; `context` adds "key: value" lines to it and to
// metrics.json (arch, checkpoint, device, ...).
void write_image_predictions(const std::string& path, const std::vector<ImagePrediction>& images);
void write_study_predictions(const std::string& path, const std::vector<StudyPrediction>& studies);
std::string metrics_json(const EvaluationResult& result, const std::vector<std::pair<std::string, std::string>>& context);
std::string report_markdown(const EvaluationResult& result, const std::string& title,
                            const std::vector<std::pair<std::string, std::string>>& context);
// All four into `folder` (created).
void write_evaluation(const std::string& folder, const EvaluationResult& result, const std::string& title,
                      const std::vector<std::pair<std::string, std::string>>& context);

// Formatting helpers shared by the reports: "0.8125", "nan" -> "n/a".
std::string fmt(double value, int digits = 4);
std::string json_string(const std::string& text);  // quoted, escaped
std::string json_number(double value);             // NaN/inf -> null
// The string value of a top-level "key": "value" in JSON text we wrote (args.json); "" when absent.
std::string json_string_field(const std::string& json, const std::string& key);

}  // namespace experiment
