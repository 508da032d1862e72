// An ensemble evaluated together: each image's probability is the mean of the members' probabilities, the
// metrics are those of the averaged probabilities, each member's own metrics are listed beside the
// ensemble's (report.md, metrics.json); members that predicted different images, or whose runs used
// another split list than the one evaluated, are a plain error.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "data/image_write.h"
#include "data/io_util.h"
#include "data/splits.h"
#include "engine/engine.h"
#include "experiment/evaluation.h"
#include "nets/registry.h"
#include "support/error_of.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;
using namespace experiment;
using test_support::error_of;

constexpr int kSize = 32;

// A checkpoint in memory: a randomly initialised tiny DenseNet (seed) and the metadata evaluate reads.
CheckpointInfo tiny_checkpoint(uint64_t seed, const std::string& name) {
  engine::Generator gen(seed);
  auto net = nets::make_net("densenet_tiny", nets::Head::gap, nets::Flavor::torch, kSize, gen);
  CheckpointInfo c;
  c.path = name;
  c.metadata = {{"arch", "densenet_tiny"}, {"head", "gap"},         {"flavor", "torch"}, {"input_size", "32"},
                {"preprocess", "study"},   {"resize", "bilinear"}, {"epoch", "1"}};
  for (const auto& [key, tensor] : net->state()) c.model[key] = tensor;
  return c;
}

class Ensemble : public test_support::TempDirTest {
 protected:
  // Eight gray images in four studies of two body parts, both labels.
  std::vector<data::SplitEntry> write_images() {
    std::mt19937 random(11);
    std::vector<data::SplitEntry> entries;
    for (int i = 0; i < 8; ++i) {
      data::PngImage image;
      image.width = image.height = kSize;
      image.samples.resize(kSize * kSize);
      for (auto& s : image.samples) s = static_cast<uint16_t>(random() % 256);
      const std::string name = "image" + std::to_string(i) + ".png";
      data::write_png_file(dir_ + "/" + name, image);
      const int study = i / 2;
      entries.push_back({name, study % 2, "patient" + std::to_string(study), "study" + std::to_string(study),
                         study < 2 ? data::BodyPart::wrist : data::BodyPart::hand, 1.0f});
    }
    return entries;
  }
};

TEST_F(Ensemble, IsTheMeanProbabilityOfItsMembersWithEachMemberListed) {
  const std::vector<data::SplitEntry> entries = write_images();
  const std::vector<CheckpointInfo> members = {tiny_checkpoint(1, "a.safetensors"), tiny_checkpoint(2, "b.safetensors")};
  CheckpointPass pass;
  pass.batch_size = 3;
  pass.workers = 1;
  pass.quiet = true;
  std::vector<EvaluationResult> alone;
  const EvaluationResult ensemble = predict_checkpoints(members, dir_, entries, pass, &alone);
  ASSERT_EQ(alone.size(), 2u);
  // Each member alone, as a single evaluation gives it.
  for (size_t m = 0; m < members.size(); ++m) {
    const EvaluationResult single = predict_checkpoints({members[m]}, dir_, entries, pass);
    ASSERT_EQ(single.images.size(), entries.size());
    for (size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(single.images[i].probability, alone[m].images[i].probability);
  }
  ASSERT_EQ(ensemble.images.size(), entries.size());
  double spread = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const double mean = 0.5 * (alone[0].images[i].probability + alone[1].images[i].probability);
    EXPECT_NEAR(ensemble.images[i].probability, mean, 1e-12) << i;
    EXPECT_NEAR(probability_of_logit(ensemble.images[i].logit), mean, 1e-9) << i;
    spread = std::max(spread, std::abs(alone[0].images[i].probability - alone[1].images[i].probability));
  }
  EXPECT_GT(spread, 1e-6) << "two differently initialised members should disagree somewhere";
  // Study level: the mean of the ensemble's image probabilities; metrics per body part.
  ASSERT_EQ(ensemble.studies.size(), 4u);
  EXPECT_NEAR(ensemble.studies[1].probability, 0.5 * (ensemble.images[2].probability + ensemble.images[3].probability), 1e-12);
  EXPECT_EQ(ensemble.parts.size(), 2u);
  // The members beside the ensemble.
  ASSERT_EQ(ensemble.members.size(), 2u);
  EXPECT_EQ(ensemble.members[1].name, "b.safetensors");
  EXPECT_EQ(ensemble.members[1].overall.image.auroc, alone[1].overall.image.auroc);
  EXPECT_EQ(ensemble.members[0].parts.size(), 2u);
  const std::string report = report_markdown(ensemble, "ensemble", {});
  EXPECT_NE(report.find("## Members"), std::string::npos) << report;
  for (const char* row : {"| a.safetensors | ", "| b.safetensors | ", "| **ensemble** | "})
    EXPECT_NE(report.find(row), std::string::npos) << row << "\n" << report;
  const std::string json = metrics_json(ensemble, {});
  EXPECT_NE(json.find("\"members\": ["), std::string::npos) << json;
  EXPECT_NE(json.find("{\"name\": \"a.safetensors\", \"overall\": "), std::string::npos) << json;
  // Without members, neither section.
  EXPECT_EQ(report_markdown(alone[0], "one", {}).find("Members"), std::string::npos);
  EXPECT_EQ(metrics_json(alone[0], {}).find("members"), std::string::npos);
}

