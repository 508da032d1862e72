// One command-line style for every app (FlagParser over CLI11, experiment/flags.h): short forms, "did you
// mean", defaults in --help, --check-args; compare takes (and passes on) the training flags its help
// promises; train_irv2 offers only what applies to it; and every `build/<app> ...` usage written in the
// README and docs/*.md parses for its app as written.
// Regressions: `compare --optimizer adam-torch` was refused although compare --help claimed train_densenet's
// flags; train_irv2 --help listed the DenseNet-only --memory-efficient.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "experiment/flags.h"
#include "experiment/run_files.h"
#include "support/error_of.h"
#include "support/run_app.h"
#include "support/temp_path.h"

#if !defined(ENGINE_APPS_DIR) || !defined(ENGINE_SOURCE_DIR)
#error "ENGINE_APPS_DIR (the built apps) and ENGINE_SOURCE_DIR (the docs) are set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using experiment::FlagParser;

using test_support::error_of;

// ---------------------------------------------------------------------------------------------------
// FlagParser

TEST(CliStyle, ShortFormsAreTheLongFlags) {
  int64_t epochs = 10, batch = 32;
  std::string out;
  FlagParser f("app", "test");
  f.add("-e,--epochs", &epochs, "epochs", 1, 1000);
  f.add("-b,--batch-size", &batch, "batch size", 1, 4096);
  f.add("-o,--out", &out, "output", "DIR");
  ASSERT_TRUE(f.parse(std::vector<std::string>{"-e", "3", "-b16", "-o", "runs/x"}));
  EXPECT_EQ(epochs, 3);
  EXPECT_EQ(batch, 16);
  EXPECT_EQ(out, "runs/x");
  EXPECT_TRUE(f.given("--epochs"));  // given() names the long form, whichever the user typed
  EXPECT_TRUE(f.given("--batch-size"));
  // The same strict values and messages (the long name) through the short form.
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"-e", "0x10"}); }),
              HasSubstr("--epochs: '0x10' is not an integer"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"-b", "-5"}); }),
              HasSubstr("--batch-size must be between 1 and 4096, got -5"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"-e"}); }), HasSubstr("app: --epochs needs a value"));
  // A repeated flag: the last value wins.
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--epochs", "4", "-e", "5"}));
  EXPECT_EQ(epochs, 5);
}

TEST(CliStyle, UnknownFlagsSuggestTheNearestName) {
  int64_t epochs = 10, batch = 32;
  FlagParser f("train", "test");
  f.add("-e,--epochs", &epochs, "epochs");
  f.add("--batch-size", &batch, "batch size");
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--epoch", "3"}); }),
              HasSubstr("train: unknown flag --epoch; did you mean --epochs? (see train --help)"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--bach-size=3"}); }),
              HasSubstr("unknown flag --bach-size; did you mean --batch-size?"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--batch", "3"}); }),
              HasSubstr("unknown flag --batch; did you mean --batch-size?"));
  const std::string far = error_of([&] { f.parse(std::vector<std::string>{"--weight-decay", "3"}); });
  EXPECT_THAT(far, HasSubstr("train: unknown flag --weight-decay"));
  EXPECT_THAT(far, Not(HasSubstr("did you mean")));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"-x"}); }), HasSubstr("train: unknown flag -x"));
}

TEST(CliStyle, HelpShowsDefaultsShortFormsAndTheEpilog) {
  int64_t epochs = 10;
  double lr = 1e-5;
  bool augment = false;
  std::string optimizer = "adam-keras", weights;
  std::vector<std::string> parts;
  FlagParser f("train", "Trains a net.");
  f.add("-e,--epochs", &epochs, "training epochs");
  f.add("--lr", &lr, "learning rate");
  f.add("--optimizer", &optimizer, "adam-keras | adam-torch", "O");
  f.add("--weights", &weights, "converted weights", "FILE");
  f.add_switch("--augment", &augment, "flips and rotations");
  f.add_list("--parts", &parts, "body parts", "LIST");
  f.set_epilog("The defaults reproduce the study.");
  const std::string help = f.help();
  EXPECT_THAT(help, HasSubstr("Usage: train"));
  EXPECT_THAT(help, HasSubstr("Trains a net."));
  EXPECT_THAT(help, HasSubstr("-e,--epochs N"));
  EXPECT_THAT(help, HasSubstr("training epochs [default: 10]"));
  EXPECT_THAT(help, HasSubstr("learning rate [default: 1e-05]"));
  EXPECT_THAT(help, HasSubstr("--optimizer O"));
  EXPECT_THAT(help, HasSubstr("[default: adam-keras]"));
  EXPECT_THAT(help, HasSubstr("--weights FILE"));
  EXPECT_THAT(help, HasSubstr("The defaults reproduce the study."));
  EXPECT_THAT(help, Not(HasSubstr("--check-args")));  // hidden
  // --parts repeated or comma-separated: appended.
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--parts", "hand,wrist", "--parts=elbow"}));
  EXPECT_EQ(parts, (std::vector<std::string>{"hand", "wrist", "elbow"}));
  // A switch takes no value, or an explicit true/false.
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--augment"}));
  EXPECT_TRUE(augment);
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--augment=false"}));
  EXPECT_FALSE(augment);
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--augment=maybe"}); }),
              HasSubstr("--augment expects true or false, got 'maybe'"));
}

