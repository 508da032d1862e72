// experiment/metrics: AUROC (ties), confusion, kappa, sensitivity/specificity, loss and study-level
// aggregation against values computed by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "experiment/metrics.h"

namespace {

using namespace experiment;

TEST(Metrics, AurocWithoutTies) {
  // sklearn.metrics.roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.75: of the 4 (pos, neg) pairs,
  // only (0.35, 0.4) is ordered wrongly.
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.2, 0.3, 0.4}, {0, 0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(auroc({0.4, 0.3, 0.2, 0.1}, {0, 0, 1, 1}), 0.0);
}

TEST(Metrics, AurocTiesCountHalf) {
  // Positives {0.5, 0.9}, negatives {0.5, 0.5}: pairs 0.5/0.5 count 1/2 each (two of them), 0.9 wins
  // both: (0.5 + 0.5 + 1 + 1) / 4 = 0.75.
  EXPECT_DOUBLE_EQ(auroc({0.5, 0.5, 0.5, 0.9}, {0, 1, 0, 1}), 0.75);
  // Everything tied: 0.5.
  EXPECT_DOUBLE_EQ(auroc({0.3, 0.3, 0.3}, {1, 0, 1}), 0.5);
  EXPECT_TRUE(std::isnan(auroc({0.1, 0.2}, {1, 1})));
}

TEST(Metrics, RocCurveAreaMatchesAuroc) {
  const std::vector<double> s{0.9, 0.8, 0.8, 0.6, 0.5, 0.5, 0.3, 0.1};
  const std::vector<int> y{1, 0, 1, 1, 0, 1, 0, 0};
  const auto points = roc_curve(s, y);
  double area = 0;
  for (size_t i = 1; i < points.size(); ++i)
    area += (points[i].first - points[i - 1].first) * (points[i].second + points[i - 1].second) / 2;
  EXPECT_NEAR(area, auroc(s, y), 1e-12);
  EXPECT_EQ(points.back(), std::make_pair(1.0, 1.0));
}

TEST(Metrics, ConfusionKappaSensitivitySpecificity) {
  // 25 abnormal: 20 found (tp), 5 missed (fn); 25 normal: 15 right (tn), 10 flagged (fp).
  std::vector<double> p;
  std::vector<int> y;
  auto add = [&](int count, double prob, int label) {
    for (int i = 0; i < count; ++i) {
      p.push_back(prob);
      y.push_back(label);
    }
  };
  add(20, 0.9, 1);
  add(5, 0.2, 1);
  add(15, 0.1, 0);
  add(10, 0.7, 0);
  const BinaryMetrics m = binary_metrics(p, y);
  EXPECT_EQ(m.confusion.tp, 20);
  EXPECT_EQ(m.confusion.fn, 5);
  EXPECT_EQ(m.confusion.tn, 15);
  EXPECT_EQ(m.confusion.fp, 10);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.7);
  EXPECT_DOUBLE_EQ(m.sensitivity, 0.8);
  EXPECT_DOUBLE_EQ(m.specificity, 0.6);
  // p_o = 0.7, p_e = (30*25 + 20*25) / 2500 = 0.5, kappa = 0.2 / 0.5 = 0.4.
  EXPECT_DOUBLE_EQ(m.kappa, 0.4);
  EXPECT_TRUE(std::isnan(m.loss));
}

TEST(Metrics, ThresholdIsStrict) {
  const Confusion c = confusion_at({0.5, 0.5000001}, {1, 1});
  EXPECT_EQ(c.fn, 1);
  EXPECT_EQ(c.tp, 1);
}

TEST(Metrics, LossIsMeanBceOfLogits) {
  // logit 0 -> log 2 whatever the label; logit 2, label 1 -> log(1 + e^-2).
  const BinaryMetrics m = binary_metrics({0.5, 0.880797}, {0, 1}, {0.0, 2.0});
  EXPECT_NEAR(m.loss, (std::log(2.0) + std::log1p(std::exp(-2.0))) / 2, 1e-12);
}

TEST(Metrics, KappaPerfectAndDegenerate) {
  EXPECT_DOUBLE_EQ(cohen_kappa({5, 0, 5, 0}), 1.0);
  EXPECT_TRUE(std::isnan(cohen_kappa({0, 0, 4, 0})));  // everything normal, predicted normal: p_e = 1
}

TEST(Metrics, StudyAggregationIsMeanProbability) {
  EvaluationResult r;
  auto image = [](const std::string& study, data::BodyPart part, int label, double prob) {
    ImagePrediction im;
    im.path = study + "/image.png";
    im.study = study;
    im.part = part;
    im.label = label;
    im.probability = prob;
    im.logit = std::log(prob / (1 - prob));
    return im;
  };
  using data::BodyPart;
  r.images = {image("A", BodyPart::hand, 1, 0.2), image("A", BodyPart::hand, 1, 0.9),   // mean 0.55: right
              image("B", BodyPart::hand, 0, 0.6), image("B", BodyPart::hand, 0, 0.3),   // mean 0.45: right
              image("B", BodyPart::hand, 0, 0.45),                                     // (3 images)
              image("C", BodyPart::wrist, 1, 0.4), image("D", BodyPart::wrist, 0, 0.7)};  // both wrong
  r.seconds = 2.0;
  compute_metrics(r);
  ASSERT_EQ(r.studies.size(), 4u);
  EXPECT_NEAR(r.studies[0].probability, 0.55, 1e-12);
  EXPECT_NEAR(r.studies[1].probability, 0.45, 1e-12);
  EXPECT_EQ(r.studies[1].images, 3);
  EXPECT_DOUBLE_EQ(r.overall.study.accuracy, 0.5);
  // Images: right are 0.9 (A), 0.3, 0.45 (B): 3 of 7.
  EXPECT_NEAR(r.overall.image.accuracy, 3.0 / 7.0, 1e-12);
  EXPECT_DOUBLE_EQ(r.images_per_second, 3.5);
  ASSERT_EQ(r.parts.size(), 2u);
  EXPECT_DOUBLE_EQ(r.parts.at("hand").study.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r.parts.at("wrist").study.accuracy, 0.0);
  // Study AUROC overall: positives {0.55, 0.4}, negatives {0.45, 0.7}: 0.55>0.45 only: 1/4.
  EXPECT_DOUBLE_EQ(r.overall.study.auroc, 0.25);
  const std::string json = metrics_json(r, {{"arch", "test"}});
  EXPECT_NE(json.find("\"wrist\""), std::string::npos);
  EXPECT_NE(json.find("\"arch\": \"test\""), std::string::npos);
}

