// The two kinds of failure (engine/check.h): a user's mistake (ENGINE_USER_CHECK/FAIL, engine::UserError)
// reads as a plain message; a broken internal invariant (ENGINE_CHECK/FAIL, engine::Error) carries
// file:line and the failed expression. Regression: a mistyped flag printed
// "../experiment/flags.cpp:149: error: bench_loader: unknown flag --lr".
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/paths.h"
#include "data/splits.h"
#include "engine/check.h"
#include "experiment/flags.h"
#include "nets/net.h"

namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// The message of the engine::Error that f throws, and whether it was a UserError; fails the test if f
// throws nothing.
struct Thrown {
  std::string what;
  bool user = false;
};
template <typename F>
Thrown thrown_by(F&& f) {
  try {
    f();
  } catch (const engine::UserError& e) {
    return {e.what(), true};
  } catch (const engine::Error& e) {
    return {e.what(), false};
  }
  ADD_FAILURE() << "nothing was thrown";
  return {};
}

// A plain message: no source path, no line, no expression.
void expect_plain(const Thrown& t, const std::string& start) {
  EXPECT_TRUE(t.user) << t.what;
  EXPECT_THAT(t.what, StartsWith(start));
  EXPECT_THAT(t.what, Not(HasSubstr(".cpp:")));
  EXPECT_THAT(t.what, Not(HasSubstr(".h:")));
  EXPECT_THAT(t.what, Not(HasSubstr("check failed")));
}

TEST(UserCheck, MessageIsOnlyTheContext) {
  const int epochs = 0;
  const Thrown t = thrown_by([&] { ENGINE_USER_CHECK(epochs >= 1) << "--epochs must be at least 1, got " << epochs; });
  expect_plain(t, "--epochs must be at least 1, got 0");
  EXPECT_EQ(t.what, "--epochs must be at least 1, got 0");
  EXPECT_THAT(t.what, Not(HasSubstr("epochs >= 1")));
  EXPECT_THAT(t.what, Not(HasSubstr("test_errors")));
}

TEST(UserCheck, FailThrowsUnconditionally) {
  const Thrown t = thrown_by([] { ENGINE_USER_FAIL() << "unknown choice '" << "x" << "' (use a or b)"; });
  EXPECT_TRUE(t.user);
  EXPECT_EQ(t.what, "unknown choice 'x' (use a or b)");
}

TEST(UserCheck, PassingCheckBuildsNoMessage) {
  int evaluated = 0;
  auto count = [&] { return ++evaluated; };
  ENGINE_USER_CHECK(true) << count();
  ENGINE_CHECK(true) << count();
  EXPECT_EQ(evaluated, 0);
}

TEST(UserCheck, IsCaughtAsEngineErrorAndStdException) {
  bool as_error = false, as_std = false;
  try {
    ENGINE_USER_FAIL() << "bad";
  } catch (const engine::Error& e) {
    as_error = std::string(e.what()) == "bad";
  }
  try {
    ENGINE_USER_CHECK(1 + 1 == 3) << "bad";
  } catch (const std::exception& e) {
    as_std = std::string(e.what()) == "bad";
  }
  EXPECT_TRUE(as_error);
  EXPECT_TRUE(as_std);
}

TEST(InternalCheck, CarriesFileLineAndExpression) {
  const int rank = 3;
  const Thrown t = thrown_by([&] { ENGINE_CHECK(rank == 4) << "conv2d_forward: x must be NHWC, got rank " << rank; });
  EXPECT_FALSE(t.user) << "an internal check must not throw UserError";
  EXPECT_THAT(t.what, HasSubstr("test_errors.cpp:"));
  EXPECT_THAT(t.what, HasSubstr("check failed: rank == 4: conv2d_forward: x must be NHWC, got rank 3"));
  const Thrown f = thrown_by([] { ENGINE_FAIL() << "unreachable"; });
  EXPECT_FALSE(f.user);
  EXPECT_THAT(f.what, HasSubstr("test_errors.cpp:"));
  EXPECT_THAT(f.what, HasSubstr(": error: unreachable"));
}

// Real user mistakes, through the code that reports them.

TEST(UserMistakes, UnknownFlagAndBadValueArePlain) {
  int epochs = 1;
  experiment::FlagParser flags("bench_loader", "test");
  flags.add("--epochs", &epochs, "epochs", 1, 1000);
  expect_plain(thrown_by([&] { flags.parse(std::vector<std::string>{"--lr", "0.1"}); }),
               "bench_loader: unknown flag --lr");
  expect_plain(thrown_by([&] { flags.parse(std::vector<std::string>{"--epochs", "abc"}); }),
               "--epochs: 'abc' is not an integer");
  expect_plain(thrown_by([&] { flags.parse(std::vector<std::string>{"--epochs"}); }),
               "bench_loader: --epochs needs a value");
  expect_plain(thrown_by([&] { flags.parse(std::vector<std::string>{"stray"}); }),
               "bench_loader: unexpected argument 'stray'");
}

TEST(UserMistakes, UnknownHeadAndFlavorArePlain) {
  expect_plain(thrown_by([] { nets::parse_head("gapp"); }), "unknown head 'gapp'");
  expect_plain(thrown_by([] { nets::parse_flavor("tf"); }), "unknown batch-norm flavor 'tf'");
}

TEST(UserMistakes, SplitRowLeavingTheRootIsPlain) {
  expect_plain(thrown_by([] { data::check_relative_image_path("../../etc/passwd.png", "list.csv: line 2"); }),
               "list.csv: line 2: image path '../../etc/passwd.png'");
  const std::string list = "path,label,patient,study,body_part\n../../etc/passwd.png,0,p1,s1,XR_HAND\n";
  const Thrown t = thrown_by([&] { data::parse_split_list(list, "train.csv"); });
  expect_plain(t, "train.csv");
  EXPECT_THAT(t.what, HasSubstr("'..'"));
}

TEST(UserMistakes, MalformedSplitRowIsPlain) {
  const std::string list = "path,label,patient,study,body_part\na.png,0,p1\n";
  expect_plain(thrown_by([&] { data::parse_split_list(list, "train.csv"); }), "train.csv: line 2: expected 5 fields");
}

}  // namespace
