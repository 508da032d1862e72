// experiment/weights_check: converted weights' metadata against --flavor and --preprocess. torchvision and
// timm weights under Keras conventions (and Keras weights under PyTorch's) get one WARNING naming exactly
// the flags to pass; the study's x/255 into Keras weights is a note; a file without metadata is a note,
// never an error; matching settings say nothing. check_weights_file reads the metadata from a real file,
// and the trainer says it (stderr and train.log) when it loads --weights.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "data/io_util.h"
#include "engine/safetensors.h"
#include "engine/serialize.h"
#include "experiment/trainer.h"
#include "experiment/weights_check.h"
#include "nets/registry.h"
#include "support/temp_path.h"

namespace {

using experiment::check_weights_metadata;
using experiment::WeightsCheckOptions;
using experiment::WeightsFinding;
using Meta = std::map<std::string, std::string>;

// What weights_tools/convert.py writes for each source (its metadata()).
Meta torchvision_densenet() {
  return {{"arch", "densenet201"}, {"source", "torchvision"}, {"head", "imagenet"}, {"preprocess", "torch"},
          {"bn_flavor", "torch"},  {"bn_eps", "1e-05"},       {"bn_momentum", "0.1"}};
}
Meta timm_irv2() {
  return {{"arch", "inception_resnet_v2"}, {"source", "timm"}, {"head", "imagenet"}, {"preprocess", "tf"},
          {"bn_flavor", "torch"},          {"bn_eps", "0.001"}, {"bn_momentum", "0.1"}};
}
Meta keras_densenet() {
  return {{"arch", "densenet201"}, {"source", "keras-h5"}, {"head", "none"}, {"preprocess", "torch"},
          {"bn_flavor", "keras"},  {"bn_eps", "1.001e-05"}, {"bn_momentum", "0.99"}};
}
Meta keras_irv2() {
  return {{"arch", "inception_resnet_v2"}, {"source", "keras-h5"}, {"head", "none"}, {"preprocess", "tf"},
          {"bn_flavor", "keras"},          {"bn_eps", "0.001"},    {"bn_momentum", "0.99"}};
}

std::vector<WeightsFinding> check(const Meta& meta, const std::string& flavor, const std::string& preprocess) {
  return check_weights_metadata("w.safetensors", meta, WeightsCheckOptions{flavor, preprocess});
}

size_t count(const std::vector<WeightsFinding>& findings, WeightsFinding::Kind kind) {
  size_t n = 0;
  for (const WeightsFinding& f : findings) n += f.kind == kind;
  return n;
}

// The one warning's text (fails the test when there is not exactly one).
std::string the_warning(const std::vector<WeightsFinding>& findings) {
  EXPECT_EQ(count(findings, WeightsFinding::Kind::warning), 1u);
  for (const WeightsFinding& f : findings)
    if (f.kind == WeightsFinding::Kind::warning) return f.text;
  return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(WeightsCheck, TorchvisionWeightsUnderKerasConventionsNameBothFlags) {
  const auto findings = check(torchvision_densenet(), "keras", "study");
  const std::string w = the_warning(findings);
  EXPECT_TRUE(has(w, "w.safetensors holds torchvision weights")) << w;
  EXPECT_TRUE(has(w, "PyTorch batch norm: eps 1e-05, momentum 0.1")) << w;
  EXPECT_TRUE(has(w, "trained on torch inputs: x/255, then ImageNet mean/std")) << w;
  EXPECT_TRUE(has(w, "but this run uses --flavor keras --preprocess study: pass --flavor torch --preprocess torch"))
      << w;
  EXPECT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].line().rfind("WARNING: ", 0), 0u);
}

TEST(WeightsCheck, TimmWeightsUnderKerasConventionsAskForTfInputs) {
  const std::string w = the_warning(check(timm_irv2(), "keras", "study"));
  EXPECT_TRUE(has(w, "holds timm weights")) << w;
  EXPECT_TRUE(has(w, ": pass --flavor torch --preprocess tf")) << w;
  EXPECT_TRUE(has(w, "x/127.5 - 1")) << w;
}

TEST(WeightsCheck, OnlyTheDifferingFlagIsNamed) {
  std::string w = the_warning(check(torchvision_densenet(), "torch", "study"));
  EXPECT_TRUE(has(w, "but this run uses --preprocess study: pass --preprocess torch")) << w;
  EXPECT_FALSE(has(w, "pass --flavor")) << w;
  w = the_warning(check(timm_irv2(), "keras", "tf"));
  EXPECT_TRUE(has(w, "but this run uses --flavor keras: pass --flavor torch")) << w;
  EXPECT_FALSE(has(w, "pass --flavor torch --preprocess")) << w;
}

TEST(WeightsCheck, KerasWeightsUnderPyTorchConventions) {
  const std::string w = the_warning(check(keras_densenet(), "torch", "tf"));
  EXPECT_TRUE(has(w, "holds Keras weights (Keras batch norm: eps 1.001e-05, momentum 0.99")) << w;
  EXPECT_TRUE(has(w, "but this run uses --flavor torch --preprocess tf: pass --flavor keras --preprocess torch"))
      << w;
}

TEST(WeightsCheck, MatchingSettingsSayNothing) {
  EXPECT_TRUE(check(torchvision_densenet(), "torch", "torch").empty());
  EXPECT_TRUE(check(timm_irv2(), "torch", "tf").empty());
  EXPECT_TRUE(check(keras_densenet(), "keras", "torch").empty());
  EXPECT_TRUE(check(keras_irv2(), "keras", "tf").empty());
  Meta study_model = keras_densenet();  // the study's own model converted (flatten head): x/255
  study_model["preprocess"] = "study";
  EXPECT_TRUE(check(study_model, "keras", "study").empty());
}

