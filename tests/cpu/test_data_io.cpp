// data/io_util: atomic writes (a reader sees the old file or the whole new one, and nothing is left
// behind when a write fails) and the size guard of the readers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "data/io_util.h"
#include "engine/check.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class IoTest : public test_support::TempDirTest {
 protected:
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(IoTest, AtomicWriteReplacesTheWholeFileAndLeavesNoTemporary) {
  const std::string path = dir_ + "/metrics.json";
  data::write_file_atomic(path, std::string(100000, 'a'));
  data::write_file_atomic(path, std::string("short"));
  EXPECT_EQ(data::read_file_text(path), "short");  // not "short" followed by the old file's tail
  data::write_file_atomic(path, std::string("fast"), /*durable=*/false);
  EXPECT_EQ(data::read_file_text(path), "fast");
  EXPECT_EQ(names(), std::vector<std::string>{"metrics.json"});
}

TEST_F(IoTest, FailedAtomicWriteKeepsTheOldFileAndNamesThePath) {
  const std::string path = dir_ + "/split.txt";
  data::write_file_atomic(path, std::string("old"));
  // The destination is a folder: the rename fails after the temporary was written.
  const std::string folder = dir_ + "/taken";
  fs::create_directories(folder + "/inside");
  try {
    data::write_file_atomic(folder, std::string("new"));
    FAIL() << "wrote over a folder";
  } catch (const engine::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(folder));
  }
  EXPECT_EQ(data::read_file_text(path), "old");
  EXPECT_EQ(names(), (std::vector<std::string>{"split.txt", "taken"}));
  // A missing folder: nothing is created.
  EXPECT_THROW(data::write_file_atomic(dir_ + "/missing/x.csv", std::string("x")), engine::Error);
  EXPECT_FALSE(fs::exists(dir_ + "/missing"));
}

TEST_F(IoTest, ReadersRefuseFilesOverTheirLimit) {
  const std::string path = dir_ + "/big.csv";
  data::write_file_atomic(path, std::string(2000, 'x'));
  try {
    data::read_file_text(path, 1000);
    FAIL() << "read a file over the limit";
  } catch (const engine::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("2000 bytes is more than the limit of 1000"));
    EXPECT_THAT(e.what(), ::testing::Not(HasSubstr("xxx")));  // never the content
  }
}

}  // namespace
