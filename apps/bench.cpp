// bench: training-step and inference throughput of the study's nets on synthetic data, with the peak
// memory of each case: our side of the comparison with PyTorch on the same GPU (scripts/bench_gpu.sh puts
// scripts/bench_torch.py's figures beside these; docs/benchmarks.md).
//
//   bench [--arch A,...] [--input-size S,...] [--cases A@S,...] [--batch-sizes 32,128,max]
//         [--precision f32,bf16] [--mode train|infer|both] [--warmup N] [--iters N]
//         [--device auto|cpu|cuda] [--threads N] [--max-batch-cap N] [--json FILE]
//
// Cases: every --arch at every --input-size (default: the arch's ImageNet size), or the --cases list.
// The nets carry the study's flatten head (Flatten + Dense(1)) and Keras batch norm.
//
// Training step, as experiment/trainer.cpp runs one: zero the parameter arena's gradients, forward in
// train mode, BCE with logits, read the loss (a device synchronisation, as the trainer's non-finite check
// does), backward, one Adam step over the arena (Keras convention, lr 1e-5: the study's optimizer).
// Inference: eval mode, no grad, forward. Images (NHWC, uniform in [0, 1)) and labels (alternately 0 and
// 1) are made on the device once per case, so no data loading or upload is timed.
//
// Timing: --warmup untimed iterations, then --iters timed ones, each ended by a device synchronisation;
// the median, p10 and p90 (linear interpolation) of the per-iteration wall times; images/s = batch /
// median.
// Peak memory (the bytes of the case, the net's parameters included):
//   CUDA: the caching allocator's high-water mark over the case (net construction, warm-up and timed
//         iterations) minus the bytes in use before it (engine/runtime.h);
//   CPU:  growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs after
//         malloc_trim) over its resident set before the net was built; "n/a" where the kernel refuses
//         the reset.
// Batch "max" (CUDA only): the largest batch whose first step runs: 16, 32, 64, ... until the allocator
// reports out of memory (or --max-batch-cap), then bisection down to a multiple of 8. Should the timed run
// at that batch still run out of memory, the batch shrinks by an eighth and the case is run again.
// bf16: mixed precision (docs/precision.md): the training step with Precision::bf16 (bf16 activations,
// f32 master weights, gradients and Adam) and inference on bf16 activations (the batch converted to bf16
// on the device before each forward, as the training step does; the conversion is timed). On the CPU the
// bf16 kernels are emulated (widened to f32 and rounded), so CPU bf16 rows time the emulation.
// Projected (compute only, data loading excluded): 10 epochs over MURA's 36,808 training images at the
// training throughput plus one pass over its 3,197 validation images at the inference throughput of the
// same batch (at the training throughput when inference was not measured: an upper bound).
//
// Output: a table on stdout; with --json, a file (rewritten after every row, so that a run cut short
// leaves the rows done; exit status 1 when a row failed) in the format bench_torch.py writes too:
//   {"format": "mura-bench-v1", "framework": "ours", "device": ..., "versions": {...}, "date": ...,
//    "peak_memory_kind": ..., "head": "flatten", "protocol": ..., "rows": [
//      {"variant": "ours", "arch", "input_size", "batch_request" ("32" | "max"), "batch" (null when not
//       run), "precision" ("f32" | "bf16"), "mode" ("train" | "infer"), "status" ("ok" | "not implemented"
//       | "oom" | "skipped" | "error"), "note", "warmup", "iters", "median_s", "p10_s", "p90_s",
//       "images_per_s", "peak_bytes", "projected_s"}, ...]}
// Figures that do not exist are null.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "data/io_util.h"
#include "engine/engine.h"
#include "engine/graph_step.h"
#include "engine/training_step.h"
#include "experiment/flags.h"
#include "experiment/metrics.h"
#include "experiment/trainer.h"
#include "nets/registry.h"

