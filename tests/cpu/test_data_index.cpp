// Tests of the CSV reader/writer (data/csv.h) and the MURA index (data/mura_index.h) on small trees
// written by the test: counts, labels, patients, parts; macOS sidecars ignored; CRLF; a missing CSV
// recovered from the folders; every kind of inconsistency counted and reported, never mislabelled.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "data/csv.h"
#include "data/io_util.h"
#include "data/mura_index.h"
#include "engine/check.h"
#include "support/error_of.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;

namespace {

using test_support::error_of;

// ---------------------------------------------------------------------------------------------------
// CSV

std::vector<std::vector<std::string>> fields_of(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  for (const data::CsvRow& row : data::parse_csv(text, "t.csv")) out.push_back(row.fields);
  return out;
}

TEST(Csv, LineEndsBomBlanksAndTrimming) {
  using Rows = std::vector<std::vector<std::string>>;
  const Rows expected = {{"a", "1"}, {"b", "2"}};
  EXPECT_EQ(fields_of("a,1\nb,2\n"), expected);
  EXPECT_EQ(fields_of("a,1\r\nb,2\r\n"), expected);
  EXPECT_EQ(fields_of("a,1\rb,2"), expected);
  EXPECT_EQ(fields_of("\xEF\xBB\xBF" "a,1\n\n  \r\nb,2"), expected);
  EXPECT_EQ(fields_of(" a ,\t1\nb,2 "), expected);
  EXPECT_EQ(fields_of("x,,\n,"), (Rows{{"x", "", ""}, {"", ""}}));
  EXPECT_TRUE(fields_of("").empty());
  EXPECT_TRUE(fields_of("\n\r\n").empty());
}

TEST(Csv, QuotesAndLineNumbers) {
  const std::vector<data::CsvRow> rows = data::parse_csv("\"a,b\",\"say \"\"hi\"\"\"\n\"two\nlines\",x\nlast,\" kept \"\n", "q.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].fields, (std::vector<std::string>{"a,b", "say \"hi\""}));
  EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"two\nlines", "x"}));
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"last", " kept "}));
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_EQ(rows[2].line, 4);
  EXPECT_THAT(error_of([] { data::parse_csv("ok,1\nbad,\"open\n", "/x/list.csv"); }),
              HasSubstr("/x/list.csv: line 2: a quoted field is never closed"));
}

TEST(Csv, WriteThenReadRoundTrips) {
  std::mt19937 rng(5);
  const std::string alphabet = "ab ,\"\n\r\t\xEF\xBB\xBFz";
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<std::vector<std::string>> rows(1 + rng() % 4);
    std::string text;
    for (auto& row : rows) {
      row.resize(1 + rng() % 4);
      for (auto& field : row) {
        const int len = static_cast<int>(rng() % 6);
        for (int i = 0; i < len; ++i) field.push_back(alphabet[rng() % alphabet.size()]);
      }
      text += data::csv_line(row);
    }
    ASSERT_EQ(fields_of(text), rows) << "trial " << trial;
  }
}

// ---------------------------------------------------------------------------------------------------
// Paths and parts

