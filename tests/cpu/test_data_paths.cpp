// data/paths: the one rule for image paths read from files, and its use by every reader of such paths
// (split lists, the MURA CSVs, defect_boxes.csv). Regression: a split row
// "../../../../etc/passwd" was opened outside the data root by `evaluate`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/io_util.h"
#include "data/mura_index.h"
#include "data/paths.h"
#include "data/splits.h"
#include "engine/check.h"
#include "support/temp_path.h"
#include "support/error_of.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using test_support::error_of;

TEST(PathRule, AcceptsRelativeImagePaths) {
  for (const char* path : {"train/XR_HAND/patient00011/study1_negative/image1.png", "a.PNG", "x/y.jpg", "x/y.JPEG",
                           "with space/and,comma.png", "..hidden/x..y.png", "a/.b/c.png", "~/x.png"})
    EXPECT_EQ(data::relative_image_path_problem(path), "") << path;
}

TEST(PathRule, RefusesEverythingThatCouldLeaveTheRoot) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"../../../../etc/passwd", "'..' component"},
      {"../x.png", "'..' component"},
      {"a/../../x.png", "'..' component"},
      {"a/..", "'..' component"},
      {"./a.png", "'.' component"},
      {"/etc/x.png", "absolute"},
      {"//server/x.png", "absolute"},
      {"a//b.png", "empty component"},
      {"a/", "empty component"},
      {"", "empty"},
      {"a\\..\\..\\x.png", "backslash"},
      {std::string("a.png\0/../x", 11), "NUL"},
      {"a\n.png", "control character"},
      {"C:/x.png", "drive letter"},
      {"a/b.gif", "does not end in .png"},
      {"etc/passwd", "does not end in .png"},
      {std::string(5000, 'a') + ".png", "longer than"},
  };
  for (const auto& [path, problem] : cases) {
    EXPECT_THAT(data::relative_image_path_problem(path), HasSubstr(problem)) << path;
    EXPECT_THAT(error_of([&] { data::check_relative_image_path(path, "list.csv: line 3"); }),
                HasSubstr("list.csv: line 3: image path '"))
        << path;
  }
  // The path is printed escaped (no raw control bytes in a log line).
  EXPECT_THAT(error_of([] { data::check_relative_image_path("a\n.png", "f"); }), HasSubstr("'a\\x0a.png'"));
}

TEST(PathRule, SplitListsRefuseEscapingRowsNamingFileAndLine) {
  const std::string header = "path,label,patient,study,body_part\n";
  const std::string good = "train/XR_HAND/patient1/study1_positive/image1.png,1,patient1,s1,XR_HAND\n";
  EXPECT_EQ(data::parse_split_list(header + good, "test.csv").size(), 1u);
  for (const std::string bad_path : {"../../../../etc/passwd", "/etc/passwd", "../../x.png", "a\\..\\x.png"}) {
    const std::string text = header + good + bad_path + ",0,p,s,XR_HAND\n";
    const std::string message = error_of([&] { data::parse_split_list(text, "runs/x/split/test.csv"); });
    EXPECT_THAT(message, HasSubstr("runs/x/split/test.csv: line 3: image path")) << bad_path;
  }
}

class PathRuleFiles : public test_support::TempDirTest {};

TEST_F(PathRuleFiles, ReadSplitRefusesARowOutsideTheRoot) {
  const std::string folder = dir_ + "/split";
  fs::create_directories(folder);
  const std::string header = "path,label,patient,study,body_part\n";
  data::write_file_atomic(folder + "/train.csv", header + "train/XR_HAND/p1/s1/image1.png,1,p1,s1,XR_HAND\n");
  data::write_file_atomic(folder + "/validation.csv", header);
  data::write_file_atomic(folder + "/test.csv", header + "../../../../etc/passwd,0,p,s,XR_HAND\n");
  const std::string message = error_of([&] { data::read_split(folder); });
  EXPECT_THAT(message, HasSubstr(folder + "/test.csv: line 2: image path '../../../../etc/passwd' has a '..' component"));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("root:")));
}

TEST_F(PathRuleFiles, MuraIndexSkipsRowsThatBreakTheRule) {
  const std::string root = dir_ + "/MURA-v1.1";
  const std::string study = "train/XR_HAND/patient00001/study1_positive";
  fs::create_directories(root + "/" + study);
  data::write_file_atomic(root + "/" + study + "/image1.png", std::string("not decoded by the index"));
  data::write_file_atomic(root + "/train_image_paths.csv",
                          "MURA-v1.1/" + study + "/image1.png\n"
                          "MURA-v1.1/" + study + "/../../../../../../etc/passwd\n"
                          "MURA-v1.1/" + study + "/notes.txt\n");
  data::write_file_atomic(root + "/train_labeled_studies.csv", "MURA-v1.1/" + study + "/,1\n");
  const data::MuraIndex index = data::load_mura_index(root);
  ASSERT_EQ(index.images.size(), 1u);
  EXPECT_EQ(index.images[0].path, study + "/image1.png");
  EXPECT_EQ(index.report.count(data::IndexIssue::malformed_csv_row), 2);
}

}  // namespace