namespace {

using engine::Device;
using engine::Tensor;

// MURA v1.1: training and validation images (the projection's workload).
constexpr double kMuraTrainImages = 36808;
constexpr double kMuraValidImages = 3197;
constexpr double kProjectedEpochs = 10;
constexpr float kStudyLearningRate = 1e-5f;

struct Args {
  std::vector<std::string> archs, sizes, cases, batches, precisions;
  std::string mode = "both", device = "auto", json;
  int warmup = 3, iters = 10, threads = 0;
  int64_t max_batch_cap = 4096;
  bool memory_efficient = false;
  bool no_graph = false;
};

struct Case {
  std::string arch;
  int64_t size = 0;
  bool memory_efficient = false;  // DenseNet: BN+ReLU recomputed in backward
  engine::Precision precision = engine::Precision::f32;
  bool graph = true;  // training steps replayed as a CUDA graph (engine/graph_step.h); false: --no-graph
};

Args parse(int argc, char** argv) {
  Args a;
  experiment::FlagParser flags(
      "bench",
      "Training-step (forward + BCE + backward + Adam) and inference throughput of the study's nets on synthetic "
      "data, with peak memory: the median, p10 and p90 of device-synchronised iterations after a warm-up, "
      "images/s, and the projected time of 10 epochs over MURA's training set plus one evaluation.");
  flags.add_list("--arch", &a.archs, "densenet121 | densenet169 | densenet201 | inception_resnet_v2 (comma list; "
                                     "default densenet201,inception_resnet_v2)", "A");
  flags.add_list("--input-size", &a.sizes, "input sizes, each run for every --arch (default: the arch's ImageNet "
                                           "size: 224 DenseNet, 299 Inception-ResNet-v2)", "S");
  flags.add_list("--cases", &a.cases, "arch@size pairs, e.g. densenet201@224,inception_resnet_v2@299 (instead of "
                                      "--arch x --input-size)", "A@S");
  flags.add_list("--batch-sizes", &a.batches, "batch sizes, and `max` for the largest that fits (CUDA only; default "
                                              "32,128)", "B");
  flags.add_list("--precision", &a.precisions, "f32 (TF32 convolutions on CUDA) | bf16 (mixed precision: bf16 "
                                               "activations, f32 weights; emulated on the CPU); default f32", "P");
  flags.add("--mode", &a.mode, "train | infer | both", "M");
  flags.add("--warmup", &a.warmup, "untimed iterations before the timed ones", 0, 1000000);
  flags.add("--iters", &a.iters, "timed iterations (median, p10, p90 reported)", 1, 1000000);
  flags.add("--device", &a.device, "auto | cpu | cuda | cuda:N", "D");
  flags.add("-j,--threads", &a.threads, "CPU threads (0: OMP_NUM_THREADS or every core)", 0, 1024);
  flags.add("--max-batch-cap", &a.max_batch_cap, "the largest batch the `max` search tries", 1, 1 << 20);
  flags.add_switch("--memory-efficient", &a.memory_efficient,
                   "DenseNet: BN+ReLU recomputed in backward (nets/densenet.h); the rows' note says so");
  flags.add_switch("--no-graph", &a.no_graph,
                   "CUDA: training steps eager, kernel by kernel, instead of one CUDA graph replay each (the rows' "
                   "note says which ran)");
  flags.add("--json", &a.json, "also write the rows to this JSON file (atomically)", "FILE");
  if (!experiment::parse_flags_or_exit(flags, argc, argv)) std::exit(0);
  if (a.archs.empty() && a.cases.empty()) a.archs = {"densenet201", "inception_resnet_v2"};
  if (a.batches.empty()) a.batches = {"32", "128"};
  if (a.precisions.empty()) a.precisions = {"f32"};
  std::string error;
  if (a.mode != "train" && a.mode != "infer" && a.mode != "both") error = "--mode must be train, infer or both";
  for (const std::string& b : a.batches) {
    if (b == "max") continue;
    try {
      experiment::parse_int("--batch-sizes", b, 1, INT64_MAX);
    } catch (const std::exception&) {
      error = "--batch-sizes: '" + b + "' is neither a positive number nor max";
    }
  }
  for (const std::string& p : a.precisions)
    if (p != "f32" && p != "bf16") error = "--precision: '" + p + "' is neither f32 nor bf16";
  if (!error.empty()) {
    std::fprintf(stderr, "error: %s (see --help)\n", error.c_str());
    std::exit(2);
  }
  return a;
}

std::vector<Case> make_cases(const Args& a) {
  std::vector<Case> cases;
  for (const std::string& c : a.cases) {
    const size_t at = c.find('@');
    ENGINE_USER_CHECK(at != std::string::npos && at > 0) << "--cases: '" << c << "' is not arch@size, e.g. densenet201@224";
    cases.push_back({c.substr(0, at), experiment::parse_int("--cases", c.substr(at + 1))});
  }
  for (const std::string& arch : a.archs) {
    if (a.sizes.empty()) cases.push_back({arch, nets::default_input_size(arch)});
    for (const std::string& s : a.sizes) cases.push_back({arch, experiment::parse_int("--input-size", s)});
  }
  for (Case& c : cases) {
    c.memory_efficient = a.memory_efficient && c.arch.rfind("densenet", 0) == 0;
    c.graph = !a.no_graph;
  }
  const auto& names = nets::arch_names();
  for (const Case& c : cases) {
    ENGINE_USER_CHECK(std::find(names.begin(), names.end(), c.arch) != names.end())
        << "'" << c.arch << "' is not one of densenet121, densenet169, densenet201, inception_resnet_v2";
    ENGINE_USER_CHECK(c.size > 0) << c.arch << ": the input size must be positive";
  }
  return cases;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Waits until every kernel queued on the device has finished (a no-op on the CPU).
void synchronize(const Device& device) {
  engine::device_synchronize(device);
}

// Whether `e` says the batch does not fit the device: out of memory, or sizes past cuDNN's limits.
bool batch_does_not_fit(const std::exception& e) {
  if (engine::is_device_out_of_memory(e)) return true;
  // cuBLAS and cuDNN report their own allocation failures, and the convolutions list workspaces that
  // "could not be allocated" when no algorithm found room. A batch whose tensors exceed cuDNN's 32-bit
  // sizes ("does not fit cuDNN's 32-bit int") does not fit either: the largest batch is below it.
  const std::string what = e.what();
  for (const char* sign : {"out of memory", "ALLOC_FAILED", "could not be allocated", "does not fit cuDNN's 32-bit"})
    if (what.find(sign) != std::string::npos) return true;
  return false;
}

// Quantile q of the values, linear interpolation between the order statistics (as numpy's default).
double quantile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (position - static_cast<double>(below)) * (values[above] - values[below]);
}

// /proc/self/status field in kB (VmRSS, VmHWM); -1 when unreadable.
int64_t proc_status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.compare(0, key.size() + 1, key + ":") == 0) {  // "VmRSS:\t  123456 kB"
      std::istringstream fields(line.substr(key.size() + 1));
      std::string number, unit;
      fields >> number >> unit;
      try {
        return unit == "kB" ? experiment::parse_int(key, number, 0) : -1;
      } catch (const std::exception&) {
        return -1;
      }
    }
  return -1;
}