TEST(MuraPath, Parses) {
  const auto p = data::parse_mura_path("MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/image1.png");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->subset, data::Subset::train);
  EXPECT_EQ(p->part, data::BodyPart::shoulder);
  EXPECT_EQ(p->patient, "patient00001");
  EXPECT_EQ(p->study, "study1_positive");
  EXPECT_EQ(p->folder_label, 1);
  EXPECT_EQ(p->file, "image1.png");
  EXPECT_EQ(p->relative(), "train/XR_SHOULDER/patient00001/study1_positive/image1.png");

  const auto study = data::parse_mura_path("MURA-v1.1/valid/XR_WRIST/patient11185/study1_negative/");
  ASSERT_TRUE(study.has_value());
  EXPECT_EQ(study->file, "");
  EXPECT_EQ(study->folder_label, 0);
  EXPECT_EQ(study->study_key(), "valid/XR_WRIST/patient11185/study1_negative");
  // Without the root folder, with another root name, with backslashes, without a label suffix.
  EXPECT_TRUE(data::parse_mura_path("train/XR_HAND/patient9/study2_negative/image3.png"));
  EXPECT_TRUE(data::parse_mura_path("mura/valid/XR_HAND/patient9/study2_negative/image3.png"));
  EXPECT_TRUE(data::parse_mura_path("MURA-v1.1\\train\\XR_HAND\\patient9\\study2_negative\\image3.png"));
  const auto unlabeled = data::parse_mura_path("train/XR_HAND/patient9/study2/image3.png");
  ASSERT_TRUE(unlabeled);
  EXPECT_FALSE(unlabeled->folder_label.has_value());

  for (const char* bad : {"", "image.png", "MURA-v1.1/test/XR_HAND/patient1/study1_positive/image1.png",
                          "MURA-v1.1/train/XR_FOOT/patient1/study1_positive/image1.png",
                          "MURA-v1.1/train/HAND/patient1/study1_positive/image1.png",
                          "MURA-v1.1/train/XR_HAND/person1/study1_positive/image1.png",
                          "MURA-v1.1/train/XR_HAND/patient/study1_positive/image1.png",
                          "MURA-v1.1/train/XR_HAND/patient1/scan1_positive/image1.png",
                          "MURA-v1.1/train/XR_HAND/patient1/study1_positive/../image1.png",
                          "MURA-v1.1/train/XR_HAND//study1_positive/image1.png",
                          "a/MURA-v1.1/train/XR_HAND/patient1/study1_positive/x/image1.png"})
    EXPECT_FALSE(data::parse_mura_path(bad).has_value()) << bad;
}

TEST(BodyParts, ParseLists) {
  EXPECT_EQ(data::parse_body_part("XR_ELBOW"), data::BodyPart::elbow);
  EXPECT_EQ(data::parse_body_part("Wrist"), data::BodyPart::wrist);
  EXPECT_FALSE(data::parse_body_part("knee").has_value());
  EXPECT_EQ(data::parse_body_parts("all").size(), 7u);
  EXPECT_EQ(data::parse_body_parts(""), data::parse_body_parts("all"));
  EXPECT_EQ(data::parse_body_parts("hand,XR_WRIST,hand"),
            (std::vector<data::BodyPart>{data::BodyPart::hand, data::BodyPart::wrist}));
  EXPECT_THAT(error_of([] { data::parse_body_parts("hand,knee"); }), HasSubstr("unknown body part 'knee'"));
}

// ---------------------------------------------------------------------------------------------------
// Index on trees written by the test

