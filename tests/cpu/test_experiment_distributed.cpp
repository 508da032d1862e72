// Data-parallel training as a user launches it: the built train_densenet under `mpirun -np 2` (the command
// and its flags are tests/CMakeLists.txt's ENGINE_MPIRUN, one place), against the same command as one
// process, on the tiny DenseNet at 32 px with 16 training images, so that an epoch is one step of the
// global batch 16 (and (a) again on DenseNet-121 at 64 px):
//   (a) --sync-bn: two processes reproduce one process: each step's loss, the validation loss (sharded and
//       gathered) and every weight after 3 steps within 1e-5 relative, also with --memory-efficient (on
//       DenseNet-121 step by step from a common state: its 3-step trajectories drift apart by chaos); with
//       bf16 activations, the losses within bf16 rounding (1e-2) and the two processes' models equal bit
//       for bit;
//   (b) without --sync-bn the two processes hold the same model bit for bit (the trainer hashes every state
//       tensor on each process after each epoch and stops on a difference; the log says they agree);
//   (c) a run started on 1 process and resumed on 2, and the reverse, equals the uninterrupted run;
//   (d) a process killed mid-run ends the job within seconds, with a message, and checkpoints/last intact;
//   (e) the gradient sums in buckets started during backward (--bucket-mb) equal one sum after backward
//       (--bucket-mb 0) bit for bit, also on the memory-efficient path (parameters read in recomputed regions).
// Registered only where CMake found MPI.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>

#include "data/csv.h"
#include "data/io_util.h"
#include "data/loader.h"
#include "data/mura_index.h"
#include "data/splits.h"
#include "data/synth_mura.h"
#include "engine/runtime.h"
#include "engine/serialize.h"
#include "experiment/curves.h"
#include "experiment/metrics.h"
#include "experiment/run_files.h"
#include "support/temp_path.h"

#if !defined(ENGINE_APPS_DIR) || !defined(ENGINE_MPIRUN)
#error "ENGINE_APPS_DIR and ENGINE_MPIRUN are set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using namespace experiment;

std::string temp_path(const std::string& name) { return test_support::fresh_temp_path("experiment_distributed", name); }

struct Command {
  int status = -1;
  std::string err;
  double seconds = 0;
};

// train_densenet on `processes` processes (1: the plain command, no launcher) with the tiny run's flags.
Command train(int processes, const std::string& args, const std::string& env = "") {
  static int counter = 0;
  const std::string log = temp_path("cmd" + std::to_string(counter++) + ".err");
  const std::string app = std::string(ENGINE_APPS_DIR) + "/train_densenet";
  const std::string launcher =
      processes == 1 ? "" : std::string(ENGINE_MPIRUN) + " -np " + std::to_string(processes) + " ";
  const std::string command = env + " " + launcher + app +
                              (args.find("--images ") == std::string::npos ? " --images 20" : "") + " --synthetic-patients 12 " +
                              (args.find("--arch ") == std::string::npos ? "--arch densenet_tiny --input-size 32 " : "") +
                              (args.find("-b ") == std::string::npos ? "-b 16 " : "") + "--quiet -j 1 --synthetic-dir " + temp_path("synthetic") + " " + args + " >/dev/null 2>" + log;
  const auto t0 = std::chrono::steady_clock::now();
  const int raw = std::system(command.c_str());
  Command c;
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  c.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  c.err = data::read_file_text(log);
  return c;
}

// Each epoch's train loss (one step each) and validation loss (sharded, gathered) from summary.csv.
std::vector<double> losses(const std::string& run) {
  std::vector<double> losses;
  for (const EpochRow& r : parse_summary_csv(data::read_file_text(run + "/summary.csv"), run)) {
    losses.push_back(r.train_loss);
    losses.push_back(r.val_loss);
  }
  return losses;
}

