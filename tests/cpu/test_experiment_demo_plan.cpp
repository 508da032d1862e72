// The demo at the machine's size (scripts/demo.sh) and the report's statement of what its numbers show.
//
// The GPU branch cannot run here, so its plan is tested dry: `demo.sh --print-plan --mode gpu|cpu` prints
// the shell lines it would run; every program they call is a built executable and every flag they pass is
// one its --help lists; the GPU plan is the study's protocol (100 / 3,000 / 10,000 images, 10 epochs,
// 224 px, the CUDA device) on a synthetic MURA of MURA's patient counts, the CPU plan the quick comparison.
// scripts/gpu_check.sh must not depend on the demo. comparison_scope: the CPU demo's report says the
// numbers show the pipeline and timings but not the study's accuracies (synthetic, random init, cut down);
// the GPU demo's says the same without "cut down"; MURA with weights at the protocol is comparable.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "data/io_util.h"
#include "experiment/compare.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;

// The build folder (tests run in <build>/tests) and the repository (this file is <repo>/tests/cpu/...;
// __FILE__ is relative to the build folder, where the compiler ran, when the build is inside the tree).
fs::path build_dir() { return fs::absolute(fs::current_path().parent_path()); }
fs::path repo_dir() {
  fs::path file(__FILE__);
  if (file.is_relative()) file = build_dir() / file;
  return fs::weakly_canonical(file).parent_path().parent_path().parent_path();
}

struct Output {
  int status = -1;
  std::string text;
};

Output run(const std::string& command) {
  Output out;
  std::FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.text.append(buffer, n);
  const int status = ::pclose(pipe);
  out.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// One program call of a plan line: the executable and its arguments (up to &&, ;, } or ||).
struct Call {
  std::string program;
  std::vector<std::string> args;
  std::string value(const std::string& flag) const {
    for (size_t i = 0; i + 1 < args.size(); ++i)
      if (args[i] == flag) return args[i + 1];
    return "<absent>";
  }
  bool has(const std::string& flag) const {
    for (const std::string& a : args)
      if (a == flag) return true;
    return false;
  }
};

struct Plan {
  std::string header;
  std::vector<std::string> lines;
  std::vector<Call> calls;  // the calls of programs in the build folder, in order
};

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

class DemoPlan : public test_support::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (!fs::exists(build_dir() / "compare") || !fs::exists(build_dir() / "mura_synth"))
      GTEST_SKIP() << "compare and mura_synth are not built in " << build_dir();
  }

  // demo.sh --print-plan with the cache under dir_ (paths without spaces, so words split on blanks).
  Plan plan(const std::string& arguments) {
    const Output out = run("cd '" + repo_dir().string() + "' && BUILD_DIR='" + build_dir().string() + "' HOME='" + dir_ +
                           "' XDG_CACHE_HOME='" + dir_ + "/cache' bash scripts/demo.sh --print-plan " + arguments);
    EXPECT_EQ(out.status, 0) << out.text;
    Plan p;
    std::istringstream in(out.text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("#", 0) == 0) {
        if (p.header.empty()) p.header = line;
        continue;
      }
      if (line.empty()) continue;
      p.lines.push_back(line);
      const std::vector<std::string> w = words(line);
      const std::string prefix = build_dir().string() + "/";
      for (size_t i = 0; i < w.size(); ++i) {
        if (w[i].rfind(prefix, 0) != 0) continue;
        Call c{w[i], {}};
        for (++i; i < w.size() && w[i] != "&&" && w[i] != ";" && w[i] != "}" && w[i] != "||"; ++i)
          c.args.push_back(w[i]);
        p.calls.push_back(c);
      }
    }
    return p;
  }

  // Every call: a built executable, every --flag of it one that its --help lists.
  void expect_well_formed(const Plan& p) {
    ASSERT_FALSE(p.calls.empty());
    for (const Call& c : p.calls) {
      ASSERT_TRUE(fs::is_regular_file(c.program)) << c.program;
      const Output help = run("'" + c.program + "' --help");
      EXPECT_EQ(help.status, 0) << help.text;
      for (const std::string& a : c.args) {
        if (a.rfind("--", 0) != 0) continue;
        const std::string flag = a.substr(0, a.find('='));
        EXPECT_NE(help.text.find(flag), std::string::npos) << c.program << " --help does not list " << flag;
      }
    }
  }
};

