// The command lines of the apps: the strict numeric flags of experiment/flags (every app parses with
// FlagParser), and the documented invocations of mura_synth and mura_verify run as built.
// Regressions: `mura_verify --max-side abc` became 0 (atoi) and flagged every image; `-5` and `1e9` were
// taken; `--rotation nan` was accepted; the README's `mura_verify ROOT` and `mura_synth OUT` did not run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "experiment/flags.h"
#include "support/temp_path.h"

#ifndef ENGINE_APPS_DIR
#error "ENGINE_APPS_DIR (the folder of the built apps) is set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using experiment::FlagParser;

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------------
// FlagParser

TEST(StrictFlags, IntegersAreWholeDecimalNumbersInRange) {
  int max_side = 8192;
  int64_t images = 0;
  uint64_t seed = 0;
  FlagParser f("app", "test");
  f.add("--max-side", &max_side, "longest side", 1, 65535, "PX");
  f.add("--images", &images, "images");
  f.add("--seed", &seed, "seed");
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--max-side", "4096", "--images=-3", "--seed", "18446744073709551615"}));
  EXPECT_EQ(max_side, 4096);
  EXPECT_EQ(images, -3);
  EXPECT_EQ(seed, 18446744073709551615ull);
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--max-side=+7"}));
  EXPECT_EQ(max_side, 7);
  for (const char* bad : {"abc", "", " 5", "5 ", "1e9", "0x10", "5px", "4.0", "--", "+"})
    EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--max-side", bad}); }),
                HasSubstr(std::string("--max-side: '") + bad + "' is not an integer"))
        << bad;
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--max-side", "-5"}); }),
              HasSubstr("--max-side must be between 1 and 65535, got -5"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--max-side", "0"}); }),
              HasSubstr("--max-side must be between 1 and 65535, got 0"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--max-side", "1000000000"}); }),
              HasSubstr("--max-side must be between 1 and 65535, got 1000000000"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--images", "99999999999999999999"}); }),
              HasSubstr("--images: '99999999999999999999' is out of range"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--seed", "-1"}); }),
              HasSubstr("--seed: '-1' is not a non-negative integer"));
  EXPECT_EQ(max_side, 7);  // a refused value leaves the target alone
}

TEST(StrictFlags, PlainIntFlagsRefuseValuesOutsideInt) {
  int threads = 2;
  FlagParser f("app", "test");
  f.add("--threads", &threads, "threads");
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--threads", "4294967297"}); }),
              HasSubstr("--threads must be between -2147483648 and 2147483647, got 4294967297"));
  EXPECT_EQ(threads, 2);
}

TEST(StrictFlags, FloatsAreFiniteAndInRange) {
  double lr = 0.1, rotation = 30;
  FlagParser f("app", "test");
  f.add("--lr", &lr, "learning rate");
  f.add("--rotation", &rotation, "degrees", 0.0, 180.0);
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--lr", "1e-4", "--rotation=12.5"}));
  EXPECT_EQ(lr, 1e-4);
  EXPECT_EQ(rotation, 12.5);
  for (const char* bad : {"nan", "NaN", "inf", "-inf", "infinity", "1e999", "-1e999", "0x1p3", " 1"})
    EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--lr", bad}); }), HasSubstr("is not a finite number"))
        << bad;
  for (const char* bad : {"", "abc", "1.2.3", "e5", "--", "1e"})
    EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--lr", bad}); }), HasSubstr("--lr: '")) << bad;
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--rotation", "-30"}); }),
              HasSubstr("--rotation must be between 0 and 180, got -30"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--rotation", "nan"}); }),
              HasSubstr("--rotation: 'nan' is not a finite number"));
  EXPECT_EQ(lr, 1e-4);
  EXPECT_EQ(rotation, 12.5);
  EXPECT_EQ(experiment::parse_double("--x", "1e-310"), 1e-310);  // a denormal is a finite number
}

// ---------------------------------------------------------------------------------------------------
// The built apps

struct Command {
  int status = -1;
  std::string out, err;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string temp_path(const std::string& name) { return test_support::fresh_temp_path("apps_cli", name); }

Command run_app(const std::string& app, const std::string& args) {
  static int counter = 0;
  const std::string base = temp_path("cmd" + std::to_string(counter++));
  const std::string command = std::string(ENGINE_APPS_DIR) + "/" + app + " " + args + " >" + base + ".out 2>" + base + ".err";
  const int raw = std::system(command.c_str());
  Command c;
  c.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  c.out = read_text(base + ".out");
  c.err = read_text(base + ".err");
  fs::remove(base + ".out");
  fs::remove(base + ".err");
  return c;
}

// The README's forms: `mura_synth OUT`, then `mura_verify ROOT` on what it wrote (a tiny tree).
TEST(AppsCli, DocumentedMuraSynthAndMuraVerifyInvocationsWork) {
  const std::string out = temp_path("synth");
  const Command synth = run_app("mura_synth", out + " --train-patients 3 --valid-patients 1 --min-side 48 --max-side 64");
  ASSERT_EQ(synth.status, 0) << synth.out << synth.err;
  EXPECT_THAT(synth.out, HasSubstr("wrote " + out + "/MURA-v1.1"));
  ASSERT_TRUE(fs::exists(out + "/MURA-v1.1/train_image_paths.csv"));

  const std::string bad_list = temp_path("bad_files.csv");
  const Command verify = run_app("mura_verify", out + "/MURA-v1.1 --out " + bad_list);
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
  EXPECT_THAT(verify.out, HasSubstr("0 unreadable"));
  // The flag forms still work, and give the same result.
  const Command verify_flag = run_app("mura_verify", "--root " + out + " --out " + bad_list + " --max-side 64");
  EXPECT_EQ(verify_flag.status, 0) << verify_flag.out << verify_flag.err;
  EXPECT_THAT(verify_flag.out, HasSubstr("0 unreadable"));
  fs::remove_all(out);
  fs::remove(bad_list);
}

TEST(AppsCli, MuraVerifyAndMuraSynthRefuseBadNumbers) {
  const Command abc = run_app("mura_verify", "/nonexistent --max-side abc");
  EXPECT_EQ(abc.status, 2);
  EXPECT_THAT(abc.err, HasSubstr("--max-side: 'abc' is not an integer"));
  for (const char* value : {"-5", "0", "1000000000"}) {
    const Command c = run_app("mura_verify", std::string("/nonexistent --max-side ") + value);
    EXPECT_EQ(c.status, 2) << value;
    EXPECT_THAT(c.err, HasSubstr(std::string("--max-side must be between 1 and 65535, got ") + value));
  }
  EXPECT_THAT(run_app("mura_verify", "/nonexistent --max-side 1e9").err, HasSubstr("'1e9' is not an integer"));
  EXPECT_THAT(run_app("mura_verify", "/nonexistent --threads 0").err, HasSubstr("--threads must be between 1 and"));
  const Command synth = run_app("mura_synth", "/nonexistent --train-patients abc");
  EXPECT_EQ(synth.status, 2);
  EXPECT_THAT(synth.err, HasSubstr("--train-patients: 'abc' is not an integer"));
  EXPECT_THAT(run_app("mura_synth", "/nonexistent --abnormal-fraction nan").err,
              HasSubstr("--abnormal-fraction: 'nan' is not a finite number"));
  EXPECT_THAT(run_app("mura_synth", "/nonexistent --seed -1").err, HasSubstr("--seed: '-1' is not a non-negative integer"));
  // No root, two roots, an unknown flag: usage errors (status 2).
  EXPECT_EQ(run_app("mura_verify", "").status, 2);
  EXPECT_EQ(run_app("mura_verify", "a b").status, 2);
  EXPECT_EQ(run_app("mura_synth", "--bogus 1").status, 2);
  EXPECT_EQ(run_app("mura_synth", "--help").status, 0);
}

}  // namespace