// Every model tensor of two checkpoints within `relative` of each other (per tensor: the largest difference
// against the largest magnitude, at least 1e-3), and the epoch counts equal. The floor is for tensors still
// within a few steps of their zero start (a batch norm's bias after 3 steps of lr 1e-5: about 3e-5 at most):
// their values come from Adam's update on gradients that nearly cancel, whose last bits follow the sums'
// order, and the floor still holds them to 1e-8 at 1e-5, a thousandth of one step's movement (measured on the
// tiny DenseNet over 3 steps, seeds 1, 7 and 11, OpenBLAS's kernels and the own AVX-512 ones of
// kernels/cpu/gemm_avx512.cpp: such a bias 4.6e-6 to 3.1e-5 of its own largest value apart; every other tensor
// well inside 1e-5).
void expect_same_model(const std::string& a_run, const std::string& b_run, double relative) {
  const CheckpointInfo a = read_checkpoint(a_run + "/checkpoints/last.safetensors");
  const CheckpointInfo b = read_checkpoint(b_run + "/checkpoints/last.safetensors");
  EXPECT_EQ(a.metadata.at("epoch"), b.metadata.at("epoch"));
  EXPECT_EQ(a.metadata.at("step"), b.metadata.at("step"));
  ASSERT_EQ(a.model.size(), b.model.size());
  for (const auto& [name, ta] : a.model) {
    ASSERT_TRUE(b.model.count(name)) << name;
    const std::vector<float> x = ta.to_vector(), y = b.model.at(name).to_vector();
    ASSERT_EQ(x.size(), y.size()) << name;
    double diff = 0, scale = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::fabs(x[i] - y[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(x[i])));
    }
    EXPECT_LE(diff, relative * std::max(scale, 1e-3)) << name << " (largest magnitude " << scale << ")";
  }
}

// For a deep net under Adam: Adam's update is about lr * sign(gradient) wherever a gradient is far above
// its epsilon, so an element whose gradient is near zero (a sum that cancels) can move by up to lr the other
// way when the sums are taken in another order, and after a few steps, where the first moment cancels
// (gradients of opposite signs), the update's relative error grows likewise. So: all but `share` of the
// weights within `relative` of the other run's (against max(|w|, 1e-3)), and every weight within 2 lr per
// step of it. (On DenseNet-121 at 64 px, one step from a common state: 2-11 of 7.0 M weights outside 1e-5
// after the first, none by more than 4e-7; none after the second or the third.)
void expect_nearly_same_model(const std::string& a_run, const std::string& b_run, double relative, double share,
                              double lr_steps) {
  const CheckpointInfo a = read_checkpoint(a_run + "/checkpoints/last.safetensors");
  const CheckpointInfo b = read_checkpoint(b_run + "/checkpoints/last.safetensors");
  EXPECT_EQ(a.metadata.at("step"), b.metadata.at("step"));
  int64_t total = 0, outside = 0;
  double worst = 0;
  for (const auto& [name, ta] : a.model) {
    ASSERT_TRUE(b.model.count(name)) << name;
    const std::vector<float> x = ta.to_vector(), y = b.model.at(name).to_vector();
    ASSERT_EQ(x.size(), y.size()) << name;
    for (size_t i = 0; i < x.size(); ++i) {
      const double diff = std::fabs(static_cast<double>(x[i]) - y[i]);
      worst = std::max(worst, diff);
      outside += diff > relative * std::max(1e-3, static_cast<double>(std::fabs(x[i])));
      ++total;
    }
  }
  EXPECT_LE(static_cast<double>(outside), share * static_cast<double>(total)) << outside << " of " << total << " weights";
  EXPECT_LE(worst, 2 * lr_steps) << "the largest difference of a weight";
}