class MuraTree : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "data_index_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    top_ = pattern;
    root_ = top_ + "/MURA-v1.1";
    // train: patient00001 elbow (a positive study of 2 images, a negative of 1), patient00002 hand (1).
    // valid: patient00003 wrist (a positive study of 3 images).
    for (const char* f : {"train/XR_ELBOW/patient00001/study1_positive/image1.png",
                          "train/XR_ELBOW/patient00001/study1_positive/image2.png",
                          "train/XR_ELBOW/patient00001/study2_negative/image1.png",
                          "train/XR_HAND/patient00002/study1_negative/image1.png",
                          "valid/XR_WRIST/patient00003/study1_positive/image1.png",
                          "valid/XR_WRIST/patient00003/study1_positive/image2.png",
                          "valid/XR_WRIST/patient00003/study1_positive/image3.png"})
      file(f);
    csv("train_image_paths.csv",
        "MURA-v1.1/train/XR_ELBOW/patient00001/study1_positive/image1.png\n"
        "MURA-v1.1/train/XR_ELBOW/patient00001/study1_positive/image2.png\n"
        "MURA-v1.1/train/XR_ELBOW/patient00001/study2_negative/image1.png\n"
        "MURA-v1.1/train/XR_HAND/patient00002/study1_negative/image1.png\n");
    csv("train_labeled_studies.csv",
        "MURA-v1.1/train/XR_ELBOW/patient00001/study1_positive/,1\n"
        "MURA-v1.1/train/XR_ELBOW/patient00001/study2_negative/,0\n"
        "MURA-v1.1/train/XR_HAND/patient00002/study1_negative/,0\n");
    csv("valid_image_paths.csv",
        "MURA-v1.1/valid/XR_WRIST/patient00003/study1_positive/image1.png\n"
        "MURA-v1.1/valid/XR_WRIST/patient00003/study1_positive/image2.png\n"
        "MURA-v1.1/valid/XR_WRIST/patient00003/study1_positive/image3.png\n");
    csv("valid_labeled_studies.csv", "MURA-v1.1/valid/XR_WRIST/patient00003/study1_positive/,1\n");
  }
  void TearDown() override { fs::remove_all(top_); }

  void file(const std::string& relative, const std::string& content = "png") {
    const fs::path path = fs::path(root_) / relative;
    fs::create_directories(path.parent_path());
    data::write_file_atomic(path.string(), content, false);
  }
  void csv(const std::string& name, const std::string& text) { data::write_file_atomic(root_ + "/" + name, text, false); }
  void append_csv(const std::string& name, const std::string& text) {
    csv(name, data::read_file_text(root_ + "/" + name) + text);
  }
  std::vector<std::pair<std::string, int>> labelled_paths(const data::MuraIndex& index) {
    std::vector<std::pair<std::string, int>> out;
    for (size_t i = 0; i < index.images.size(); ++i) out.push_back({index.images[i].path, index.study_of(i).label});
    return out;
  }

  std::string top_, root_;
};

TEST_F(MuraTree, CleanTree) {
  const data::MuraIndex index = data::load_mura_index(root_);
  EXPECT_EQ(index.root, root_);
  ASSERT_EQ(index.images.size(), 7u);
  ASSERT_EQ(index.studies.size(), 4u);
  EXPECT_EQ(index.count_images(data::Subset::train), 4);
  EXPECT_EQ(index.count_images(data::Subset::valid), 3);
  EXPECT_EQ(index.count_studies(data::Subset::valid), 1);
  EXPECT_EQ(index.report.inconsistencies(), 0);
  EXPECT_EQ(index.report.summary(), "");
  // Sorted by path; studies carry part, patient, label and their images.
  EXPECT_EQ(index.images[0].path, "train/XR_ELBOW/patient00001/study1_positive/image1.png");
  const data::MuraStudy& first = index.study_of(0);
  EXPECT_EQ(first.key, "train/XR_ELBOW/patient00001/study1_positive");
  EXPECT_EQ(first.part, data::BodyPart::elbow);
  EXPECT_EQ(first.patient, "patient00001");
  EXPECT_EQ(first.label, 1);
  EXPECT_EQ(first.images, (std::vector<int64_t>{0, 1}));
  const data::MuraStudy& hand = index.study_of(3);
  EXPECT_EQ(hand.part, data::BodyPart::hand);
  EXPECT_EQ(hand.label, 0);
  const data::MuraStudy& wrist = index.study_of(6);
  EXPECT_EQ(wrist.subset, data::Subset::valid);
  EXPECT_EQ(wrist.images.size(), 3u);
  EXPECT_EQ(index.file_path(0), root_ + "/train/XR_ELBOW/patient00001/study1_positive/image1.png");
  EXPECT_THAT(data::describe_index(index), HasSubstr("total: 7 images in 4 studies (4 train, 3 valid)"));
  // The parent folder works as a root too.
  EXPECT_EQ(labelled_paths(data::load_mura_index(top_)), labelled_paths(index));
}

