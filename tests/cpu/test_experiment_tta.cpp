// Flip test-time augmentation: an image's probability is the mean of the probabilities of the image and of
// its horizontal mirror. Checked against the plain pass over explicitly mirrored copies of the images
// (PNG files written mirrored), on a randomly initialised tiny DenseNet, which is not mirror-invariant.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "data/image_write.h"
#include "engine/engine.h"
#include "experiment/evaluation.h"
#include "nets/registry.h"
#include "support/error_of.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;
using namespace experiment;

TEST(Tta, MirrorHorizontallyReversesEachRow) {
  // [1, 2, 3, 2]: two rows of three pixels of two channels.
  const engine::Tensor x = engine::Tensor::from_vector({1, 2, 3, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  const engine::Tensor y = mirror_horizontally(x);
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_EQ(y.to_vector(), (std::vector<float>{5, 6, 3, 4, 1, 2, 11, 12, 9, 10, 7, 8}));
  EXPECT_EQ(mirror_horizontally(y).to_vector(), x.to_vector());
}

TEST(Tta, ParsesItsFlagValues) {
  EXPECT_EQ(parse_tta("none"), Tta::none);
  EXPECT_EQ(parse_tta("flip"), Tta::flip);
  EXPECT_NE(test_support::error_of([] { parse_tta("mirror"); }).find("--tta 'mirror' is not one of: none, flip"),
            std::string::npos);
  EXPECT_EQ(logit_of_probability(0.5), 0.0);
  EXPECT_NEAR(probability_of_logit(logit_of_probability(0.9)), 0.9, 1e-12);
}

class TtaPass : public test_support::TempDirTest {};

TEST_F(TtaPass, FlipIsTheMeanProbabilityOfTheImageAndOfItsMirror) {
  constexpr int kSize = 32;  // the net's input size: the loader does not resize
  std::mt19937 random(7);
  std::vector<data::SplitEntry> plain, mirrored;
  for (int i = 0; i < 6; ++i) {
    data::PngImage image, mirror;
    image.width = image.height = kSize;
    image.color = data::PngColor::gray;
    image.samples.resize(kSize * kSize);
    for (auto& s : image.samples) s = static_cast<uint16_t>(random() % 256);
    mirror = image;
    for (int y = 0; y < kSize; ++y)
      for (int x = 0; x < kSize; ++x) mirror.samples[y * kSize + x] = image.samples[y * kSize + (kSize - 1 - x)];
    const std::string name = "image" + std::to_string(i) + ".png";
    data::write_png_file(dir_ + "/" + name, image);
    data::write_png_file(dir_ + "/mirrored_" + name, mirror);
    plain.push_back({name, (i / 2) % 2, "p", "study" + std::to_string(i / 2), data::BodyPart::wrist, 1.0f});
    mirrored.push_back({"mirrored_" + name, (i / 2) % 2, "p", "study" + std::to_string(i / 2), data::BodyPart::wrist, 1.0f});
  }
  engine::Generator gen(3);
  auto net = nets::make_net("densenet_tiny", nets::Head::gap, nets::Flavor::torch, kSize, gen);
  data::LoaderOptions lo;
  lo.height = lo.width = kSize;
  lo.batch_size = 4;  // two batches, the second smaller
  lo.workers = 1;
  const engine::Device cpu = engine::Device::cpu();
  const EvaluationResult a = predict_entries(*net, dir_, plain, lo, cpu, "plain", true);
  const EvaluationResult b = predict_entries(*net, dir_, mirrored, lo, cpu, "mirrored", true);
  PassOptions flip;
  flip.tta = Tta::flip;
  const EvaluationResult t = predict_entries(*net, dir_, plain, lo, cpu, "tta", true, flip);
  ASSERT_EQ(t.images.size(), plain.size());
  double largest_change = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double mean = 0.5 * (a.images[i].probability + b.images[i].probability);
    EXPECT_NEAR(t.images[i].probability, mean, 1e-6) << i;
    EXPECT_NEAR(t.images[i].logit, std::log(mean / (1 - mean)), 1e-5) << i;
    largest_change = std::max(largest_change, std::abs(t.images[i].probability - a.images[i].probability));
  }
  EXPECT_GT(largest_change, 1e-6) << "the net should not be mirror-invariant, or the test proves nothing";
  // The metrics are those of the averaged probabilities (a study: the mean of its images').
  EXPECT_NEAR(t.studies[0].probability, 0.5 * (t.images[0].probability + t.images[1].probability), 1e-9);
}

}  // namespace