// The memory of one case: construct before the net is built, read peak_bytes() at the end.
class CaseMemory {
 public:
  explicit CaseMemory(const Device& device) : device_(device) {
    if (device.is_cuda()) {
      engine::empty_device_cache(device);
      engine::reset_device_memory_peak(device);
      baseline_ = engine::device_memory_stats(device).requested_bytes;
      return;
    }
    engine::empty_device_cache(device);  // the host heap's free pages back, so that reuse shows as growth
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";  // resets VmHWM to the current VmRSS (Linux >= 4.0)
    clear.close();
    rss_reset_ok_ = clear.good();
    baseline_ = proc_status_kib("VmRSS") * 1024;
    rss_reset_ok_ = rss_reset_ok_ && baseline_ >= 0 && proc_status_kib("VmHWM") * 1024 <= baseline_ + (1 << 20);
  }
  std::optional<int64_t> peak_bytes() const {
    if (device_.is_cuda()) return engine::device_memory_stats(device_).peak_requested_bytes - baseline_;
    if (!rss_reset_ok_) return std::nullopt;
    return proc_status_kib("VmHWM") * 1024 - baseline_;
  }
  static std::string kind(const Device& device) {
    return device.is_cuda() ? "CUDA caching allocator's peak of the bytes asked for (each request rounded up to "
                              "512 B, as PyTorch's max_memory_allocated counts) during the case, minus those "
                              "before it"
                            : "growth of the process's peak resident set (VmHWM) over its resident set before the "
                              "net was built (Linux /proc)";
  }