TEST_F(MuraTree, SidecarsAreIgnored) {
  const auto clean = labelled_paths(data::load_mura_index(root_));
  file("train/XR_ELBOW/patient00001/study1_positive/._image1.png", "\x00\x05\x16\x07");
  file("valid/XR_WRIST/patient00003/study1_positive/._image3.png");
  file("train/._XR_ELBOW");
  fs::create_directories(root_ + "/train/._XR_HAND");
  file("train/XR_ELBOW/patient00001/study1_positive/.DS_Store");
  const data::MuraIndex index = data::load_mura_index(root_);
  EXPECT_EQ(labelled_paths(index), clean);
  EXPECT_EQ(index.report.inconsistencies(), 0) << index.report.summary();
  EXPECT_EQ(index.report.sidecars_skipped, 3);  // the two files and the ._XR_HAND folder
  EXPECT_EQ(index.report.other_files_skipped, 1);
}

TEST_F(MuraTree, CrlfCsvs) {
  const auto clean = labelled_paths(data::load_mura_index(root_));
  for (const char* name : {"train_image_paths.csv", "train_labeled_studies.csv", "valid_image_paths.csv",
                           "valid_labeled_studies.csv"}) {
    std::string text = data::read_file_text(root_ + "/" + name), crlf;
    for (char c : text) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    csv(name, crlf);
  }
  const data::MuraIndex index = data::load_mura_index(root_);
  EXPECT_EQ(labelled_paths(index), clean);
  EXPECT_EQ(index.report.inconsistencies(), 0) << index.report.summary();
}

TEST_F(MuraTree, MissingImageCsvIsRecoveredFromFolders) {
  const auto clean = labelled_paths(data::load_mura_index(root_));
  fs::remove(root_ + "/train_image_paths.csv");
  const data::MuraIndex index = data::load_mura_index(root_);
  EXPECT_EQ(labelled_paths(index), clean);
  EXPECT_EQ(index.report.count(data::IndexIssue::missing_csv), 1);
  EXPECT_EQ(index.report.inconsistencies(), 0);
  EXPECT_THAT(index.report.summary(), HasSubstr("train_image_paths.csv (4 images taken from the folders)"));
}

TEST_F(MuraTree, MissingLabelCsvUsesFolderNames) {
  const auto clean = labelled_paths(data::load_mura_index(root_));
  fs::remove(root_ + "/train_labeled_studies.csv");
  fs::remove(root_ + "/valid_labeled_studies.csv");
  fs::remove(root_ + "/valid_image_paths.csv");
  const data::MuraIndex index = data::load_mura_index(root_);
  EXPECT_EQ(labelled_paths(index), clean);
  EXPECT_EQ(index.report.count(data::IndexIssue::missing_csv), 3);
  EXPECT_EQ(index.report.count(data::IndexIssue::label_from_folder_only), 0);
  EXPECT_EQ(index.report.inconsistencies(), 0);
}