// Two predictions files have the same rows (the same images in the same order, the same labels) and every
// numeric field within 1e-5 (the scores and probabilities, whose last printed digits follow the sums' order).
void expect_same_predictions(const std::string& a_csv, const std::string& b_csv) {
  const std::vector<data::CsvRow> a = data::parse_csv(data::read_file_text(a_csv), a_csv);
  const std::vector<data::CsvRow> b = data::parse_csv(data::read_file_text(b_csv), b_csv);
  ASSERT_EQ(a.size(), b.size());
  for (size_t r = 0; r < a.size(); ++r) {
    ASSERT_EQ(a[r].fields.size(), b[r].fields.size()) << "line " << a[r].line;
    for (size_t f = 0; f < a[r].fields.size(); ++f) {
      const std::string &x = a[r].fields[f], &y = b[r].fields[f];
      char* end_x = nullptr;
      char* end_y = nullptr;
      const double vx = std::strtod(x.c_str(), &end_x), vy = std::strtod(y.c_str(), &end_y);
      if (!x.empty() && *end_x == '\0' && !y.empty() && *end_y == '\0')
        EXPECT_NEAR(vx, vy, 1e-5) << "field " << f + 1 << " of line " << a[r].line;
      else
        EXPECT_EQ(x, y) << "field " << f + 1 << " of line " << a[r].line;
    }
  }
}

void expect_losses_near(const std::vector<double>& a, const std::vector<double>& b, double relative) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], relative * std::fabs(a[i])) << (i % 2 ? "validation loss" : "train loss") << " of epoch " << i / 2 + 1;
}

// The uninterrupted single-process run of 3 steps, made once.
const std::string& single_process_run() {
  static const std::string out = [] {
    const std::string run = temp_path("one");
    const Command c = train(1, "-e 3 -o " + run);
    EXPECT_EQ(c.status, 0) << c.err;
    return run;
  }();
  return out;
}

TEST(Distributed, TwoProcessesWithSyncBnReproduceOneProcess) {
  const std::string two = temp_path("two_sync_bn");
  const Command c = train(2, "-e 3 --sync-bn -o " + two);
  ASSERT_EQ(c.status, 0) << c.err;
  expect_losses_near(losses(single_process_run()), losses(two), 1e-5);
  expect_same_model(single_process_run(), two, 1e-5);
  EXPECT_NE(data::read_file_text(two + "/args.json").find("\"processes\": \"2\""), std::string::npos);
  // The test split, sharded and gathered: the same report (the same images in the same order; the scores may
  // differ in their last printed digits).
  expect_same_predictions(single_process_run() + "/test/predictions_images.csv", two + "/test/predictions_images.csv");
}

// --sync-bn on the memory-efficient path: the batch norms recomputed in backward take their statistics over
// the processes again (the same sums, so the same values; the running statistics are put back after a
// recompute), and two processes still reproduce one process of the ordinary path.
TEST(Distributed, TwoProcessesWithSyncBnOnTheMemoryEfficientPathReproduceOneProcess) {
  const std::string two = temp_path("two_sync_bn_memory_efficient");
  const Command c = train(2, "-e 3 --sync-bn --memory-efficient -o " + two);
  ASSERT_EQ(c.status, 0) << c.err;
  expect_losses_near(losses(single_process_run()), losses(two), 1e-5);
  expect_same_model(single_process_run(), two, 1e-5);
}

// --sync-bn with bf16 activations: the synchronised batch norm's kernels read and write bf16 (f32 statistics),
// so two processes follow one process's bf16 run; bf16 rounding of activations whose statistics were summed in
// another order bounds the difference (measured: 2e-3 at most over 3 steps).
TEST(Distributed, TwoProcessesWithSyncBnInBf16FollowOneProcess) {
  const std::string one = temp_path("one_bf16"), two = temp_path("two_sync_bn_bf16");
  Command c = train(1, "-e 3 --precision bf16 -o " + one);
  ASSERT_EQ(c.status, 0) << c.err;
  c = train(2, "-e 3 --sync-bn --precision bf16 -o " + two);
  ASSERT_EQ(c.status, 0) << c.err;
  expect_losses_near(losses(one), losses(two), 1e-2);
  EXPECT_NE(data::read_file_text(two + "/train.log").find("the 2 processes hold the same model, bit for bit"),
            std::string::npos);
}