 private:
  Device device_;
  int64_t baseline_ = 0;
  bool rss_reset_ok_ = false;
};

struct Row {
  std::string arch, batch_request, precision, mode, status = "ok", note;
  int64_t input_size = 0, batch = 0;  // batch 0: not run
  int warmup = 0, iters = 0;
  double median_s = NAN, p10_s = NAN, p90_s = NAN, images_per_s = NAN, projected_s = NAN;
  std::optional<int64_t> peak_bytes;
};

// One net on the device with what a training step needs, and the synthetic batch.
struct Bench {
  std::shared_ptr<nets::Net> net;
  std::unique_ptr<engine::ParameterArena> arena;
  std::unique_ptr<engine::Adam> adam;
  std::unique_ptr<engine::TrainingStep> step;
  std::unique_ptr<engine::GraphedTrainingStep> graphed;
  Tensor images, labels;
  Device device;
  engine::Precision precision;

  Bench(const Case& c, const Device& d, bool train) : device(d), precision(c.precision) {
    net = experiment::build_net(c.arch, nets::Head::flatten, nets::Flavor::keras, c.size, /*seed=*/1,
                                c.memory_efficient);
    net->to(device);
    net->train(train);
    if (train) {
      arena = std::make_unique<engine::ParameterArena>(net->named_parameters());
      adam = std::make_unique<engine::Adam>(*arena, engine::Adam::keras(kStudyLearningRate));
      engine::StepOptions options;
      options.precision = c.precision;
      step = std::make_unique<engine::TrainingStep>(*net, *arena, adam.get(), std::move(options));
      engine::GraphOptions graph_options;
      graph_options.enabled = c.graph;
      graphed = std::make_unique<engine::GraphedTrainingStep>(*step, std::move(graph_options));
    }
  }
  void set_batch(int64_t batch, int64_t size) {
    images = Tensor();  // the old batch goes first: room for the new one
    labels = Tensor();
    engine::Generator gen(2);
    Tensor host = Tensor::empty({batch, size, size, 3});
    engine::init_uniform(host, 0.0f, 1.0f, gen);
    std::vector<float> targets(static_cast<size_t>(batch));
    for (size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<float>(i % 2);
    images = host.to(device);
    labels = Tensor::from_vector({batch}, targets).to(device);
  }
  // The trainer's step (engine/training_step.h, engine/graph_step.h), without its bookkeeping.
  void train_step() {
    const engine::StepResult result = graphed->finish(graphed->enqueue(images, labels));
    ENGINE_CHECK(result.finite) << "the training loss became " << result.loss;
  }
  void infer_step() {
    engine::NoGradGuard no_grad;
    (void)net->forward(precision == engine::Precision::bf16 ? images.to(engine::DType::bf16) : images);
  }
  // One iteration of `mode`, ended by a device synchronisation.
  void iteration(bool train) {
    if (train) train_step();
    else infer_step();
    synchronize(device);
  }
};

// True when one iteration at `batch` runs; false when it does not fit (anything else is rethrown).
bool fits(Bench& bench, const Case& c, int64_t batch, bool train) {
  try {
    bench.set_batch(batch, c.size);
    bench.iteration(train);
    return true;
  } catch (const std::exception& e) {
    if (!batch_does_not_fit(e)) throw;
    bench.images = Tensor();
    bench.labels = Tensor();
    engine::device_synchronize(bench.device);
    engine::empty_device_cache(bench.device);
    return false;
  }
}

// The largest batch whose first iteration runs: doubling from 16, then bisection to a multiple of 8.
int64_t find_max_batch(const Case& c, const Device& device, bool train, int64_t cap) {
  Bench bench(c, device, train);
  int64_t fit = 0, fail = 0;
  for (int64_t b = std::min<int64_t>(16, cap);; b = std::min(2 * b, cap)) {
    if (!fits(bench, c, b, train)) {
      fail = b;
      break;
    }
    fit = b;
    if (b == cap) break;
  }
  if (fit == 0) {  // not even 16: bisect from 1
    fit = 0;
    for (int64_t b = 1; b < fail; b *= 2) {
      if (!fits(bench, c, b, train)) {
        fail = b;
        break;
      }
      fit = b;
    }
    ENGINE_USER_CHECK(fit > 0) << "not even batch 1 fits on " << device.str();
  }
  while (fail > 0 && fail - fit > 8) {
    int64_t mid = fit + (fail - fit) / 2;
    if (mid >= 16) mid -= mid % 8;
    if (mid <= fit) break;
    if (fits(bench, c, mid, train)) fit = mid;
    else fail = mid;
  }
  std::fprintf(stderr, "%s@%lld %s: largest batch %lld%s\n", c.arch.c_str(), static_cast<long long>(c.size),
               train ? "train" : "infer", static_cast<long long>(fit), fail == 0 ? " (the cap)" : "");
  return fit;
}

// A profiler range (engine::device_profile_range) while alive.
class ProfileRange {
 public:
  explicit ProfileRange(const Device& device) : device_(device) { engine::device_profile_range(device_, true); }
  ~ProfileRange() {
    try {
      engine::device_profile_range(device_, false);
    } catch (...) {  // an earlier error is the one to report
    }
  }
  ProfileRange(const ProfileRange&) = delete;
  ProfileRange& operator=(const ProfileRange&) = delete;