TEST_F(MuraTree, EveryInconsistencyIsCountedAndNothingIsMislabelled) {
  // A CSV row whose file is missing.
  append_csv("train_image_paths.csv", "MURA-v1.1/train/XR_HAND/patient00002/study1_negative/image9.png\n");
  // An image file no CSV row lists.
  file("train/XR_HAND/patient00002/study1_negative/image5.png");
  // The labeled CSV contradicts the folder name of study2_negative.
  csv("train_labeled_studies.csv",
      "MURA-v1.1/train/XR_ELBOW/patient00001/study1_positive/,1\n"
      "MURA-v1.1/train/XR_ELBOW/patient00001/study2_negative/,1\n"
      "MURA-v1.1/train/XR_HAND/patient00002/study1_negative/,0\n"
      "MURA-v1.1/train/XR_HAND/patient00007/study1_positive/,1\n"  // a labeled study without images
      "hello,world\n");                                             // malformed
  // A study folder without a label suffix and without a label row (two images).
  file("train/XR_FINGER/patient00004/study1/image1.png");
  file("train/XR_FINGER/patient00004/study1/image2.png");
  // A study with a suffix but no label row: labelled from the folder, reported.
  file("train/XR_FINGER/patient00005/study1_positive/image1.png");
  append_csv("train_image_paths.csv",
             "MURA-v1.1/train/XR_FINGER/patient00004/study1/image1.png\n"
             "MURA-v1.1/train/XR_FINGER/patient00004/study1/image2.png\n"
             "MURA-v1.1/train/XR_FINGER/patient00005/study1_positive/image1.png\n"
             "MURA-v1.1/train/XR_FOOT/patient00006/study1_positive/image1.png\n"    // malformed: no such part
             "MURA-v1.1/train/XR_ELBOW/patient00001/study1_positive/image1.png\n");  // duplicate

  const data::MuraIndex index = data::load_mura_index(root_);
  const data::IndexReport& r = index.report;
  EXPECT_EQ(r.count(data::IndexIssue::csv_image_missing_file), 1);
  EXPECT_EQ(r.count(data::IndexIssue::unlisted_image_file), 1);
  EXPECT_EQ(r.count(data::IndexIssue::label_conflict), 1);
  EXPECT_EQ(r.count(data::IndexIssue::labeled_study_without_images), 1);
  EXPECT_EQ(r.count(data::IndexIssue::malformed_csv_row), 2);
  EXPECT_EQ(r.count(data::IndexIssue::study_without_label), 2);
  EXPECT_EQ(r.count(data::IndexIssue::label_from_folder_only), 1);
  EXPECT_EQ(r.count(data::IndexIssue::duplicate_csv_row), 1);
  EXPECT_EQ(r.inconsistencies(), 10);
  const std::string summary = r.summary();
  EXPECT_THAT(summary, HasSubstr("1 image CSV row(s) whose file does not exist (left out) (e.g. "
                                 "train/XR_HAND/patient00002/study1_negative/image9.png)"));
  EXPECT_THAT(summary, HasSubstr("train/XR_ELBOW/patient00001/study2_negative (CSV says 1)"));
  EXPECT_THAT(summary, HasSubstr("train_labeled_studies.csv line 5: 'hello,world'"));
  EXPECT_THAT(summary, HasSubstr("2 image(s) whose study has no label"));

  // What is kept: the clean images, the folder-labelled study; never the conflicting or unlabeled ones.
  std::vector<std::pair<std::string, int>> expected = {
      {"train/XR_ELBOW/patient00001/study1_positive/image1.png", 1},
      {"train/XR_ELBOW/patient00001/study1_positive/image2.png", 1},
      {"train/XR_FINGER/patient00005/study1_positive/image1.png", 1},
      {"train/XR_HAND/patient00002/study1_negative/image1.png", 0},
      {"valid/XR_WRIST/patient00003/study1_positive/image1.png", 1},
      {"valid/XR_WRIST/patient00003/study1_positive/image2.png", 1},
      {"valid/XR_WRIST/patient00003/study1_positive/image3.png", 1}};
  EXPECT_EQ(labelled_paths(index), expected);

  data::IndexOptions strict;
  strict.strict = true;
  EXPECT_THAT(error_of([&] { data::load_mura_index(root_, strict); }), HasSubstr("10 inconsistencies (strict mode)"));
}

TEST_F(MuraTree, DuplicateStudyRowsWithDifferentLabelsAreAConflict) {
  append_csv("valid_labeled_studies.csv", "MURA-v1.1/valid/XR_WRIST/patient00003/study1_positive/,0\n");
  const data::MuraIndex index = data::load_mura_index(root_);
  EXPECT_EQ(index.report.count(data::IndexIssue::label_conflict), 1);
  EXPECT_EQ(index.count_images(data::Subset::valid), 0);
}

TEST_F(MuraTree, UnusableRootsSayWhatToDo) {
  EXPECT_THAT(error_of([&] { data::load_mura_index(top_ + "/nothing"); }), HasSubstr("is not a folder"));
  fs::create_directories(top_ + "/empty");
  EXPECT_THAT(error_of([&] { data::load_mura_index(top_ + "/empty"); }),
              HasSubstr("point it at the folder that holds the CSVs"));
  fs::remove_all(root_ + "/train");
  fs::remove_all(root_ + "/valid");
  EXPECT_THAT(error_of([&] { data::load_mura_index(root_); }), HasSubstr("yields no labeled images"));
}

}  // namespace
