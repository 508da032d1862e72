// The command lines of the apps: the strict numeric flags of experiment/flags (every app parses with
// FlagParser), and the documented invocations of mura_synth and mura_verify run as built.
// Regressions: `mura_verify --max-side abc` became 0 (atoi) and flagged every image; `-5` and `1e9` were
// taken; `--rotation nan` was accepted; the README's `mura_verify ROOT` and `mura_synth OUT` did not run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "experiment/flags.h"
#include "support/error_of.h"
#include "support/run_app.h"
#include "support/temp_path.h"

#ifndef ENGINE_APPS_DIR
#error "ENGINE_APPS_DIR (the folder of the built apps) is set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using experiment::FlagParser;

using test_support::error_of;

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
  EXPECT_THAT(f.help(), HasSubstr("longest side (1..65535)"));
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

using Command = test_support::AppRun;

std::string temp_path(const std::string& name) { return test_support::fresh_temp_path("apps_cli", name); }

Command run_app(const std::string& app, const std::string& args) {
  static int counter = 0;
  return test_support::run_program(std::string(ENGINE_APPS_DIR) + "/" + app, " " + args,
                                   temp_path("cmd" + std::to_string(counter++)));
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

// A user's mistake reads as a plain message: no source path, line or failed expression before it.
// Regression: "error: ../experiment/flags.cpp:149: error: bench_loader: unknown flag --lr".
TEST(AppsCli, UserMistakesPrintPlainMessages) {
  const Command abc = run_app("mura_verify", "/nonexistent --max-side abc");
  EXPECT_THAT(abc.err, ::testing::StartsWith("error: --max-side: 'abc' is not an integer"));
  const Command unknown = run_app("bench_loader", "--lr 0.1");
  EXPECT_THAT(unknown.err, ::testing::StartsWith("error: bench_loader: unknown flag --lr"));
  const Command cache = run_app("bench_loader", "--cache bogus");
  EXPECT_THAT(cache.err, ::testing::StartsWith("error: unknown cache mode 'bogus'"));
  for (const Command* c : {&abc, &unknown, &cache}) {
    EXPECT_THAT(c->err, ::testing::Not(HasSubstr(".cpp:"))) << c->err;
    EXPECT_THAT(c->err, ::testing::Not(HasSubstr("check failed"))) << c->err;
  }
}

// demo_tiny_cnn and bench_loader parsed with atoi/strtof by hand: `--epochs abc` became 0 and `--lr nan`
// was taken. Every number is now refused unless whole and in range, with the flag named (status 2).
TEST(AppsCli, DemoTinyCnnAndBenchLoaderRefuseBadNumbers) {
  for (const char* app : {"demo_tiny_cnn", "bench_loader"}) {
    const Command epochs = run_app(app, "--epochs abc");
    EXPECT_EQ(epochs.status, 2) << app << epochs.out << epochs.err;
    EXPECT_THAT(epochs.err, HasSubstr("--epochs: 'abc' is not an integer")) << app;
    const Command batch = run_app(app, "--batch -5");
    EXPECT_EQ(batch.status, 2) << app << batch.out << batch.err;
    EXPECT_THAT(batch.err, HasSubstr("--batch must be between 1 and 65536, got -5")) << app;
    const Command lr = run_app(app, "--lr nan");
    EXPECT_EQ(lr.status, 2) << app << lr.out << lr.err;
    EXPECT_THAT(lr.err, HasSubstr("--lr")) << app;
    EXPECT_THAT(run_app(app, "--size 4").err, HasSubstr("--size must be between 8 and")) << app;
    EXPECT_THAT(run_app(app, "--images 1e9").err, HasSubstr("--images: '1e9' is not an integer")) << app;
    EXPECT_THAT(run_app(app, "--seed -1").err, HasSubstr("--seed: '-1' is not a non-negative integer")) << app;
    EXPECT_EQ(run_app(app, "--help").status, 0) << app;
  }
  EXPECT_THAT(run_app("demo_tiny_cnn", "--lr nan").err, HasSubstr("--lr: 'nan' is not a finite number"));
  EXPECT_THAT(run_app("bench_loader", "--lr nan").err, HasSubstr("unknown flag --lr"));  // it trains nothing
  for (const char* value : {"0", "-0.01", "1e-60"}) {  // 1e-60 is 0 as a float
    const Command c = run_app("demo_tiny_cnn", std::string("--lr ") + value);
    EXPECT_EQ(c.status, 2) << value;
    EXPECT_THAT(c.err, HasSubstr("--lr must be a positive float")) << value;
  }
  const Command threads = run_app("demo_tiny_cnn", "--threads -1");
  EXPECT_EQ(threads.status, 2);
  EXPECT_THAT(threads.err, HasSubstr("--threads must be between 0 and"));
  const Command few = run_app("demo_tiny_cnn", "--images 8 --batch 16");
  EXPECT_EQ(few.status, 2);
  EXPECT_THAT(few.err, HasSubstr("--images (8) must be at least --batch (16)"));
  const Command workers = run_app("bench_loader", "--workers 0");
  EXPECT_EQ(workers.status, 2);
  EXPECT_THAT(workers.err, HasSubstr("--workers must be between 1 and 256, got 0"));
  const Command cache = run_app("bench_loader", "--cache bogus");
  EXPECT_EQ(cache.status, 2);
  EXPECT_THAT(cache.err, HasSubstr("unknown cache mode 'bogus'"));
}

// A tiny valid run (1 epoch of 32 images of 8x8, on the CPU) still trains and reports.
TEST(AppsCli, DemoTinyCnnTinyRunWorks) {
  const Command c = run_app("demo_tiny_cnn", "--device cpu --epochs 1 --images 32 --size 8 --batch 16 --lr 1e-2 "
                                             "--threads 1 --seed 3");
  ASSERT_EQ(c.status, 0) << c.out << c.err;
  EXPECT_THAT(c.out, HasSubstr("32 training images of 8x8, batch 16"));
  EXPECT_THAT(c.out, HasSubstr("epoch  1  train loss"));
  EXPECT_THAT(c.out, HasSubstr("held-out accuracy"));
}

}  // namespace
