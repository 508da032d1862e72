// Tests of the split protocols, split files and class weights (data/splits.h) on indexes built in
// memory: 80/10/10 sizes, seeded reproducibility, no patient on two sides for `patient`, `official`
// testing on MURA's valid set, body-part filters, the files' round trip, weights against hand numbers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/io_util.h"
#include "data/splits.h"
#include "engine/check.h"
#include "engine/random.h"
#include "support/temp_path.h"
#include "support/error_of.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;

namespace {

using test_support::error_of;

// `train_patients` + `valid_patients` patients, each with 1-2 studies of 1-4 images, parts in turn,
// labels at random: the shape of MURA without files.
data::MuraIndex make_index(int train_patients, int valid_patients, uint64_t seed = 1) {
  data::MuraIndex index;
  index.root = "/nowhere";
  engine::Generator gen(seed, 99);
  std::map<std::string, std::vector<std::string>> studies;  // key -> image paths (sorted by std::map)
  std::map<std::string, std::pair<data::BodyPart, int>> meta;
  for (int p = 0; p < train_patients + valid_patients; ++p) {
    const data::Subset subset = p < train_patients ? data::Subset::train : data::Subset::valid;
    const data::BodyPart part = data::kAllBodyParts[p % 7];
    char patient[32];
    std::snprintf(patient, sizeof(patient), "patient%05d", p + 1);
    const int n_studies = 1 + static_cast<int>(gen.below(2));
    for (int s = 0; s < n_studies; ++s) {
      const int label = gen.uniform() < 0.4f;
      const std::string key = std::string(data::subset_name(subset)) + "/" + data::body_part_folder(part) + "/" +
                              patient + "/study" + std::to_string(s + 1) + (label ? "_positive" : "_negative");
      const int n_images = 1 + static_cast<int>(gen.below(4));
      for (int i = 0; i < n_images; ++i) studies[key].push_back(key + "/image" + std::to_string(i + 1) + ".png");
      meta[key] = {part, label};
    }
  }
  for (const auto& [key, images] : studies) {
    data::MuraStudy study;
    study.key = key;
    study.subset = key.rfind("train/", 0) == 0 ? data::Subset::train : data::Subset::valid;
    study.part = meta[key].first;
    study.label = meta[key].second;
    study.patient = key.substr(key.find("patient"), 12);
    for (const std::string& path : images) {
      study.images.push_back(static_cast<int64_t>(index.images.size()));
      index.images.push_back({path, static_cast<int64_t>(index.studies.size())});
    }
    index.studies.push_back(study);
  }
  return index;
}

std::set<std::string> paths(const std::vector<data::SplitEntry>& list) {
  std::set<std::string> out;
  for (const auto& e : list) out.insert(e.path);
  return out;
}
std::set<std::string> patients(const std::vector<data::SplitEntry>& list) {
  std::set<std::string> out;
  for (const auto& e : list) out.insert(e.patient);
  return out;
}
int64_t overlap(const std::set<std::string>& a, const std::set<std::string>& b) {
  int64_t n = 0;
  for (const auto& x : a) n += b.count(x);
  return n;
}

TEST(SeedSplit, SizesAndReproducibility) {
  const data::MuraIndex index = make_index(300, 60);
  data::SplitOptions o;
  o.seed = 11;
  o.sample_images = 100;
  const data::Split split = data::make_split(index, o);
  EXPECT_EQ(split.train.size(), 80u);
  EXPECT_EQ(split.validation.size(), 10u);
  EXPECT_EQ(split.test.size(), 10u);
  // Distinct images, drawn from train and valid both (merged lists).
  std::set<std::string> all = paths(split.train);
  for (const auto& e : split.validation) all.insert(e.path);
  for (const auto& e : split.test) all.insert(e.path);
  EXPECT_EQ(all.size(), 100u);
  bool any_valid = false;
  for (const auto& p : all) any_valid = any_valid || p.rfind("valid/", 0) == 0;
  EXPECT_TRUE(any_valid);
  // Each entry mirrors its index image.
  for (const auto& e : split.train) {
    EXPECT_EQ(e.path.rfind(e.study + "/", 0), 0u);
    EXPECT_NE(e.study.find(e.patient), std::string::npos);
    EXPECT_EQ(e.label, e.study.find("_positive") != std::string::npos ? 1 : 0);
  }
  // Same seed, same split; another seed, another.
  const data::Split again = data::make_split(index, o);
  EXPECT_EQ(paths(again.train), paths(split.train));
  EXPECT_EQ(paths(again.test), paths(split.test));
  o.seed = 12;
  EXPECT_NE(paths(data::make_split(index, o).train), paths(split.train));
  // All images when N is 0: 80/10/10 of the total, rounded.
  o.sample_images = 0;
  const data::Split whole = data::make_split(index, o);
  const size_t n = index.images.size();
  EXPECT_EQ(whole.train.size() + whole.validation.size() + whole.test.size(), n);
  EXPECT_EQ(whole.train.size(), static_cast<size_t>(std::llround(0.8 * n)));
  EXPECT_EQ(whole.validation.size(), static_cast<size_t>(std::llround(0.1 * n)));
}

TEST(SeedSplit, LeaksPatientsAsTheStudyDid) {
  // The image-level protocol puts some patients on two sides (what `patient` fixes).
  const data::MuraIndex index = make_index(100, 0);
  data::SplitOptions o;
  const data::Split split = data::make_split(index, o);
  EXPECT_GT(overlap(patients(split.train), patients(split.test)), 0);
}

TEST(PatientSplit, NoPatientOnTwoSides) {
  const data::MuraIndex index = make_index(400, 50);
  for (uint64_t seed : {1, 2, 3}) {
    data::SplitOptions o;
    o.protocol = data::SplitProtocol::patient;
    o.seed = seed;
    o.sample_images = 600;
    const data::Split split = data::make_split(index, o);
    const auto tr = patients(split.train), va = patients(split.validation), te = patients(split.test);
    EXPECT_EQ(overlap(tr, va), 0);
    EXPECT_EQ(overlap(tr, te), 0);
    EXPECT_EQ(overlap(va, te), 0);
    // Exactly N images; each side within one patient's images (at most 8 here) of its target.
    EXPECT_EQ(split.train.size() + split.validation.size() + split.test.size(), 600u);
    EXPECT_NEAR(static_cast<double>(split.train.size()), 480, 8);
    EXPECT_NEAR(static_cast<double>(split.validation.size()), 60, 8);
    EXPECT_NEAR(static_cast<double>(split.test.size()), 60, 16);
    // Reproducible.
    EXPECT_EQ(paths(data::make_split(index, o).validation), paths(split.validation));
  }
}

TEST(OfficialSplit, ValidIsTheTestSet) {
  const data::MuraIndex index = make_index(200, 30);
  data::SplitOptions o;
  o.protocol = data::SplitProtocol::official;
  o.seed = 4;
  const data::Split split = data::make_split(index, o);
  std::set<std::string> valid_paths;
  for (const auto& image : index.images)
    if (image.path.rfind("valid/", 0) == 0) valid_paths.insert(image.path);
  EXPECT_EQ(paths(split.test), valid_paths);
  for (const auto& e : split.train) EXPECT_EQ(e.path.rfind("train/", 0), 0u);
  for (const auto& e : split.validation) EXPECT_EQ(e.path.rfind("train/", 0), 0u);
  EXPECT_EQ(overlap(patients(split.train), patients(split.validation)), 0);
  const double n = static_cast<double>(split.train.size() + split.validation.size());
  EXPECT_EQ(n, static_cast<double>(index.count_images(data::Subset::train)));
  EXPECT_NEAR(split.validation.size(), n / 9.0, 8);
  // N caps train + validation, the test set stays whole.
  o.sample_images = 90;
  const data::Split small = data::make_split(index, o);
  EXPECT_EQ(small.train.size() + small.validation.size(), 90u);
  EXPECT_EQ(paths(small.test), valid_paths);
}

TEST(Splits, BodyPartFilter) {
  const data::MuraIndex index = make_index(120, 20);
  for (auto protocol : {data::SplitProtocol::seed, data::SplitProtocol::patient, data::SplitProtocol::official}) {
    data::SplitOptions o;
    o.protocol = protocol;
    o.parts = {data::BodyPart::hand, data::BodyPart::wrist};
    const data::Split split = data::make_split(index, o);
    for (const auto* list : {&split.train, &split.validation, &split.test})
      for (const auto& e : *list) ASSERT_TRUE(e.part == data::BodyPart::hand || e.part == data::BodyPart::wrist);
    EXPECT_FALSE(split.train.empty());
  }
}

TEST(Splits, BadOptions) {
  const data::MuraIndex index = make_index(10, 2);
  data::SplitOptions o;
  o.train_fraction = 0.9;
  o.val_fraction = 0.2;
  EXPECT_THAT(error_of([&] { data::make_split(index, o); }), HasSubstr("sum to at most 1"));
  EXPECT_THAT(error_of([] { data::parse_split_protocol("random"); }), HasSubstr("use seed, patient or official"));
  EXPECT_EQ(data::parse_split_protocol("patient"), data::SplitProtocol::patient);
}

class SplitFiles : public test_support::TempDirTest {};

TEST_F(SplitFiles, WriteReadRoundTrip) {
  const data::MuraIndex index = make_index(60, 10);
  data::SplitOptions o;
  o.protocol = data::SplitProtocol::patient;
  o.seed = 3;
  o.parts = {data::BodyPart::elbow, data::BodyPart::finger};
  const data::Split split = data::make_split(index, o);
  const std::string folder = dir_ + "/run1/split";
  data::write_split(split, folder);
  const std::string train_text = data::read_file_text(folder + "/train.csv");
  EXPECT_EQ(train_text.rfind("path,label,patient,study,body_part\n", 0), 0u);
  EXPECT_THAT(train_text, HasSubstr(",XR_ELBOW\n"));
  const std::string info = data::read_file_text(folder + "/split.txt");
  EXPECT_THAT(info, HasSubstr("protocol patient\nseed 3\n"));
  EXPECT_THAT(info, HasSubstr("body_parts elbow,finger\n"));
  EXPECT_THAT(info, HasSubstr("train images " + std::to_string(split.train.size())));
  EXPECT_THAT(info, HasSubstr("patients_on_several_sides 0\n"));

  const data::Split back = data::read_split(folder);
  const std::vector<data::SplitEntry>* a[3] = {&split.train, &split.validation, &split.test};
  const std::vector<data::SplitEntry>* b[3] = {&back.train, &back.validation, &back.test};
  for (int s = 0; s < 3; ++s) {
    ASSERT_EQ(a[s]->size(), b[s]->size());
    for (size_t i = 0; i < a[s]->size(); ++i) {
      EXPECT_EQ((*a[s])[i].path, (*b[s])[i].path);
      EXPECT_EQ((*a[s])[i].label, (*b[s])[i].label);
      EXPECT_EQ((*a[s])[i].patient, (*b[s])[i].patient);
      EXPECT_EQ((*a[s])[i].study, (*b[s])[i].study);
      EXPECT_EQ((*a[s])[i].part, (*b[s])[i].part);
    }
  }
}

TEST_F(SplitFiles, BadListsNameFileAndLine) {
  EXPECT_THAT(error_of([] { data::parse_split_list("path,label,patient,study,body_part\na,2,p,s,XR_HAND\n", "t.csv"); }),
              HasSubstr("t.csv: line 2: label must be 0 or 1"));
  EXPECT_THAT(error_of([] { data::parse_split_list("a,1,p,s\n", "t.csv"); }), HasSubstr("t.csv: line 1: expected 5 fields"));
  EXPECT_THAT(error_of([] { data::parse_split_list("a,1,p,s,XR_KNEE\n", "t.csv"); }), HasSubstr("unknown body part"));
  EXPECT_THAT(error_of([&] { data::read_split(dir_ + "/missing"); }), HasSubstr("train.csv: cannot open"));
}

data::SplitEntry entry(data::BodyPart part, int label) {
  data::SplitEntry e;
  e.part = part;
  e.label = label;
  return e;
}

TEST(ClassWeights, HandNumbers) {
  // Elbow: 3 abnormal, 1 normal -> abnormal weighs N/(A+N) = 1/4, normal A/(A+N) = 3/4.
  // Hand: 2 abnormal, 6 normal -> abnormal 6/8, normal 2/8. Wrist: only normal -> 0.5/0.5 and a note.
  std::vector<data::SplitEntry> train;
  for (int i = 0; i < 3; ++i) train.push_back(entry(data::BodyPart::elbow, 1));
  train.push_back(entry(data::BodyPart::elbow, 0));
  for (int i = 0; i < 2; ++i) train.push_back(entry(data::BodyPart::hand, 1));
  for (int i = 0; i < 6; ++i) train.push_back(entry(data::BodyPart::hand, 0));
  for (int i = 0; i < 5; ++i) train.push_back(entry(data::BodyPart::wrist, 0));
  const data::ClassWeights w = data::compute_class_weights(train);
  EXPECT_FLOAT_EQ(w.of(data::BodyPart::elbow, 1), 0.25f);
  EXPECT_FLOAT_EQ(w.of(data::BodyPart::elbow, 0), 0.75f);
  EXPECT_FLOAT_EQ(w.of(data::BodyPart::hand, 1), 0.75f);
  EXPECT_FLOAT_EQ(w.of(data::BodyPart::hand, 0), 0.25f);
  EXPECT_FLOAT_EQ(w.of(data::BodyPart::wrist, 0), 0.5f);
  EXPECT_FLOAT_EQ(w.of(data::BodyPart::wrist, 1), 0.5f);
  EXPECT_EQ(w.images[static_cast<int>(data::BodyPart::hand)][0], 6);
  EXPECT_EQ(w.images[static_cast<int>(data::BodyPart::hand)][1], 2);
  ASSERT_EQ(w.notes.size(), 1u);
  EXPECT_THAT(w.notes[0], HasSubstr("wrist: only normal"));
  // Each class of a part carries the same total weight: A * N/(A+N) = N * A/(A+N).
  EXPECT_FLOAT_EQ(3 * w.of(data::BodyPart::elbow, 1), 1 * w.of(data::BodyPart::elbow, 0));

  data::Split split;
  split.train = train;
  split.test = {entry(data::BodyPart::hand, 1)};
  data::apply_class_weights(split, w);
  EXPECT_FLOAT_EQ(split.train[0].weight, 0.25f);
  EXPECT_FLOAT_EQ(split.train[3].weight, 0.75f);
  EXPECT_FLOAT_EQ(split.test[0].weight, 0.75f);
}

}  // namespace