TEST(CliStyle, CheckArgsParsesChecksAndRunsNothing) {
  int64_t epochs = 10;
  FlagParser f("train", "test");
  f.add("--epochs", &epochs, "epochs", 1, 1000);
  EXPECT_FALSE(f.parse(std::vector<std::string>{"--epochs", "3", "--check-args"}));  // nothing to run
  EXPECT_EQ(epochs, 3);
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--epochs", "0", "--check-args"}); }),
              HasSubstr("--epochs must be between 1 and 1000, got 0"));
  EXPECT_TRUE(f.parse(std::vector<std::string>{"--epochs", "4"}));  // and the next parse runs again
}

TEST(CliStyle, LeftOutFlagsAreNeitherOfferedNorTaken) {
  int64_t epochs = 10, images = 0;
  FlagParser f("compare", "test");
  f.leave_out({"--images", "RUN_DIR"}, "set for each run");
  f.add("--epochs", &epochs, "epochs");
  f.add("--images", &images, "images");
  f.allow_positional("RUN_DIR", "a run");
  EXPECT_THAT(f.help(), Not(HasSubstr("--images")));
  EXPECT_THAT(f.help(), Not(HasSubstr("RUN_DIR")));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"--images", "3"}); }),
              HasSubstr("compare: --images is not taken here: set for each run (see compare --help)"));
  EXPECT_THAT(error_of([&] { f.parse(std::vector<std::string>{"runs/x"}); }), HasSubstr("unexpected argument 'runs/x'"));
  EXPECT_FALSE(f.given("--images"));
}

// `--` ends the flags: what follows is positional, even when it starts with '-'.
TEST(CliStyle, DoubleDashEndsTheFlags) {
  std::string checkpoint;
  FlagParser f("predict", "test");
  f.add("--checkpoint", &checkpoint, "a checkpoint", "FILE");
  f.allow_positional("IMAGE", "images");
  ASSERT_TRUE(f.parse(std::vector<std::string>{"--checkpoint", "c", "a.png", "--", "-b.png", "--checkpoint"}));
  EXPECT_EQ(checkpoint, "c");
  EXPECT_EQ(f.positional(), (std::vector<std::string>{"a.png", "-b.png", "--checkpoint"}));
}

// ---------------------------------------------------------------------------------------------------
// The built apps

using Command = test_support::AppRun;

std::string temp_path(const std::string& name) { return test_support::fresh_temp_path("apps_cli_usage", name); }

using test_support::shell_quoted;

Command run_app(const std::string& app, const std::vector<std::string>& args) {
  static int counter = 0;
  return test_support::run_program(std::string(ENGINE_APPS_DIR) + "/" + app, shell_quoted(args),
                                   temp_path("cmd" + std::to_string(counter++)));
}

