// Fresh temporary paths for tests: <GoogleTest's temp folder>/<prefix>_<pid>_<name>, removed first, so that
// parallel test processes and reruns never see each other's files; and a fixture that gives each test a
// fresh folder of its own (dir_), removed afterwards.
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace test_support {

// The path, with nothing there (a stale file or folder of that name is removed).
inline std::string fresh_temp_path(const std::string& prefix, const std::string& name) {
  const std::string path = ::testing::TempDir() + "/" + prefix + "_" + std::to_string(::getpid()) + "_" + name;
  std::filesystem::remove_all(path);
  return path;
}

// Each test gets a new, empty folder dir_ (mkdtemp under the system's temporary folder), removed after it.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "mura_engine_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

}  // namespace test_support