TEST_F(DemoPlan, TheGpuPlanIsTheStudysProtocolOnAMuraSizedSyntheticSet) {
  const Plan p = plan("--mode gpu");
  EXPECT_EQ(p.header, "# scripts/demo.sh plan: gpu");
  expect_well_formed(p);
  ASSERT_EQ(p.calls.size(), 2u);
  const Call& synth = p.calls[0];
  const Call& compare = p.calls[1];
  EXPECT_EQ(fs::path(synth.program).filename(), "mura_synth");
  EXPECT_EQ(synth.value("--train-patients"), "11184");  // MURA-v1.1's patients
  EXPECT_EQ(synth.value("--valid-patients"), "783");
  const std::string cache = synth.value("--out");
  EXPECT_EQ(cache.rfind(dir_ + "/cache/mura-engine/", 0), 0u) << cache;
  // Written once: the line runs mura_synth only while the marker is absent and makes it on success.
  EXPECT_EQ(p.lines[0].rfind("[ -f " + cache + "/COMPLETE ] || {", 0), 0u) << p.lines[0];
  EXPECT_NE(p.lines[0].find("&& touch " + cache + "/COMPLETE; }"), std::string::npos) << p.lines[0];

  EXPECT_EQ(fs::path(compare.program).filename(), "compare");
  EXPECT_EQ(compare.value("--data"), cache + "/MURA-v1.1");
  EXPECT_EQ(compare.value("--sizes"), "100,3000,10000");
  EXPECT_EQ(compare.value("--epochs"), "10");
  EXPECT_EQ(compare.value("--input-size"), "224");
  EXPECT_EQ(compare.value("--device"), "cuda");
  EXPECT_EQ(compare.value("--out"), "runs/demo-study-gpu");
  EXPECT_FALSE(compare.has("--quick"));
}

TEST_F(DemoPlan, TheCpuPlanIsTheQuickComparison) {
  const Plan p = plan("--mode cpu");
  EXPECT_EQ(p.header, "# scripts/demo.sh plan: cpu");
  expect_well_formed(p);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(fs::path(p.calls[0].program).filename(), "compare");
  EXPECT_TRUE(p.calls[0].has("--quick"));
  EXPECT_EQ(p.calls[0].value("--out"), "runs/demo-comparison");
  EXPECT_FALSE(p.calls[0].has("--device"));  // the CPU plan runs wherever it is
}

TEST_F(DemoPlan, CompareFlagsPassThroughAndOutIsNotDoubled) {
  for (const std::string mode : {"gpu", "cpu"}) {
    const Plan p = plan("--mode " + mode + " --out " + dir_ + "/mine --no-cam");
    expect_well_formed(p);
    ASSERT_FALSE(p.calls.empty()) << mode;
    const Call& compare = p.calls.back();
    EXPECT_EQ(compare.value("--out"), dir_ + "/mine") << mode;
    EXPECT_TRUE(compare.has("--no-cam")) << mode;
    size_t outs = 0;
    for (const std::string& a : compare.args) outs += a == "--out";
    EXPECT_EQ(outs, 1u) << mode;
  }
}

TEST_F(DemoPlan, AutoPicksTheCpuWithoutAGpuAndBadModesAreRefused) {
  if (run("nvidia-smi -L").status != 0) {
    EXPECT_EQ(plan("").header, "# scripts/demo.sh plan: cpu");
  }
  const Output bad = run("bash '" + (repo_dir() / "scripts/demo.sh").string() + "' --print-plan --mode tpu");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.text.find("--mode must be auto, gpu or cpu"), std::string::npos) << bad.text;
}

TEST(DemoScripts, GpuCheckDoesNotDependOnTheDemo) {
  const std::string gpu_check = data::read_file_text((repo_dir() / "scripts/gpu_check.sh").string());
  EXPECT_EQ(gpu_check.find("demo"), std::string::npos);
}

// --- the report's scope ---------------------------------------------------------------------------