// The same on DenseNet-121 at 64 px, step by step: the first step from the same initialisation, then each of
// steps 2 and 3 from the one-process run's state (its run folder copied for the two processes to resume), so
// that every comparison is of one step against one step (about 40 s on a small CPU). Uninterrupted 3-step runs
// of this net drift apart by chaos, not by the data-parallel code: at random initialisation its gradients move
// by about 0.5% when only the GEMM's summation order changes, and after 3 steps the two runs' weights were
// 0.4-9.8% outside 1e-5 and their losses up to 3.7e-5 apart (seeds 1, 7, 11; OpenBLAS's kernels and the own
// AVX-512 ones alike), while each step from a common state left none of the 7.0 M weights outside 1e-5
// and the losses 1e-7 apart.
// Each process multiplies its half of the batch's rows, so the comparison needs a GEMM that rounds a row the
// same whatever the product it is part of: OpenBLAS's AVX-512 kernels and the own ones (kernels/cpu/gemm.cpp)
// do. OpenBLAS's AVX2 (Haswell) kernels round a row by its place in a block of 12 rows, and the last-bit
// differences of the halves' forward passes grow over 121 layers (measured on a Zen 5 EPYC under
// OPENBLAS_CORETYPE=Haswell: 8,264 weights outside 1e-5 after one step), which says nothing of the
// data-parallel code. So the runs take the AVX-512 kernels where the CPU has them (whatever the environment
// chose), and the test skips where it has not.
TEST(Distributed, TwoProcessesWithSyncBnReproduceOneProcessOnDenseNet121) {
  if (!engine::cpu_info().avx512)
    GTEST_SKIP() << "needs OpenBLAS's AVX-512 kernels (a row rounded alike in any split of the batch)";
  const std::string kernels = "OPENBLAS_CORETYPE=SKYLAKEX";
  const std::string net = "--arch densenet121 --input-size 64 ";
  const std::string one = temp_path("one_densenet121"), two = temp_path("two_densenet121");
  for (int epoch = 1; epoch <= 3; ++epoch) {
    SCOPED_TRACE("step " + std::to_string(epoch));
    const std::string epochs = "-e " + std::to_string(epoch);
    if (epoch > 1) {  // both from the one-process state
      fs::remove_all(two);
      fs::copy(one, two, fs::copy_options::recursive);
    }
    Command c = train(1, net + epochs + (epoch == 1 ? " -o " : " --resume ") + one, kernels);
    ASSERT_EQ(c.status, 0) << c.err;
    c = train(2, net + epochs + " --sync-bn" + (epoch == 1 ? " -o " : " --resume ") + two, kernels);
    ASSERT_EQ(c.status, 0) << c.err;
    expect_losses_near(losses(one), losses(two), 1e-5);
    expect_nearly_same_model(one, two, 1e-5, 1e-5, 1e-5);  // one step at the default --lr 1e-5
  }
}

TEST(Distributed, TwoProcessesWithoutSyncBnStayIdentical) {
  const std::string two = temp_path("two");
  const Command c = train(2, "-e 3 -o " + two);
  ASSERT_EQ(c.status, 0) << c.err;
  const std::string log = data::read_file_text(two + "/train.log");
  for (int epoch = 1; epoch <= 3; ++epoch)
    EXPECT_NE(log.find("epoch " + std::to_string(epoch) + ": the 2 processes hold the same model, bit for bit"),
              std::string::npos)
        << log;
}