TEST_F(Ensemble, MembersThatPredictedOtherImagesAreAPlainError) {
  EvaluationResult a, b;
  a.images = {{"x.png", "s", data::BodyPart::hand, 1, 0.0, 0.5}, {"y.png", "s", data::BodyPart::hand, 1, 0.0, 0.5}};
  b.images = {a.images[0]};
  EXPECT_NE(error_of([&] { ensemble_of({a, b}, {"A", "B"}); }).find("predicted different images: B has 1, A 2"),
            std::string::npos);
  b.images = {a.images[1], a.images[0]};
  EXPECT_NE(error_of([&] { ensemble_of({a, b}, {"A", "B"}); }).find("image 1 is y.png (label 1) for B but x.png"),
            std::string::npos);
}

TEST_F(Ensemble, MembersMustShareTheEvaluatedSplitList) {
  const std::vector<data::SplitEntry> entries = write_images();
  const std::vector<data::SplitEntry> other(entries.begin(), entries.begin() + 6);
  // Two run folders with the same test list, one with another; a checkpoint outside a run folder.
  for (const auto& [run, list] : {std::pair<std::string, const std::vector<data::SplitEntry>*>{"run_a", &entries},
                                  {"run_b", &entries},
                                  {"run_c", &other}}) {
    fs::create_directories(dir_ + "/" + run + "/split");
    fs::create_directories(dir_ + "/" + run + "/checkpoints");
    data::write_file_atomic(dir_ + "/" + run + "/split/test.csv", data::split_list_text(*list));
  }
  const std::string a = dir_ + "/run_a/checkpoints/best.safetensors", b = dir_ + "/run_b/checkpoints/last.safetensors",
                    c = dir_ + "/run_c/checkpoints/best.safetensors", loose = dir_ + "/model.safetensors";
  EXPECT_EQ(error_of([&] { check_members_share_split({a, b, loose}, "test", entries); }), "");
  const std::string e = error_of([&] { check_members_share_split({a, c}, "test", entries); });
  EXPECT_NE(e.find("the ensemble's members must share the split: the run of " + c + " has another test list"),
            std::string::npos) << e;
  EXPECT_NE(e.find("2 of the 8 evaluated images are not in it, e.g. image6.png"), std::string::npos) << e;
  // Another list name: that list is compared (run_a has no validation.csv: not checked).
  EXPECT_EQ(error_of([&] { check_members_share_split({a, c}, "validation", entries); }), "");
}

}  // namespace
