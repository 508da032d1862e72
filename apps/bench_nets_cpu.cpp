// bench_nets_cpu: seconds per image of the study's nets on the CPU, forward (eval, no grad) and
// forward + backward (train mode, BCE loss, every parameter gradient), with the achieved GFLOP/s and the
// fraction of the CPU's estimated peak. Issue 4 compares these numbers with PyTorch on the same CPU.
//
//   bench_nets_cpu [--threads N] [--batch N] [--reps N] [--quick] [--only densenet201|inception_resnet_v2]
//                  [--pass forward|train|both]
//
// Work per image: the net's multiply-accumulates (from its summary); forward = 2 FLOP per MAC, forward +
// backward = 6 (backward computes both the input and the weight gradients). The nets use the study's
// flatten head; time per image = median time per batch / batch.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/training_step.h"
#include "experiment/flags.h"
#include "nets/registry.h"

namespace {

struct Args {
  int threads = 2;
  int64_t batch = 4;
  int reps = 3;
  bool quick = false;
  std::string only;
  std::string pass = "both";
};

Args parse(int argc, char** argv) {
  Args a;
  experiment::FlagParser flags("bench_nets_cpu",
                               "Times DenseNet-201 at 224 and Inception-ResNet-v2 at 224 and 299 on the CPU: forward "
                               "(eval) and forward + backward (train) seconds per image, median of --reps. On a "
                               "shared machine set OMP_WAIT_POLICY=passive: spinning OpenMP threads lose badly to "
                               "other processes.");
  flags.add("-j,--threads", &a.threads, "CPU threads");
  flags.add("-b,--batch", &a.batch, "images per batch");
  flags.add("--reps", &a.reps, "timed repetitions (the median is reported)");
  flags.add_switch("--quick", &a.quick, "batch 1, 1 rep, smaller inputs (a smoke run)");
  flags.add("--only", &a.only, "densenet201 | inception_resnet_v2", "ARCH");
  flags.add("--pass", &a.pass, "forward | train | both: which passes to time (one alone, e.g. under a profiler)",
            "PASS");
  if (!experiment::parse_flags_or_exit(flags, argc, argv)) std::exit(0);
  if (a.pass != "forward" && a.pass != "train" && a.pass != "both") {
    std::fprintf(stderr, "error: --pass must be forward, train or both\n");
    std::exit(2);
  }
  if (a.threads < 1 || a.batch < 1 || a.reps < 1) {
    std::fprintf(stderr, "error: --threads, --batch and --reps must be >= 1\n");
    std::exit(2);
  }
  return a;
}

// Single-precision peak per core, estimated from /proc/cpuinfo (engine/runtime.h).
double peak_gflops_per_core(std::string& description) {
  const engine::CpuInfo cpu = engine::cpu_info();
  char text[256];
  std::snprintf(text, sizeof text, "%s, %.0f MHz, %d FLOP/cycle (estimate); GEMM: %s", cpu.model.c_str(), cpu.mhz,
                cpu.flop_per_cycle, cpu.gemm_library.c_str());
  description = text;
  return cpu.peak_gflops_per_core();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The runs' range around their median, "-a%/+b%": the noise of the machine at the time.
std::string spread(std::vector<double> v) {
  const double m = median(v);
  if (m <= 0) return "-";
  std::sort(v.begin(), v.end());
  char text[64];
  std::snprintf(text, sizeof text, "-%.0f%%/+%.0f%%", 100 * (m - v.front()) / m, 100 * (v.back() - m) / m);
  return text;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Processor time (user + system, all threads) of this process so far, in seconds.
double cpu_seconds() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

// Wall-clock and processor seconds of each timed run. On a shared machine the processor time is the
// steadier figure: it excludes the time other processes hold the cores (but not their effect on the
// caches), and above wall x threads it shows what the threads burn waiting.
struct Runs {
  std::vector<double> wall, cpu;
};

// Runs `step` reps + 1 times; the first is a warm-up (kept when reps == 1).
template <typename Step>
Runs time_runs(int reps, Step step) {
  Runs runs;
  for (int r = 0; r < reps + 1; ++r) {
    const double t0 = now(), c0 = cpu_seconds();
    step();
    const double t = now() - t0, c = cpu_seconds() - c0;
    if (r > 0 || reps == 1) runs.wall.push_back(t), runs.cpu.push_back(c);
  }
  return runs;
}

struct Case {
  std::string arch;
  int64_t size;
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  try {
    using namespace engine;
    engine::set_num_threads(args.threads);
    std::string cpu;
    const double peak = peak_gflops_per_core(cpu) * args.threads;
    std::printf("cpu: %s; %d threads of %u; peak estimate %.0f GFLOP/s", cpu.c_str(), engine::num_threads(),
                std::thread::hardware_concurrency(), peak);
    for (const char* var : {"OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE"})
      if (const char* value = std::getenv(var)) std::printf("; %s=%s", var, value);
    std::printf("\n");

    std::vector<Case> cases{{"densenet201", 224}, {"inception_resnet_v2", 224}, {"inception_resnet_v2", 299}};
    if (args.quick) cases = {{"densenet201", 64}, {"inception_resnet_v2", 107}};
    const int64_t batch = args.quick ? 1 : args.batch;
    const int reps = args.quick ? 1 : args.reps;

    std::printf("batch %lld, median of %d, flatten head (the study's), f32\n\n", static_cast<long long>(batch), reps);
    std::printf("%-20s %5s %8s | %12s %9s %6s | %12s %9s %6s | %s | %s\n", "net", "input", "GMAC/img", "fwd s/img",
                "GFLOP/s", "peak", "fwd+bwd s/img", "GFLOP/s", "peak", "range fwd, fwd+bwd",
                "CPU s/img fwd, fwd+bwd");
    for (const Case& c : cases) {
      if (!args.only.empty() && args.only != c.arch) continue;
      Generator gen(1), data(2);
      auto net = nets::make_net(c.arch, nets::Head::flatten, nets::Flavor::keras, c.size, gen);
      int64_t macs = 0;
      for (const auto& row : net->summary(c.size)) macs += row.macs;  // also a warm-up pass
      Tensor images = Tensor::empty({batch, c.size, c.size, 3});
      init_uniform(images, 0.0f, 1.0f, data);
      std::vector<float> labels(static_cast<size_t>(batch));
      for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<float>(i % 2);
      const Tensor targets = Tensor::from_vector({batch}, labels);

      // Forward, eval, no grad.
      net->eval();
      const Runs forward = args.pass == "train" ? Runs{} : time_runs(reps, [&] {
        NoGradGuard no_grad;
        Tensor logits = net->forward(images);
      });
      // Forward + backward, train mode: the training step without an optimizer (gradients only).
      net->train();
      ParameterArena arena(net->named_parameters());
      TrainingStep gradients_step(*net, arena, /*optimizer=*/nullptr);
      const Runs train = args.pass == "forward" ? Runs{} : time_runs(reps, [&] {
        const StepResult result = gradients_step.run(images, targets);
        ENGINE_CHECK(result.finite) << c.arch << ": the loss became " << result.loss;
      });
      // A pass left out (--pass) prints as zeros.
      const double per_image = 1.0 / static_cast<double>(batch);
      const double fwd = median(forward.wall) * per_image, step = median(train.wall) * per_image;
      const double gmac = static_cast<double>(macs) * 1e-9;
      const double fwd_gflops = fwd > 0 ? 2 * gmac / fwd : 0.0, step_gflops = step > 0 ? 6 * gmac / step : 0.0;
      std::printf("%-20s %5lld %8.2f | %12.3f %9.1f %5.0f%% | %12.3f %9.1f %5.0f%% | %s %s | %.3f %.3f\n",
                  c.arch.c_str(), static_cast<long long>(c.size), gmac, fwd, fwd_gflops, 100 * fwd_gflops / peak,
                  step, step_gflops, 100 * step_gflops / peak, spread(forward.wall).c_str(),
                  spread(train.wall).c_str(), median(forward.cpu) * per_image, median(train.cpu) * per_image);
      std::fflush(stdout);
    }
    struct rusage usage_info;
    getrusage(RUSAGE_SELF, &usage_info);
    std::printf("\npeak resident memory: %.2f GiB\n", static_cast<double>(usage_info.ru_maxrss) / (1024.0 * 1024.0));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