TEST(Distributed, BucketedGradientSumsEqualOneSumAfterBackwardBitForBit) {
  for (const std::string flags : {"", "--memory-efficient "}) {
    SCOPED_TRACE(flags);
    const std::string one = temp_path("unbucketed" + std::to_string(flags.size()));
    const std::string many = temp_path("bucketed" + std::to_string(flags.size()));
    Command c = train(2, flags + "-e 3 --bucket-mb 0 -o " + one);
    ASSERT_EQ(c.status, 0) << c.err;
    c = train(2, flags + "-e 3 --bucket-mb 0.01 -o " + many);  // 10 KB: several buckets of the tiny net
    ASSERT_EQ(c.status, 0) << c.err;
    expect_losses_near(losses(one), losses(many), 0.0);
    expect_same_model(one, many, 0.0);
    // The first step learns each parameter's contribution count; from the second every bucket starts
    // while backward runs.
    const std::string log = data::read_file_text(many + "/train.log");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(log, m, std::regex("epoch 3: gradients summed in ([0-9]+) bucket\\(s\\) of "
                                                     "--bucket-mb 0.01; in the last step ([0-9]+) started during backward")))
        << log;
    EXPECT_GT(std::stoi(m[1]), 2);
    EXPECT_EQ(m[1], m[2]);
    EXPECT_NE(data::read_file_text(one + "/train.log").find("epoch 3: gradients summed in 1 bucket(s) of --bucket-mb 0;"),
              std::string::npos);
  }
}

TEST(Distributed, ResumeOnAnotherProcessCountEqualsTheUninterruptedRun) {
  for (const auto& [first, second] : {std::pair<int, int>{1, 2}, std::pair<int, int>{2, 1}}) {
    SCOPED_TRACE(std::to_string(first) + " then " + std::to_string(second) + " processes");
    const std::string run = temp_path("resume" + std::to_string(first) + std::to_string(second));
    Command c = train(first, "-e 1 --sync-bn -o " + run);
    ASSERT_EQ(c.status, 0) << c.err;
    c = train(second, "--resume " + run + " -e 3 --sync-bn");
    ASSERT_EQ(c.status, 0) << c.err;
    expect_losses_near(losses(single_process_run()), losses(run), 1e-5);
    expect_same_model(single_process_run(), run, 1e-5);
  }
}

TEST(Distributed, AKilledProcessEndsTheJobPromptlyWithLastIntact) {
  const std::string run = temp_path("killed");
  // Rank 1 dies (SIGKILL) before optimizer step 2: epochs 1 and 2 (one step each) are done, 3 is not.
  const Command c = train(2, "-e 6 -o " + run, "MURA_ENGINE_TEST_KILL=1:2");
  EXPECT_NE(c.status, 0);
  EXPECT_LT(c.seconds, 60.0) << "the job should end within seconds of the kill";
  EXPECT_NE(c.err.find("rank 1"), std::string::npos) << c.err;
  const CheckpointInfo last = read_checkpoint(run + "/checkpoints/last.safetensors");
  EXPECT_EQ(last.metadata.at("epoch"), "2");
}

