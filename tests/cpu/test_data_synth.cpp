// Tests of the synthetic MURA generator (data/synth_mura.h) and the verification scan
// (data/verify.h): the tree is MURA-shaped and indexes cleanly, it is byte-identical for a seed
// whatever the thread count, all seven parts, 1-4 views, ~40% abnormal studies with defect boxes inside
// the images, a mix of 8-bit gray, RGB and 16-bit files, the quirks mode, and unreadable files found.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/csv.h"
#include "data/image.h"
#include "data/io_util.h"
#include "data/mura_index.h"
#include "data/synth_mura.h"
#include "data/verify.h"
#include "engine/check.h"
#include "support/temp_path.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;

namespace {

class SynthTest : public test_support::TempDirTest {
 protected:
  static data::SynthOptions small(uint64_t seed) {
    data::SynthOptions o;
    o.seed = seed;
    o.train_patients = 21;
    o.valid_patients = 7;
    o.min_side = 64;
    o.max_side = 160;
    return o;
  }
  // Every file under `root`, relative path -> bytes.
  static std::map<std::string, std::vector<uint8_t>> files(const std::string& root) {
    std::map<std::string, std::vector<uint8_t>> out;
    for (const auto& entry : fs::recursive_directory_iterator(root))
      if (entry.is_regular_file())
        out[fs::relative(entry.path(), root).string()] = data::read_file_bytes(entry.path().string());
    return out;
  }
};

TEST_F(SynthTest, MuraShapedAndIndexesCleanly) {
  const auto start = std::chrono::steady_clock::now();
  data::SynthOptions o = small(5);
  o.max_side = 512;
  o.min_side = 200;
  const data::SynthResult made = data::make_synthetic_mura(dir_, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 30.0) << "generation should take a few seconds";
  EXPECT_EQ(made.root, dir_ + "/MURA-v1.1");
  EXPECT_EQ(made.patients, 28);

  // The CSVs as MURA's: no header, paths from MURA-v1.1/, study rows ending in "/" then 0 or 1.
  const std::string images_csv = data::read_file_text(made.root + "/train_image_paths.csv");
  EXPECT_EQ(images_csv.rfind("MURA-v1.1/train/XR_", 0), 0u);
  const std::string studies_csv = data::read_file_text(made.root + "/valid_labeled_studies.csv");
  EXPECT_EQ(studies_csv.rfind("MURA-v1.1/valid/XR_", 0), 0u);
  EXPECT_THAT(studies_csv, HasSubstr("/,"));
  EXPECT_EQ(images_csv.find('\r'), std::string::npos);

  const data::MuraIndex index = data::load_mura_index(made.root);
  EXPECT_EQ(index.report.summary(), "");
  EXPECT_EQ(static_cast<int64_t>(index.images.size()), made.images);
  EXPECT_EQ(static_cast<int64_t>(index.studies.size()), made.studies);
  std::set<data::BodyPart> train_parts, valid_parts;
  int64_t abnormal = 0;
  for (const data::MuraStudy& s : index.studies) {
    (s.subset == data::Subset::train ? train_parts : valid_parts).insert(s.part);
    EXPECT_GE(s.images.size(), 1u);
    EXPECT_LE(s.images.size(), 4u);
    abnormal += s.label;
  }
  EXPECT_EQ(train_parts.size(), 7u);
  EXPECT_EQ(valid_parts.size(), 7u);
  EXPECT_EQ(abnormal, made.abnormal_studies);
  EXPECT_NEAR(static_cast<double>(abnormal) / index.studies.size(), 0.4, 0.1);

  // Files: 8-bit gray, RGB and 16-bit PNGs (IHDR: bit depth at byte 24, colour type at 25), sides in range.
  std::map<std::pair<int, int>, int> kinds;
  for (size_t i = 0; i < index.images.size(); ++i) {
    const std::vector<uint8_t> bytes = data::read_file_bytes(index.file_path(i));
    ASSERT_GT(bytes.size(), 26u);
    ++kinds[{bytes[24], bytes[25]}];
    const data::Image im = data::decode_image(bytes.data(), bytes.size(), index.file_path(i));
    EXPECT_EQ(im.channels, 1) << "radiographs are gray even when saved as RGB";
    EXPECT_LE(std::max(im.width, im.height), 512);
    EXPECT_GE(std::max(im.width, im.height), 200);
  }
  EXPECT_GT((kinds[{8, 0}]), 0);
  EXPECT_GT((kinds[{8, 2}]), 0);
  EXPECT_GT((kinds[{16, 0}]), 0);

  // Defect boxes: only in abnormal studies, inside their image, and every abnormal study has one.
  const std::map<std::string, data::DefectBox> boxes = data::read_defect_boxes(made.root);
  EXPECT_EQ(static_cast<int64_t>(boxes.size()), made.defect_boxes);
  std::map<std::string, int> image_of;
  for (size_t i = 0; i < index.images.size(); ++i) image_of[index.images[i].path] = static_cast<int>(i);
  std::set<int64_t> studies_with_box;
  for (const auto& [path, box] : boxes) {
    ASSERT_TRUE(image_of.count(path)) << path;
    const int i = image_of[path];
    EXPECT_EQ(index.study_of(i).label, 1) << path;
    studies_with_box.insert(index.images[i].study);
    const data::Image im = data::decode_image_file(index.file_path(i));
    EXPECT_TRUE(box.x0 >= 0 && box.y0 >= 0 && box.x0 < box.x1 && box.y0 < box.y1 && box.x1 <= im.width &&
                box.y1 <= im.height)
        << path;
  }
  EXPECT_EQ(static_cast<int64_t>(studies_with_box.size()), made.abnormal_studies);
}

TEST_F(SynthTest, DeterministicPerSeedWhateverTheThreads) {
  data::SynthOptions a = small(9), b = small(9), c = small(10);
  a.threads = 1;
  b.threads = 3;
  const auto ra = data::make_synthetic_mura(dir_ + "/a", a);
  const auto rb = data::make_synthetic_mura(dir_ + "/b", b);
  const auto rc = data::make_synthetic_mura(dir_ + "/c", c);
  const auto fa = files(ra.root), fb = files(rb.root), fc = files(rc.root);
  EXPECT_GT(fa.size(), 50u);
  EXPECT_TRUE(fa == fb) << "the same seed must give the same bytes";
  EXPECT_FALSE(fa == fc);
}

TEST_F(SynthTest, QuirksAreToleratedByTheIndex) {
  data::SynthOptions o = small(2);
  o.quirks = true;
  const data::SynthResult made = data::make_synthetic_mura(dir_, o);
  EXPECT_NE(data::read_file_text(made.root + "/train_image_paths.csv").find("\r\n"), std::string::npos);
  const data::MuraIndex index = data::load_mura_index(made.root);
  EXPECT_EQ(index.report.inconsistencies(), 0) << index.report.summary();
  EXPECT_GT(index.report.sidecars_skipped, 5);
  EXPECT_EQ(static_cast<int64_t>(index.images.size()), made.images);
}

TEST_F(SynthTest, VerifyFindsTheTruncatedFiles) {
  data::SynthOptions o = small(4);
  o.truncated_images = 3;
  const data::SynthResult made = data::make_synthetic_mura(dir_, o);
  const data::MuraIndex index = data::load_mura_index(made.root);
  std::vector<std::string> paths;
  for (size_t i = 0; i < index.images.size(); ++i) paths.push_back(index.file_path(i));
  int64_t progress_calls = 0;
  const data::VerifyResult result = data::verify_images(paths, 2, {}, [&](int64_t) { ++progress_calls; });
  EXPECT_EQ(result.checked, static_cast<int64_t>(paths.size()));
  ASSERT_EQ(result.bad.size(), 3u);
  for (const data::BadFile& bad : result.bad) {
    EXPECT_THAT(bad.error, HasSubstr(bad.path + ": corrupt or truncated PNG"));
    EXPECT_EQ(bad.path.find(made.root + "/train/"), 0u);
  }
  EXPECT_EQ(result.gray + result.color, result.checked - 3);
  EXPECT_GT(progress_calls, 0);
  const std::string list = dir_ + "/bad_files.csv";
  data::write_bad_file_list(list, result.bad);
  const std::vector<data::CsvRow> rows = data::parse_csv(data::read_file_text(list), list);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].fields, (std::vector<std::string>{"path", "error"}));
  EXPECT_EQ(rows[1].fields[0], result.bad[0].path);
}

TEST_F(SynthTest, BadOptions) {
  data::SynthOptions o = small(1);
  o.train_patients = 0;
  EXPECT_THROW(data::make_synthetic_mura(dir_, o), engine::Error);
  o = small(1);
  o.max_side = 10;
  EXPECT_THROW(data::make_synthetic_mura(dir_, o), engine::Error);
}

}  // namespace