TEST(AppsCliUsage, UserMistakesAreOneLineWithAHintAndStatus2) {
  for (const char* app : {"train_densenet", "train_irv2", "compare", "evaluate", "predict", "cam", "forward", "summary",
                          "bench", "bench_loader", "bench_nets_cpu", "demo_tiny_cnn", "mura_synth", "mura_verify"}) {
    const Command c = run_app(app, {"--epoch", "3"});
    EXPECT_EQ(c.status, 2) << app << c.out << c.err;
    EXPECT_THAT(c.err, ::testing::StartsWith(std::string("error: ") + app + ": unknown flag --epoch")) << app;
    EXPECT_THAT(c.err, HasSubstr("--help)")) << app;
    EXPECT_EQ(std::count(c.err.begin(), c.err.end(), '\n'), 1) << app << ": " << c.err;
    EXPECT_THAT(c.err, Not(HasSubstr(".cpp:"))) << app;
    EXPECT_THAT(c.err, Not(HasSubstr("check failed"))) << app;
    const Command help = run_app(app, {"--help"});
    EXPECT_EQ(help.status, 0) << app;
    EXPECT_THAT(help.out, HasSubstr(std::string("Usage: ") + app)) << app;
  }
  EXPECT_THAT(run_app("train_densenet", {"--epoch", "3"}).err, HasSubstr("did you mean --epochs?"));
  const Command bad = run_app("train_densenet", {"-e", "1e9"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_THAT(bad.err, ::testing::StartsWith("error: --epochs: '1e9' is not an integer"));
}

// The kernel benchmarks (kernels/bench/, below experiment/) read their flags with CLI11 the same way.
TEST(AppsCliUsage, KernelBenchmarksShareTheStyle) {
  const Command bad = run_app("bench_cpu_kernels", {"--batch", "-5"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_THAT(bad.err, ::testing::StartsWith("error: --batch: '-5' is not a positive whole number"));
  EXPECT_THAT(run_app("bench_cpu_kernels", {"-b", "0x10"}).err, HasSubstr("--batch: '0x10' is not a positive whole number"));
  const Command unknown = run_app("bench_gpu_kernels", {"--bogus"});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_THAT(unknown.err, ::testing::StartsWith("error: bench_gpu_kernels: "));
  const Command help = run_app("bench_cpu_kernels", {"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_THAT(help.out, HasSubstr("-b,--batch N"));
  EXPECT_THAT(help.out, HasSubstr("[default: 8]"));
  EXPECT_EQ(run_app("bench_cpu_kernels", {"-j", "2", "--reps", "3", "--check-args"}).status, 0);
  EXPECT_EQ(run_app("bench_gpu_kernels", {"--runs", "3", "--no-tf32", "--check-args"}).status, 0);
}

// compare's help lists train_densenet's flags less the per-run ones, and it takes every one it lists.
TEST(AppsCliUsage, CompareTakesTheTrainingFlagsItsHelpLists) {
  const std::string help = run_app("compare", {"--help"}).out;
  for (const char* flag : {"--optimizer", "--augment", "--class-weights", "--preprocess", "--early-stopping", "--rotation",
                           "--parts", "--test-checkpoint", "--checkpoint-hist", "--max-bad-fraction", "--deterministic",
                           "--memory-efficient", "-e,--epochs", "-b,--batch-size", "-j,--workers", "-o,--out"})
    EXPECT_THAT(help, HasSubstr(std::string("  ") + flag)) << flag;
  for (const char* flag : {"  --arch ", "  --protocol ", "  --images ", "  --weights ", "  --resume", "RUN_DIR"})
    EXPECT_THAT(help, Not(HasSubstr(flag))) << flag;
  const Command c = run_app("compare", {"--optimizer", "adam-torch", "--augment", "--class-weights", "--preprocess",
                                        "torch", "--early-stopping", "2", "--check-args"});
  EXPECT_EQ(c.status, 0) << c.out << c.err;
  const Command images = run_app("compare", {"--images", "100"});
  EXPECT_EQ(images.status, 2);
  EXPECT_THAT(images.err, HasSubstr("error: compare: --images is not taken here: the comparison sets it for each run "
                                    "(from --archs, --protocols, --sizes"));
}

// ... and gives them to each run: a tiny comparison (one DenseNet-tiny run on a 4-patient synthetic set,
// 32x32, one epoch: about a second) whose run records them in its args.json.
TEST(AppsCliUsage, CompareGivesTheTrainingFlagsToEachRun) {
  const std::string dir = temp_path("compare");
  const Command c = run_app("compare", {"--archs", "densenet_tiny", "--sizes", "0", "--synthetic-patients", "4",
                                        "--synthetic-dir", dir + "/synthetic", "--input-size", "32", "-e", "1", "-b",
                                        "4", "--optimizer", "adam-torch", "--augment", "--rotation", "12",
                                        "--class-weights", "--preprocess", "torch", "--early-stopping", "2", "--head",
                                        "gap", "--test-checkpoint", "best", "--no-cam", "--quiet", "--device", "cpu",
                                        "-j", "1", "-o", dir + "/out"});
  ASSERT_EQ(c.status, 0) << c.out << c.err;
  const experiment::TrainOptions o = experiment::read_train_options(dir + "/out/runs/seed/densenet_tiny-nall/args.json");
  EXPECT_EQ(o.arch, "densenet_tiny");
  EXPECT_EQ(o.optimizer, "adam-torch");
  EXPECT_TRUE(o.augment);
  EXPECT_EQ(o.rotation, 12);
  EXPECT_TRUE(o.class_weights);
  EXPECT_EQ(o.preprocess, "torch");
  EXPECT_EQ(o.early_stopping, 2);
  EXPECT_EQ(o.head, "gap");
  EXPECT_EQ(o.test_checkpoint, "best");
  EXPECT_EQ(o.epochs, 1);
  EXPECT_EQ(o.batch_size, 4);
  EXPECT_EQ(o.input_size, 32);
  EXPECT_EQ(o.workers, 1);
  EXPECT_EQ(o.checkpoint_hist, 0);  // compare's default: last and best only
  fs::remove_all(dir);
}

// compare --recipe mura-paper: every run gets the recipe's settings (as train_densenet would) except the net,
// which is the run's own; a flag given beside the recipe wins; --quick with --recipe is refused.
TEST(AppsCliUsage, CompareAppliesARecipeToEachRunButKeepsTheRunsNet) {
  const std::string dir = temp_path("compare_recipe");
  const Command c = run_app("compare", {"--archs", "densenet_tiny", "--sizes", "0", "--synthetic-patients", "4",
                                        "--synthetic-dir", dir + "/synthetic", "--recipe", "mura-paper",
                                        "--input-size", "32", "-e", "1", "--no-cam", "--quiet", "--device", "cpu",
                                        "-j", "1", "-o", dir + "/out"});
  ASSERT_EQ(c.status, 0) << c.out << c.err;
  const experiment::TrainOptions o = experiment::read_train_options(dir + "/out/runs/seed/densenet_tiny-nall/args.json");
  EXPECT_EQ(o.recipe, "mura-paper");
  EXPECT_EQ(o.arch, "densenet_tiny");  // the run's net, not the recipe's DenseNet-169
  EXPECT_EQ(o.input_size, 32);         // given beside the recipe
  EXPECT_EQ(o.batch_size, 8);          // the recipe's
  EXPECT_EQ(o.lr, 1e-4);
  EXPECT_EQ(o.sched, "plateau");
  EXPECT_TRUE(o.class_weights);
  const Command both = run_app("compare", {"--quick", "--recipe", "mura-paper", "-o", dir + "/refused"});
  EXPECT_EQ(both.status, 2);
  EXPECT_THAT(both.err, HasSubstr("--quick and --recipe both set the runs' settings"));
  EXPECT_FALSE(fs::exists(dir + "/refused"));
  fs::remove_all(dir);
}

TEST(AppsCliUsage, TrainIrv2OffersOnlyWhatAppliesToIt) {
  const std::string irv2 = run_app("train_irv2", {"--help"}).out;
  EXPECT_THAT(irv2, Not(HasSubstr("  --memory-efficient")));  // DenseNet only (the epilog may name it)
  EXPECT_THAT(irv2, Not(HasSubstr("--arch")));
  EXPECT_THAT(irv2, Not(HasSubstr("densenet")));
  const Command irv2_me = run_app("train_irv2", {"--memory-efficient", "--check-args"});
  EXPECT_EQ(irv2_me.status, 2);
  EXPECT_THAT(irv2_me.err, HasSubstr("train_irv2: --memory-efficient is not taken here: it applies to DenseNet only"));
  const std::string densenet = run_app("train_densenet", {"--help"}).out;
  EXPECT_THAT(densenet, HasSubstr("  --memory-efficient"));
  EXPECT_THAT(densenet, HasSubstr("--arch A"));
  EXPECT_EQ(run_app("train_densenet", {"--memory-efficient", "-e", "2", "--check-args"}).status, 0);
}

// ---------------------------------------------------------------------------------------------------
// The documented usages

struct Usage {
  std::string where, app;
  std::vector<std::string> args;
};

// A usage's words: whitespace-separated, single or double quotes kept together; a synopsis's optional
// parts are taken as given (`[--list test]` -> `--list test`), its alternatives as the first
// (`--subset valid|train|all` -> `valid`), and `[flags]` stands for none.
std::vector<std::string> usage_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (char c : text) {
    if (quote) {
      if (c == quote) quote = 0;
      else word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(word);
  std::vector<std::string> result;
  for (std::string w : words) {
    if (w == "[flags]" || w == "[options]") continue;
    w.erase(std::remove(w.begin(), w.end(), '['), w.end());
    w.erase(std::remove(w.begin(), w.end(), ']'), w.end());
    if (w.rfind("-", 0) != 0 && w.find('|') != std::string::npos) w = w.substr(0, w.find('|'));
    if (w.rfind("--", 0) == 0 && w.find('|') != std::string::npos) w = w.substr(0, w.find('|'));
    if (!w.empty()) result.push_back(w);
  }
  return result;
}

// Every `build/<app> ...` line in the fenced code blocks of `file` (continuation lines joined, the comment
// after `#`, and anything after a pipe, `;`, `&&` or a redirection dropped).
std::vector<Usage> documented_usages(const std::string& file) {
  std::vector<Usage> usages;
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  const std::regex command(R"((^|[\s=])(\./)?build/([a-z_0-9]+)(\s|$))");
  bool in_block = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string first = lines[i];
    if (first.find_first_not_of(" \t") != std::string::npos && first.substr(first.find_first_not_of(" \t"), 3) == "```") {
      in_block = !in_block;
      continue;
    }
    std::smatch m;
    if (!in_block || !std::regex_search(first, m, command)) continue;
    const size_t line_number = i + 1;
    std::string text = first.substr(static_cast<size_t>(m.position(0)) + m[1].length());
    while (!text.empty() && text.find_last_not_of(" \t") != std::string::npos &&
           text[text.find_last_not_of(" \t")] == '\\' && i + 1 < lines.size()) {
      text = text.substr(0, text.find_last_not_of(" \t")) + " " + lines[++i];
    }
    const size_t comment = text.find(" #");
    if (comment != std::string::npos) text = text.substr(0, comment);
    for (const char* end : {" | ", " && ", ";", " >", " 2>", " <"}) {
      const size_t at = text.find(end);
      if (at != std::string::npos) text = text.substr(0, at);
    }
    std::vector<std::string> words = usage_words(text);
    Usage u;
    u.where = file.substr(std::string(ENGINE_SOURCE_DIR).size() + 1) + ":" + std::to_string(line_number);
    u.app = words.front().substr(words.front().rfind('/') + 1);
    u.args.assign(words.begin() + 1, words.end());
    usages.push_back(u);
  }
  return usages;
}

TEST(DocumentedUsages, ExtractionReadsSynopsesAsExamples) {
  EXPECT_EQ(usage_words("--checkpoint C --split RUN/split [--list test] --out DIR"),
            (std::vector<std::string>{"--checkpoint", "C", "--split", "RUN/split", "--list", "test", "--out", "DIR"}));
  EXPECT_EQ(usage_words("[--arch densenet201|densenet169] [flags] [--mode eval|train] [--skip-head]"),
            (std::vector<std::string>{"--arch", "densenet201", "--mode", "eval", "--skip-head"}));
  EXPECT_EQ(usage_words("--out 'a b' \"c\""), (std::vector<std::string>{"--out", "a b", "c"}));
}

// "The README's usages work as written": each parses for its app (--check-args: nothing runs).
TEST(DocumentedUsages, EveryBuildCommandInTheDocsParses) {
  std::vector<std::string> files = {std::string(ENGINE_SOURCE_DIR) + "/README.md"};
  for (const auto& entry : fs::directory_iterator(std::string(ENGINE_SOURCE_DIR) + "/docs"))
    if (entry.path().extension() == ".md") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  size_t checked = 0;
  bool readme_and_apps = false;
  for (const std::string& file : files) {
    for (const Usage& u : documented_usages(file)) {
      if (!fs::exists(std::string(ENGINE_APPS_DIR) + "/" + u.app)) {
        ADD_FAILURE() << u.where << ": build/" << u.app << " is not one of the built apps";
        continue;
      }
      std::vector<std::string> args = u.args;
      args.push_back("--check-args");
      const Command c = run_app(u.app, args);
      EXPECT_EQ(c.status, 0) << u.where << ": build/" << u.app << shell_quoted(u.args) << "\n" << c.err;
      readme_and_apps = readme_and_apps || u.where.rfind("docs/apps.md", 0) == 0;
      ++checked;
    }
  }
  EXPECT_GE(checked, 10u) << "the docs' usages were not found";
  EXPECT_TRUE(readme_and_apps) << "no usage found in docs/apps.md";
}

}  // namespace