TEST(WeightsCheck, TheStudysInputsForKerasWeightsAreANoteNotAWarning) {
  for (const Meta& meta : {keras_densenet(), keras_irv2()}) {
    const auto findings = check(meta, "keras", "study");
    ASSERT_EQ(findings.size(), 1u);
    EXPECT_EQ(findings[0].kind, WeightsFinding::Kind::note);
    EXPECT_TRUE(has(findings[0].text, "as the study did")) << findings[0].text;
    EXPECT_TRUE(has(findings[0].text, "pass --preprocess " + meta.at("preprocess"))) << findings[0].text;
    EXPECT_EQ(findings[0].line().rfind("note: ", 0), 0u);
  }
  // With PyTorch's batch norm as well, the flavour is still a warning (and names only --flavor).
  const auto findings = check(keras_irv2(), "torch", "study");
  EXPECT_EQ(count(findings, WeightsFinding::Kind::note), 1u);
  EXPECT_TRUE(has(the_warning(findings), "but this run uses --flavor torch: pass --flavor keras")) << findings.size();
}

TEST(WeightsCheck, AFileWithoutMetadataGetsANoteNotAnError) {
  const auto findings = check({}, "keras", "study");
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, WeightsFinding::Kind::note);
  const std::string& t = findings[0].text;
  EXPECT_TRUE(has(t, "w.safetensors records no bn_flavor or source and no preprocess")) << t;
  EXPECT_TRUE(has(t, "--flavor keras and --preprocess study are not checked")) << t;
  EXPECT_TRUE(has(t, "weights_tools.convert")) << t;
}

TEST(WeightsCheck, OlderFilesWithoutBatchNormNumbersAreStillChecked) {
  // The converter's first metadata: arch, source, head, preprocess, bn_flavor (no bn_eps / bn_momentum).
  Meta older = {{"arch", "densenet201"}, {"source", "torchvision"}, {"head", "imagenet"}, {"preprocess", "torch"},
                {"bn_flavor", "torch"}};
  const std::string w = the_warning(check(older, "keras", "torch"));
  EXPECT_TRUE(has(w, "(PyTorch batch norm; trained on torch inputs")) << w;
  EXPECT_TRUE(has(w, ": pass --flavor torch")) << w;
  // Only a source: the flavour follows from it; the preprocessing is unknown (a note).
  const auto findings = check({{"source", "timm"}}, "keras", "tf");
  EXPECT_TRUE(has(the_warning(findings), ": pass --flavor torch"));
  EXPECT_EQ(count(findings, WeightsFinding::Kind::note), 1u);
}

TEST(WeightsCheck, UnknownValuesAreNotedAndNotGuessed) {
  Meta odd = torchvision_densenet();
  odd["bn_flavor"] = "jax";
  odd["preprocess"] = "caffe";
  const auto findings = check(odd, "keras", "study");
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, WeightsFinding::Kind::note);
  EXPECT_TRUE(has(findings[0].text, "bn_flavor 'jax'")) << findings[0].text;
  EXPECT_TRUE(has(findings[0].text, "preprocess 'caffe'")) << findings[0].text;
}

class WeightsCheckFile : public test_support::TempDirTest {};

TEST_F(WeightsCheckFile, ReadsTheMetadataFromTheFileHeader) {
  const float value = 1.0f;
  const std::vector<engine::safetensors::WriteEntry> entries = {
      {"features.conv0.weight", engine::safetensors::DType::F32, {1}, &value, sizeof value}};
  const std::string with = dir_ + "/tv.safetensors", without = dir_ + "/old.safetensors";
  engine::safetensors::write(with, entries, torchvision_densenet());
  engine::safetensors::write(without, entries);
  const auto findings = experiment::check_weights_file(with, {"keras", "study"});
  EXPECT_TRUE(has(the_warning(findings), with + " holds torchvision weights"));
  const auto old = experiment::check_weights_file(without, {"keras", "study"});
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(old[0].kind, WeightsFinding::Kind::note);
  EXPECT_THROW(experiment::check_weights_file(dir_ + "/absent.safetensors", {"keras", "study"}), std::exception);
}

TEST_F(WeightsCheckFile, TheTrainerSaysItInTrainLog) {
  // torchvision-labelled weights of the tiny DenseNet, trained under the Keras defaults.
  engine::Generator gen(1);
  const auto net = nets::make_net("densenet_tiny", nets::Head::gap, nets::Flavor::torch, 48, gen);
  Meta meta = torchvision_densenet();
  meta["arch"] = "densenet_tiny";
  const std::string weights = dir_ + "/tiny_torchvision.safetensors";
  engine::save_tensors(weights, net->state(), meta);

  experiment::TrainOptions o;
  o.arch = "densenet_tiny";
  o.head = "gap";
  o.input_size = 48;
  o.images = 60;
  o.epochs = 1;
  o.batch_size = 16;
  o.quiet = true;
  o.synthetic_dir = dir_ + "/synthetic";
  o.weights = weights;
  o.out = dir_ + "/run";
  experiment::run_training(o);
  const std::string log = data::read_file_text(o.out + "/train.log");
  EXPECT_TRUE(has(log, "WARNING: " + weights + " holds torchvision weights")) << log;
  EXPECT_TRUE(has(log, ": pass --flavor torch --preprocess torch\n")) << log;
}

}  // namespace
