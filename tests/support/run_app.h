// Runs a built app through the shell, as a user types it, and captures what it says: for the tests of the
// apps' command lines. The output goes through two scratch files next to `scratch_base` (removed after).
#pragma once
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace test_support {

struct AppRun {
  int status = -1;  // the exit status; -1 when the app did not exit normally (a signal)
  std::string out, err;
};

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Each argument single-quoted for the shell, with a leading space: the words reach the app as written.
inline std::string shell_quoted(const std::vector<std::string>& args) {
  std::string text;
  for (const std::string& a : args) {
    text += " '";
    for (char c : a) text += c == '\'' ? std::string("'\\''") : std::string(1, c);
    text += "'";
  }
  return text;
}

// `program` followed by `shell_args` (already in shell syntax), stdin from /dev/null.
inline AppRun run_program(const std::string& program, const std::string& shell_args, const std::string& scratch_base) {
  const std::string command = program + shell_args + " </dev/null >" + scratch_base + ".out 2>" + scratch_base + ".err";
  const int raw = std::system(command.c_str());
  AppRun run;
  run.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  run.out = read_text_file(scratch_base + ".out");
  run.err = read_text_file(scratch_base + ".err");
  std::filesystem::remove(scratch_base + ".out");
  std::filesystem::remove(scratch_base + ".err");
  return run;
}

}  // namespace test_support
