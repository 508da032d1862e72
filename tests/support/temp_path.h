// Fresh temporary paths for tests: <GoogleTest's temp folder>/<prefix>_<pid>_<name>, removed first, so that
// parallel test processes and reruns never see each other's files.
#pragma once
#include <gtest/gtest.h>
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

}  // namespace test_support