TEST(Metrics, StudyWithTwoLabelsIsRefused) {
  ImagePrediction a, b;
  a.study = b.study = "S";
  b.label = 1;
  EXPECT_THROW(aggregate_studies({a, b}), std::exception);
}

// Regression: a NaN score once made the tie walk spin forever (NaN == NaN is false, so a run of ties
// never grew past its first item). These tests finish by construction: every input is tiny.
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kDenormal = std::numeric_limits<double>::denorm_min();

TEST(MetricsNonFinite, NanScoresAreRefusedNotLoopedOn) {
  for (const std::vector<double>& scores :
       {std::vector<double>{kNaN, 0.2, 0.7, 0.4}, std::vector<double>{0.1, kNaN, kNaN, 0.9},
        std::vector<double>{kNaN, kNaN, kNaN, kNaN}, std::vector<double>{kNaN}}) {
    const std::vector<int> labels(scores.size(), 0);
    std::vector<int> mixed = labels;
    mixed[0] = 1;
    try {
      auroc(scores, mixed);
      FAIL() << "auroc took NaN scores";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
    }
    EXPECT_THROW(roc_curve(scores, mixed), std::exception);
    EXPECT_THROW(binary_metrics(scores, labels), std::exception);
  }
}

TEST(MetricsNonFinite, InfinitiesAndDenormalsRankAsNumbers) {
  // Positives {inf, denormal}, negatives {-inf, 0}: inf beats both; denormal > 0 and > -inf: AUC 1.
  EXPECT_DOUBLE_EQ(auroc({kInf, kDenormal, -kInf, 0.0}, {1, 1, 0, 0}), 1.0);
  // Ties among infinities count half: positives {inf, -inf}, negatives {inf, -inf}: 4 pairs, two tied
  // (1/2 each), inf > -inf once: (0.5 + 0.5 + 1) / 4.
  EXPECT_DOUBLE_EQ(auroc({kInf, -kInf, kInf, -kInf}, {1, 1, 0, 0}), 0.5);
  // Denormals are distinct numbers: positives {d, d}, negatives {d, -d}: (0.5 + 0.5 + 1 + 1) / 4.
  EXPECT_DOUBLE_EQ(auroc({kDenormal, kDenormal, -kDenormal, kDenormal}, {1, 0, 0, 1}), 0.75);
  const auto points = roc_curve({kInf, -kInf, kInf, kDenormal}, {1, 0, 0, 1});
  EXPECT_EQ(points.back(), std::make_pair(1.0, 1.0));
  EXPECT_EQ(points.size(), 4u);  // (0,0) and one point per distinct score
}

TEST(MetricsNonFinite, ComputeMetricsNamesTheImagesWithNanScores) {
  EvaluationResult r;
  for (int i = 0; i < 8; ++i) {
    ImagePrediction im;
    im.path = "valid/XR_HAND/patient0000" + std::to_string(i) + "/study1_positive/image1.png";
    im.study = "S" + std::to_string(i / 2);
    im.label = (i / 2) % 2;
    im.logit = i < 7 ? kNaN : 0.5;  // seven NaN images: the message names the first five
    im.probability = i < 7 ? kNaN : 0.6;
    r.images.push_back(im);
  }
  try {
    compute_metrics(r);
    FAIL() << "compute_metrics took NaN scores";
  } catch (const std::exception& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("7 images have a non-finite score (NaN)"), std::string::npos) << message;
    EXPECT_NE(message.find("patient00000/study1_positive/image1.png"), std::string::npos) << message;
    EXPECT_NE(message.find("patient00004/study1_positive/image1.png"), std::string::npos) << message;
    EXPECT_EQ(message.find("patient00005/"), std::string::npos) << message;
    EXPECT_NE(message.find("2 more"), std::string::npos) << message;
    EXPECT_NE(message.find("weights are probably non-finite"), std::string::npos) << message;
  }
}

TEST(MetricsNonFinite, SaturatedLogitsAreValidPredictions) {
  // An infinite logit is a sure prediction (probability 0 or 1), not an error.
  EvaluationResult r;
  const double logits[4] = {kInf, -kInf, 3.0, -kInf};
  for (int i = 0; i < 4; ++i) {
    ImagePrediction im;
    im.path = "image" + std::to_string(i) + ".png";
    im.study = "S" + std::to_string(i);
    im.label = i % 2 == 0;
    im.logit = logits[i];
    im.probability = 1.0 / (1.0 + std::exp(-logits[i]));
    r.images.push_back(im);
  }
  compute_metrics(r);
  EXPECT_DOUBLE_EQ(r.overall.image.auroc, 1.0);
  EXPECT_DOUBLE_EQ(r.overall.image.accuracy, 1.0);
}

}  // namespace