 private:
  Device device_;
};

// Times one (case, batch, mode) on a fresh net; an out-of-memory error becomes status "oom".
Row measure(const Case& c, const Device& device, int64_t batch, bool train, const Args& a) {
  Row row;
  row.batch = batch;
  row.warmup = a.warmup;
  row.iters = a.iters;
  try {
    CaseMemory memory(device);
    std::vector<double> times;
    {
      Bench bench(c, device, train);
      bench.set_batch(batch, c.size);
      for (int i = 0; i < a.warmup; ++i) bench.iteration(train);
      // The timed iterations are what a profiler should see: the range opens on an idle device (setup's
      // work done, also without a warm-up) and closes however the loop ends (each iteration ends idle).
      engine::device_synchronize(device);
      const ProfileRange profiled(device);
      for (int i = 0; i < a.iters; ++i) {
        const double t0 = now();
        bench.iteration(train);
        times.push_back(now() - t0);
      }
      if (train && device.is_cuda()) {
        const std::string& why = bench.graphed->off_reason();
        row.note = bench.graphed->recorded() ? "one CUDA graph per step"
                                             : "eager steps" + (why.empty() ? std::string() : " (" + why + ")");
      }
    }
    row.peak_bytes = memory.peak_bytes();
    row.median_s = quantile(times, 0.5);
    row.p10_s = quantile(times, 0.1);
    row.p90_s = quantile(times, 0.9);
    row.images_per_s = static_cast<double>(batch) / row.median_s;
  } catch (const std::exception& e) {
    if (!batch_does_not_fit(e)) throw;
    engine::device_synchronize(device);
    engine::empty_device_cache(device);
    row.status = "oom";
    row.note = e.what();
  }
  return row;
}

// Training rows get the projection: 10 epochs of MURA's training set + one pass over its validation set.
void add_projections(std::vector<Row>& rows) {
  for (Row& r : rows) {
    if (r.mode != "train" || r.status != "ok") continue;
    double eval_rate = r.images_per_s;
    std::string eval_note = "evaluation at the training throughput (inference not measured)";
    for (const Row& i : rows)
      if (i.mode == "infer" && i.status == "ok" && i.arch == r.arch && i.input_size == r.input_size &&
          i.precision == r.precision && i.batch_request == r.batch_request) {
        eval_rate = i.images_per_s;
        eval_note.clear();
      }
    r.projected_s = kProjectedEpochs * kMuraTrainImages / r.images_per_s + kMuraValidImages / eval_rate;
    if (!eval_note.empty()) r.note += (r.note.empty() ? "" : "; ") + eval_note;
  }
}

std::string num(double v) { return experiment::json_number(v); }

std::string rows_json(const std::vector<Row>& rows, const Device& device, const std::string& device_text,
                      const std::vector<std::pair<std::string, std::string>>& versions) {
  using experiment::json_string;
  std::ostringstream j;
  char date[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  j << "{\n  \"format\": \"mura-bench-v1\",\n  \"framework\": \"ours\",\n  \"device\": " << json_string(device_text)
    << ",\n  \"versions\": {";
  for (size_t i = 0; i < versions.size(); ++i)
    j << (i ? ", " : "") << json_string(versions[i].first) << ": " << json_string(versions[i].second);
  j << "},\n  \"date\": " << json_string(date) << ",\n  \"peak_memory_kind\": " << json_string(CaseMemory::kind(device))
    << ",\n  \"head\": \"flatten\",\n  \"protocol\": "
    << json_string("synthetic data on the device; per-iteration wall time after a device synchronisation; median, "
                   "p10, p90 after warm-up")
    << ",\n  \"rows\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    j << "    {\"variant\": \"ours\", \"arch\": " << json_string(r.arch) << ", \"input_size\": " << r.input_size
      << ", \"batch_request\": " << json_string(r.batch_request) << ", \"batch\": "
      << (r.batch > 0 ? std::to_string(r.batch) : "null") << ", \"precision\": " << json_string(r.precision)
      << ", \"mode\": " << json_string(r.mode) << ", \"status\": " << json_string(r.status)
      << ", \"note\": " << json_string(r.note) << ", \"warmup\": " << r.warmup << ", \"iters\": " << r.iters
      << ", \"median_s\": " << num(r.median_s) << ", \"p10_s\": " << num(r.p10_s) << ", \"p90_s\": " << num(r.p90_s)
      << ", \"images_per_s\": " << num(r.images_per_s) << ", \"peak_bytes\": "
      << (r.peak_bytes ? std::to_string(*r.peak_bytes) : "null") << ", \"projected_s\": " << num(r.projected_s)
      << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  j << "  ]\n}\n";
  return j.str();
}

void print_row(const Row& r) {
  char peak[32] = "n/a", projected[32] = "-";
  if (r.peak_bytes) std::snprintf(peak, sizeof peak, "%.0f", static_cast<double>(*r.peak_bytes) / (1 << 20));
  if (std::isfinite(r.projected_s)) std::snprintf(projected, sizeof projected, "%.0f", r.projected_s);
  if (r.status == "ok") {
    std::printf("%-20s %5lld %5s %5lld %-5s %-5s %10.4f %10.4f %10.4f %10.1f %10s %10s\n", r.arch.c_str(),
                static_cast<long long>(r.input_size), r.batch_request.c_str(), static_cast<long long>(r.batch),
                r.precision.c_str(), r.mode.c_str(), r.median_s, r.p10_s, r.p90_s, r.images_per_s, peak, projected);
  } else {
    std::printf("%-20s %5lld %5s %5s %-5s %-5s %s%s%s\n", r.arch.c_str(), static_cast<long long>(r.input_size),
                r.batch_request.c_str(), r.batch > 0 ? std::to_string(r.batch).c_str() : "-", r.precision.c_str(),
                r.mode.c_str(), r.status.c_str(), r.note.empty() ? "" : ": ", r.note.substr(0, 160).c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  std::vector<Case> cases;
  try {
    cases = make_cases(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    if (args.threads > 0) engine::set_num_threads(args.threads);
    const Device device = engine::select_device(args.device);
    std::vector<std::pair<std::string, std::string>> versions;
    std::string device_text;
    if (device.is_cuda()) {
      device_text = engine::probe_devices().description;
      versions = engine::device_runtime_info(device);
    } else {
      const engine::CpuInfo cpu = engine::cpu_info();
      device_text = "cpu: " + cpu.model + ", " + std::to_string(engine::num_threads()) + " threads, GEMM " +
                    cpu.gemm_library;
    }
    std::printf("bench on %s; warm-up %d, timed %d; flatten head; synthetic data on the device\n", device_text.c_str(),
                args.warmup, args.iters);
    const int graph_warmup = engine::GraphOptions{}.warmup_steps + 1;  // eager steps, then the recording
    if (device.is_cuda() && !args.no_graph && args.mode != "infer" && args.warmup < graph_warmup)
      std::fprintf(stderr,
                   "note: --warmup %d is under the %d steps a graphed training step takes before it replays (its "
                   "eager steps and the graph's recording): they fall into the timed iterations\n",
                   args.warmup, graph_warmup);
    std::printf("%-20s %5s %5s %5s %-5s %-5s %10s %10s %10s %10s %10s %10s\n", "net", "size", "req", "batch", "prec",
                "mode", "median s", "p10 s", "p90 s", "img/s", "peak MiB", "proj. s");

    std::vector<std::string> modes;
    if (args.mode != "infer") modes.push_back("train");
    if (args.mode != "train") modes.push_back("infer");
    std::vector<Row> rows;
    bool errors = false;
    // The JSON is rewritten after every row, so that a run cut short by a time limit leaves its rows.
    auto write_json = [&](bool final_write) {
      if (args.json.empty()) return;
      std::vector<Row> projected = rows;
      add_projections(projected);
      data::write_file_atomic(args.json, rows_json(projected, device, device_text, versions), final_write);
    };
    for (const Case& c : cases)
      for (const std::string& precision : args.precisions)
        for (const std::string& request : args.batches)
          for (const std::string& mode : modes) {
            const bool train = mode == "train";
            Row row;
            Case pc = c;
            pc.precision = precision == "bf16" ? engine::Precision::bf16 : engine::Precision::f32;
            if (request == "max" && !device.is_cuda()) {
              row.status = "skipped";
              row.note = "batch max needs CUDA (the CPU has no out-of-memory signal to search by)";
            } else {
              try {
                int64_t batch = request == "max" ? find_max_batch(pc, device, train, args.max_batch_cap)
                                                 : experiment::parse_int("--batch-sizes", request, 1);
                row = measure(pc, device, batch, train, args);
                for (int retry = 0; request == "max" && row.status == "oom" && retry < 3 && batch > 8; ++retry) {
                  batch -= std::max<int64_t>(1, batch / 8);
                  std::fprintf(stderr, "out of memory in the timed run; again at batch %lld\n",
                               static_cast<long long>(batch));
                  row = measure(pc, device, batch, train, args);
                }
              } catch (const std::exception& e) {  // the other rows still run; the exit status says so
                row.status = "error";
                row.note = e.what();
                errors = true;
              }
            }
            row.arch = c.arch;
            row.input_size = c.size;
            row.batch_request = request;
            row.precision = precision;
            row.mode = mode;
            if (c.memory_efficient && train && row.status == "ok")
              row.note += (row.note.empty() ? "" : "; ") + std::string("memory-efficient dense blocks");
            print_row(row);
            rows.push_back(row);
            write_json(false);
          }
    std::vector<Row> projected = rows;  // rows stay unprojected: write_json projects its own copy
    add_projections(projected);
    std::printf("\nprojected: 10 epochs of MURA's 36,808 training images + one pass over its 3,197 validation images "
                "at the measured throughput (compute only, data loading excluded):\n");
    for (const Row& r : projected)
      if (std::isfinite(r.projected_s))
        std::printf("  %s@%lld batch %lld %s: %.0f s (%.1f min)%s\n", r.arch.c_str(), static_cast<long long>(r.input_size),
                    static_cast<long long>(r.batch), r.precision.c_str(), r.projected_s, r.projected_s / 60,
                    r.projected_s < 600 ? "" : " -- over the 10-minute target");
    std::printf("peak memory: %s\n", CaseMemory::kind(device).c_str());
    write_json(true);
    if (!args.json.empty()) std::printf("wrote %s\n", args.json.c_str());
    if (errors) {
      std::fprintf(stderr, "error: some rows failed (status \"error\" above)\n");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