TEST(Distributed, ANonFiniteLossStopsEveryProcessAtTheSameStep) {
  const std::string run = temp_path("nonfinite");
  // --lr 1e30: the first update makes the weights non-finite, so the second step's loss is NaN on both.
  const Command c = train(2, "--images 36 -e 2 --lr 1e30 -o " + run);
  EXPECT_EQ(c.status, 3) << c.err;  // the trainer's status for a non-finite loss, from every process
  const std::string log = data::read_file_text(run + "/train.log");
  EXPECT_NE(log.find("the share of the loss of rank(s) 0, 1 of 2 was not finite"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(run + "/checkpoints/debug_nonfinite.safetensors"));
}

// One process's share alone is NaN (a test hook, before optimizer step 2 = the third step): the deferred
// step's non-finite flag, a maximum over the processes, makes both skip that update and stop with it.
TEST(Distributed, ANonFiniteShareOnOneProcessStopsEveryProcessWithoutItsUpdate) {
  const std::string run = temp_path("nonfinite_one_rank");
  const Command c = train(2, "-e 4 -o " + run, "MURA_ENGINE_TEST_NAN=1:2");
  EXPECT_EQ(c.status, 3) << c.err;
  const std::string log = data::read_file_text(run + "/train.log");
  EXPECT_NE(log.find("the share of the loss of rank(s) 1 of 2 was not finite"), std::string::npos) << log;
  // Rank 0's weights in the debug file are those after epoch 2 (the last checkpoint): its own finite share
  // did not update them. (The running statistics moved in the third forward pass; not compared.)
  const CheckpointInfo last = read_checkpoint(run + "/checkpoints/last.safetensors");
  EXPECT_EQ(last.metadata.at("epoch"), "2");
  const auto debug = engine::load_tensors(run + "/checkpoints/debug_nonfinite.safetensors");
  int compared = 0;
  for (const auto& [name, t] : debug) {
    if (name.rfind("model.", 0) != 0 || name.find("running") != std::string::npos) continue;
    ASSERT_TRUE(last.model.count(name.substr(6))) << name;
    EXPECT_EQ(t.to_vector(), last.model.at(name.substr(6)).to_vector()) << name;
    ++compared;
  }
  EXPECT_GT(compared, 10);
}

// The loader's shards (in one process): shard r of N takes the r-th consecutive share of each batch, so the
// shards together are the single-process batches in its order; a last batch smaller than N is dropped.
TEST(Distributed, LoaderShardsTogetherAreTheSingleProcessBatches) {
  const std::string root = temp_path("loader_synthetic");
  data::SynthOptions so;
  so.train_patients = 6;
  so.valid_patients = 2;
  so.min_side = 32;
  so.max_side = 40;
  data::make_synthetic_mura(root, so);
  const data::MuraIndex index = data::load_mura_index(root + "/MURA-v1.1");
  data::SplitOptions split_options;
  const std::vector<data::SplitEntry> entries = data::make_split(index, split_options).train;
  ASSERT_GE(entries.size(), 9u);
  for (const int64_t batch_size : {int64_t(4), int64_t(6)}) {
    data::LoaderOptions lo;
    lo.batch_size = batch_size;
    lo.height = lo.width = 16;
    lo.seed = 3;
    lo.workers = 1;
    data::Loader single(index.root, entries, lo);
    std::vector<std::unique_ptr<data::Loader>> shards;
    for (int r = 0; r < 2; ++r) {
      data::LoaderOptions shard = lo;
      shard.shard_rank = r;
      shard.shard_count = 2;
      shards.push_back(std::make_unique<data::Loader>(index.root, entries, shard));
    }
    const int64_t n = single.size(), last = n % batch_size;
    EXPECT_EQ(shards[0]->batches_per_epoch(), single.batches_per_epoch() - (last == 1 ? 1 : 0));
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      single.start_epoch(epoch);
      for (auto& shard : shards) shard->start_epoch(epoch);
      for (int64_t k = 0; k < shards[0]->batches_per_epoch(); ++k) {
        data::Batch whole, a, b;
        ASSERT_TRUE(single.next(whole) && shards[0]->next(a) && shards[1]->next(b));
        std::vector<int64_t> joined = a.indices;
        joined.insert(joined.end(), b.indices.begin(), b.indices.end());
        EXPECT_EQ(joined, whole.indices) << "batch " << k << " of epoch " << epoch;
        EXPECT_EQ(a.size(), whole.size() / 2);
      }
      data::Batch extra;
      EXPECT_FALSE(shards[0]->next(extra));
    }
  }
}

TEST(Distributed, BatchThatDoesNotDivideIsRefusedNamingTheRemedy) {
  const Command c = train(2, "-e 1 -b 15 -o " + temp_path("odd"));
  EXPECT_NE(c.status, 0);
  EXPECT_NE(c.err.find("pass a multiple of 2 (e.g. --batch-size 16)"), std::string::npos) << c.err;
  EXPECT_FALSE(fs::exists(temp_path("odd")));
}

}  // namespace