class ComparisonScope : public test_support::TempDirTest {
 protected:
  // A comparison whose one run recorded `device` in its args.json.
  experiment::Comparison comparison(const std::string& device) {
    experiment::Comparison cmp;
    cmp.options.out = dir_ + "/cmp";
    experiment::CompareCell cell;
    cell.arch = "densenet201";
    cell.protocol = "seed";
    cell.run_dir = "runs/seed/densenet201-n100";
    fs::create_directories(cmp.options.out + "/" + cell.run_dir);
    std::ofstream(cmp.options.out + "/" + cell.run_dir + "/args.json")
        << "{\n  \"arch\": \"densenet201\",\n  \"device_used\": \"" << device << "\"\n}\n";
    cmp.cells.push_back(cell);
    return cmp;
  }
  static bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
};

TEST_F(ComparisonScope, TheCpuDemoShowsThePipelineAndTimingsNotTheStudysAccuracy) {
  experiment::Comparison cmp = comparison("cpu");
  cmp.options.sizes = {100, 0};
  cmp.options.base.epochs = 3;
  cmp.options.base.input_size = 96;  // the --quick settings, no --data, no weights
  const std::string s = experiment::comparison_scope(cmp);
  EXPECT_TRUE(has(s, "Can show: that the whole pipeline works end to end")) << s;
  EXPECT_TRUE(has(s, "times of this cut-down workload on this machine's CPU")) << s;
  EXPECT_TRUE(has(s, "Cannot show: accuracy, kappa or AUROC comparable to the study's")) << s;
  EXPECT_TRUE(has(s, "the images are synthetic")) << s;
  EXPECT_TRUE(has(s, "random initialisation")) << s;
  EXPECT_TRUE(has(s, "3 epochs at 96x96 on 100 images and the whole set")) << s;
  EXPECT_TRUE(has(s, "Nor GPU timings")) << s;
  experiment::CompareCell whole = cmp.cells[0];  // once the whole set has run, its size is said
  whole.images = 0;
  whole.result.train_images = 176;
  whole.result.validation_images = 22;
  whole.result.test_images = 22;
  cmp.cells.push_back(whole);
  EXPECT_TRUE(has(experiment::comparison_scope(cmp), "on 100 images and the whole set (220 images)"));
  const std::string md = experiment::comparison_markdown(cmp);
  EXPECT_TRUE(has(md, "\n## What these numbers can show\n\nCan show:")) << md;
  const std::string html = experiment::comparison_html(cmp);
  EXPECT_TRUE(has(html, "<h2 id=\"scope\">What these numbers can show</h2>\n<p>Can show:")) << html;
  EXPECT_TRUE(has(html, "<p>Cannot show:")) << html;
}

TEST_F(ComparisonScope, TheGpuDemoIsTheStudysWorkloadOnSyntheticImages) {
  experiment::Comparison cmp = comparison("cuda:0");
  const std::string synthetic = dir_ + "/synth/MURA-v1.1";  // what mura_synth writes: defect_boxes.csv
  fs::create_directories(synthetic);
  std::ofstream(synthetic + "/defect_boxes.csv") << "path,x0,y0,x1,y1\n";
  cmp.options.base.data = synthetic;
  cmp.options.sizes = {100, 3000, 10000};
  const std::string s = experiment::comparison_scope(cmp);
  EXPECT_TRUE(has(s, "times of the study's workload on this machine's GPU (cuda:0)")) << s;
  EXPECT_TRUE(has(s, "Cannot show:")) << s;
  EXPECT_TRUE(has(s, "the images are synthetic")) << s;
  EXPECT_FALSE(has(s, "cut down")) << s;
  EXPECT_FALSE(has(s, "Nor GPU timings")) << s;
}

TEST_F(ComparisonScope, MuraWithWeightsAtTheProtocolIsComparable) {
  experiment::Comparison cmp = comparison("cuda:0");
  fs::create_directories(dir_ + "/MURA-v1.1");
  cmp.options.base.data = dir_ + "/MURA-v1.1";
  cmp.options.weights = {{"densenet201", "d.safetensors"}, {"inception_resnet_v2", "i.safetensors"}};
  const std::string s = experiment::comparison_scope(cmp);
  EXPECT_TRUE(has(s, "Comparable with the study")) << s;
  EXPECT_FALSE(has(s, "Cannot show")) << s;
  cmp.options.weights["inception_resnet_v2"] = "";  // one net from scratch: not comparable any more
  EXPECT_TRUE(has(experiment::comparison_scope(cmp), "random initialisation"));
}

}  // namespace
