// Throughput of the CPU kernels: raw SGEMM, and convolution forward / backward-data /
// backward-filter on DenseNet-201 and Inception-ResNet-v2 layer shapes, plus the pooling kernels.
//
// GFLOP/s = 2 * multiply-accumulates / seconds (the same count for the three convolution passes),
// timed as the median of several runs after a warm-up run. Uses only the kernels library.
//
//   bench_cpu_kernels [-j|--threads N] [-b|--batch N] [--reps N] [--quick]     (--help: the flags)
//     --threads  threads of the OpenMP loops and OpenBLAS (default: all)
//     --batch    images per convolution (default 8)
//     --reps     timed runs per measurement (default 5)
//     --quick    tiny sizes and 1 timed run: a smoke test that finishes in about a second
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/bench/bench_args.h"
#include "kernels/conv.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu_info.h"
#include "kernels/gemm.h"
#include "kernels/pool.h"

namespace {

struct Options {
  int threads = 0;  // 0: the default of the kernels (all cores)
  int64_t batch = 8;
  int reps = 5;
  bool quick = false;
};

Options parse(int argc, char** argv) {
  Options o;
  CLI::App app("Throughput of the CPU kernels: SGEMM, convolutions and pooling on the nets' layer shapes.",
               "bench_cpu_kernels");
  app.set_help_flag("-h,--help", "this text");
  kernels::bench::add_count(app, "-j,--threads", o.threads, "threads of the OpenMP loops and OpenBLAS", "all cores");
  kernels::bench::add_count(app, "-b,--batch", o.batch, "images per convolution");
  kernels::bench::add_count(app, "--reps", o.reps, "timed runs per measurement");
  app.add_flag("--quick", o.quick, "tiny sizes and 1 timed run: a smoke test that finishes in about a second");
  kernels::bench::parse_or_exit(app, argc, argv);
  if (o.quick) {
    o.batch = std::min<int64_t>(o.batch, 1);
    o.reps = 1;
  }
  return o;
}

// Median wall time in seconds of `reps` runs of f after one warm-up run.
double median_seconds(const std::function<void()>& f, int reps) {
  f();
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    f();
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::vector<float> random_vector(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> v(size_t(std::max<int64_t>(n, 1)));
  for (float& x : v) x = uniform(rng);
  return v;
}

// The machine and its single-precision peak, estimated from /proc/cpuinfo (kernels/cpu_info.h).
void print_machine(int threads) {
  const kernels::cpu::CpuInfo cpu = kernels::cpu::cpu_info();
  const std::string& model = cpu.model;
  const double mhz = cpu.mhz;
  const int flop_per_cycle = cpu.flop_per_cycle;
  const unsigned cores = std::thread::hardware_concurrency();
  std::printf("cpu: %s, %u logical cores, %.0f MHz (from /proc/cpuinfo)\n", model.c_str(), cores,
              mhz);
  std::printf("GEMM: %s\n", cpu.gemm_library.c_str());
  std::printf("threads used: %d", threads);
  for (const char* var :
       {"OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE"})
    if (const char* value = std::getenv(var)) std::printf("  %s=%s", var, value);
  std::printf("\n");
  if (mhz > 0.0) {
    const double per_core = cpu.peak_gflops_per_core();
    std::printf(
        "peak estimate (not measured): %.1f GHz * %d FLOP/cycle = %.0f GFLOP/s per core, "
        "%.0f GFLOP/s on %d threads (at the clock /proc/cpuinfo reports; turbo can exceed it)%s\n",
        mhz * 1e-3, flop_per_cycle, per_core, per_core * threads, threads,
        cpu.avx512 ? " (AVX-512 with two 512-bit FMA units would double it)" : "");
  }
}

// One product's time through gemm(); where the own AVX-512 kernels are on, also with every product given to
// the BLAS (kernels/gemm.h: use_own_gemm_kernels), for the comparison.
void print_gemm_row(const char* name, int64_t m, int64_t n, int64_t k, bool ta, bool tb, int reps,
                    std::mt19937& rng) {
  const std::vector<float> a = random_vector(m * k, rng), b = random_vector(k * n, rng);
  std::vector<float> c(size_t(m * n));
  const auto time_gemm = [&] {
    return median_seconds(
        [&] {
          kernels::cpu::gemm(ta, tb, m, n, k, 1.0f, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.0f, c.data(), n);
        },
        reps);
  };
  const double flop = 2.0 * double(m) * n * k, seconds = time_gemm();
  std::printf("  %-34s %6lldx%-5lldx%-5lld %c%c %9.2f ms %8.1f GFLOP/s", name, (long long)m, (long long)n,
              (long long)k, ta ? 'T' : 'N', tb ? 'T' : 'N', seconds * 1e3, flop / seconds * 1e-9);
  if (kernels::cpu::own_gemm_kernels()) {
    kernels::cpu::use_own_gemm_kernels(false);
    const double blas_seconds = time_gemm();
    kernels::cpu::use_own_gemm_kernels(true);
    std::printf(" | BLAS %8.1f GFLOP/s, %.2fx", flop / blas_seconds * 1e-9, blas_seconds / seconds);
  }
  std::printf("\n");
}

struct ConvShape {
  const char* name;
  int64_t hw, in_c, out_c, kernel_h, kernel_w, stride, pad_h, pad_w;
};

kernels::Conv2dGeometry conv_geometry(const ConvShape& s, int64_t batch, bool quick) {
  kernels::Conv2dGeometry g;
  g.batch = batch;
  g.in_h = g.in_w = quick ? std::min<int64_t>(s.hw, 9) : s.hw;
  g.in_c = quick ? std::min<int64_t>(s.in_c, 16) : s.in_c;
  g.out_c = quick ? std::min<int64_t>(s.out_c, 16) : s.out_c;
  g.kernel_h = s.kernel_h, g.kernel_w = s.kernel_w;
  g.stride_h = g.stride_w = s.stride;
  g.pad_top = g.pad_bottom = s.pad_h;
  g.pad_left = g.pad_right = s.pad_w;
  return g;
}

// Returns the total time of the three passes (seconds). `label` names the row.
double print_conv_row(const ConvShape& s, const std::string& label, int64_t batch, bool quick, int reps,
                      std::mt19937& rng) {
  const kernels::Conv2dGeometry g = conv_geometry(s, batch, quick);
  const int64_t in_rows = g.batch * g.in_h * g.in_w, out_rows = g.batch * g.out_h() * g.out_w();
  const int64_t k = g.kernel_h * g.kernel_w * g.in_c;
  const std::vector<float> x = random_vector(in_rows * g.in_c, rng);
  const std::vector<float> w = random_vector(g.out_c * k, rng);
  const std::vector<float> bias = random_vector(g.out_c, rng);
  const std::vector<float> dy = random_vector(out_rows * g.out_c, rng);
  std::vector<float> y(size_t(out_rows * g.out_c)), dx(size_t(in_rows * g.in_c));
  std::vector<float> dw(size_t(g.out_c * k)), dbias(size_t(g.out_c));

  const double forward = median_seconds(
      [&] {
        kernels::cpu::conv2d_forward(g, {x.data(), g.input_rows(), g.in_c, g.in_c}, w.data(),
                                     bias.data(), {y.data(), g.output_rows(), g.out_c, g.out_c});
      },
      reps);
  const double backward_data = median_seconds(
      [&] {
        kernels::cpu::conv2d_backward_data(g, {dy.data(), g.output_rows(), g.out_c, g.out_c},
                                           w.data(), {dx.data(), g.input_rows(), g.in_c, g.in_c},
                                           false);
      },
      reps);
  const double backward_filter = median_seconds(
      [&] {
        kernels::cpu::conv2d_backward_filter(g, {x.data(), g.input_rows(), g.in_c, g.in_c},
                                             {dy.data(), g.output_rows(), g.out_c, g.out_c},
                                             dw.data(), dbias.data(), false);
      },
      reps);
  const double flop = 2.0 * g.macs();
  char shape[96];
  std::snprintf(shape, sizeof shape, "%lldx%lldx%lld %lldx%lld/%lld ->%lld", (long long)g.in_h,
                (long long)g.in_w, (long long)g.in_c, (long long)g.kernel_h, (long long)g.kernel_w,
                (long long)g.stride_h, (long long)g.out_c);
  std::printf("  %-28s %-26s %7.2f | %8.2f %7.1f | %8.2f %7.1f | %8.2f %7.1f\n", label.c_str(), shape,
              flop * 1e-9, forward * 1e3, flop / forward * 1e-9, backward_data * 1e3,
              flop / backward_data * 1e-9, backward_filter * 1e3, flop / backward_filter * 1e-9);
  return forward + backward_data + backward_filter;
}

void print_pool_rows(int64_t batch, bool quick, int reps, std::mt19937& rng) {
  auto pool = [&](int64_t hw, int64_t c, int64_t k, int64_t stride, int64_t pad) {
    kernels::Pool2dGeometry g;
    g.batch = batch;
    g.in_h = g.in_w = quick ? std::min<int64_t>(hw, 9) : hw;
    g.channels = quick ? std::min<int64_t>(c, 16) : c;
    g.kernel_h = g.kernel_w = k;
    g.stride_h = g.stride_w = stride;
    g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = pad;
    return g;
  };
  auto row = [&](const char* name, const kernels::Pool2dGeometry& g, bool is_max) {
    const int64_t in_rows = g.batch * g.in_h * g.in_w, out_rows = g.batch * g.out_h() * g.out_w();
    const std::vector<float> x = random_vector(in_rows * g.channels, rng);
    const std::vector<float> dy = random_vector(out_rows * g.channels, rng);
    std::vector<float> y(size_t(out_rows * g.channels)), dx(size_t(in_rows * g.channels));
    const int64_t c = g.channels;
    const double forward = median_seconds(
        [&] {
          if (is_max)
            kernels::cpu::max_pool2d_forward(g, {x.data(), g.input_rows(), g.channels, c},
                                             {y.data(), g.output_rows(), g.channels, c});
          else
            kernels::cpu::avg_pool2d_forward(g, true, {x.data(), g.input_rows(), g.channels, c},
                                             {y.data(), g.output_rows(), g.channels, c});
        },
        reps);
    const double backward = median_seconds(
        [&] {
          if (is_max)
            kernels::cpu::max_pool2d_backward(g, {x.data(), g.input_rows(), g.channels, c},
                                              {dy.data(), g.output_rows(), g.channels, c},
                                              {dx.data(), g.input_rows(), g.channels, c}, false);
          else
            kernels::cpu::avg_pool2d_backward(g, true, {dy.data(), g.output_rows(), g.channels, c},
                                              {dx.data(), g.input_rows(), g.channels, c}, false);
        },
        reps);
    const double bytes = 4.0 * double(in_rows + out_rows) * c;  // read x, write y (once each)
    std::printf("  %-40s %8.2f ms (%5.1f GB/s) %8.2f ms\n", name, forward * 1e3,
                bytes / forward * 1e-9, backward * 1e3);
  };
  std::printf("\npooling, batch %lld                          forward (in+out bytes)  backward\n",
              (long long)batch);
  row("max 3x3/2 pad 1, 112x112x64 (DenseNet)", pool(112, 64, 3, 2, 1), true);
  row("max 3x3/2 valid, 35x35x320 (IRv2)", pool(35, 320, 3, 2, 0), true);
  row("avg 2x2/2, 56x56x128 (DenseNet trans.)", pool(56, 128, 2, 2, 0), false);
  row("avg 3x3/1 pad 1, 35x35x192 (IRv2)", pool(35, 192, 3, 1, 1), false);

  const int64_t hw = 49, c = quick ? 16 : 1920;
  const std::vector<float> x = random_vector(batch * hw * c, rng);
  std::vector<float> y(size_t(batch * c)), dx(size_t(batch * hw * c));
  const double forward = median_seconds(
      [&] {
        kernels::cpu::global_avg_pool_forward(hw, {x.data(), batch * hw, c, c},
                                              {y.data(), batch, c, c});
      },
      reps);
  const double backward = median_seconds(
      [&] {
        kernels::cpu::global_avg_pool_backward(hw, {y.data(), batch, c, c},
                                               {dx.data(), batch * hw, c, c}, false);
      },
      reps);
  std::printf("  %-40s %8.2f ms (%5.1f GB/s) %8.2f ms\n", "global avg 7x7x1920 (DenseNet)",
              forward * 1e3, 4.0 * double(batch) * (hw + 1) * c / forward * 1e-9, backward * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  if (opt.threads > 0) kernels::cpu::set_num_threads(opt.threads);
  const int threads = kernels::cpu::num_threads();
  const auto start = std::chrono::steady_clock::now();
  print_machine(threads);
  std::printf("timing: median of %d runs after 1 warm-up; GFLOP/s = 2 * MACs / time%s\n\n",
              opt.reps, opt.quick ? " (--quick: tiny sizes, numbers meaningless)" : "");
  std::mt19937 rng(42);

  const int64_t b = opt.batch, q = opt.quick ? 1 : 0;
  const int64_t s1024 = q ? 64 : 1024, rows56 = b * (q ? 81 : 3136);
  std::printf("SGEMM (kernels::cpu::gemm, row-major)   m     x n    x k     op\n");
  print_gemm_row("square", s1024, s1024, s1024, false, false, opt.reps, rng);
  print_gemm_row("1x1 128->32 @56 (x * w^T)", rows56, 32, 128, false, true, opt.reps, rng);
  print_gemm_row("1x1 256->128 @56 (x * w^T)", rows56, 128, 256, false, true, opt.reps, rng);
  print_gemm_row("3x3 im2col 128->32 @56 (p * w^T)", rows56, 32, 1152, false, true, opt.reps, rng);
  print_gemm_row("3x3 dW 128->32 @56 (dy^T * p)", 32, 1152, rows56, true, false, opt.reps, rng);
  print_gemm_row("3x3 dpatch 128->32 @56 (dy * w)", rows56, 1152, 32, false, false, opt.reps, rng);
  const int64_t rows35 = b * (q ? 25 : 1225), rows17 = b * (q ? 9 : 289), rows8 = b * (q ? 4 : 64);
  print_gemm_row("IRv2 1x1 320->32 @35 (x * w^T)", rows35, 32, 320, false, true, opt.reps, rng);
  print_gemm_row("IRv2 1x1 320->32 @35 (dy * w)", rows35, 320, 32, false, false, opt.reps, rng);
  print_gemm_row("IRv2 1x1 320->32 @35 (dy^T * x)", 32, 320, rows35, true, false, opt.reps, rng);
  print_gemm_row("IRv2 1x1 1088->192 @17 (x * w^T)", rows17, 192, 1088, false, true, opt.reps, rng);
  print_gemm_row("IRv2 1x1 1088->192 @17 (dy * w)", rows17, 1088, 192, false, false, opt.reps, rng);
  print_gemm_row("IRv2 1x1 1088->192 @17 (dy^T * x)", 192, 1088, rows17, true, false, opt.reps, rng);
  print_gemm_row("IRv2 1x1 2080->192 @8 (x * w^T)", rows8, 192, 2080, false, true, opt.reps, rng);
  print_gemm_row("IRv2 1x1 2080->192 @8 (dy^T * x)", 192, 2080, rows8, true, false, opt.reps, rng);

  const ConvShape shapes[] = {
      // DenseNet-201
      {"DN stem 7x7/2", 224, 3, 64, 7, 7, 2, 3, 3},
      {"DN dense 1x1 (block 1)", 56, 256, 128, 1, 1, 1, 0, 0},
      {"DN dense 3x3 (block 1)", 56, 128, 32, 3, 3, 1, 1, 1},
      {"DN dense 3x3 (block 2)", 28, 128, 32, 3, 3, 1, 1, 1},
      {"DN dense 3x3 (block 3)", 14, 128, 32, 3, 3, 1, 1, 1},
      {"DN transition 1x1 (2)", 28, 512, 256, 1, 1, 1, 0, 0},
      {"DN dense 1x1 (block 3)", 14, 1024, 128, 1, 1, 1, 0, 0},
      {"DN dense 3x3 (block 4)", 7, 128, 32, 3, 3, 1, 1, 1},
      // Inception-ResNet-v2
      {"IRv2 block17 1x7", 17, 128, 160, 1, 7, 1, 0, 3},
      {"IRv2 block17 7x1", 17, 160, 192, 7, 1, 1, 3, 0},
      {"IRv2 block8 1x3", 8, 192, 224, 1, 3, 1, 0, 1},
      {"IRv2 block8 3x1", 8, 224, 256, 3, 1, 1, 1, 0},
      {"IRv2 reduction-A 3x3/2 valid", 35, 256, 384, 3, 3, 2, 0, 0},
      {"IRv2 stem 3x3 same", 147, 32, 64, 3, 3, 1, 1, 1},
      {"IRv2 stem 3x3 valid", 73, 80, 192, 3, 3, 1, 0, 0},
      {"IRv2 block35 3x3", 35, 32, 48, 3, 3, 1, 1, 1},
      {"IRv2 block35 3x3 (2)", 35, 48, 64, 3, 3, 1, 1, 1},
  };
  std::printf(
      "\nconvolution, batch %lld (NHWC, OHWI)                 GFLOP |  forward ms  GFLOP/s | "
      "bwd-data ms GFLOP/s | bwd-filt ms GFLOP/s\n",
      (long long)b);
  // Shapes that run as Winograd (F(2x2, 3x3), or along one axis) get a second row with the im2col kernels, for
  // comparison (GFLOP/s counts the direct convolution's multiply-adds, so Winograd rows can pass the machine's
  // peak).
  double conv_total = 0.0;
  for (const ConvShape& s : shapes) {
    conv_total += print_conv_row(s, s.name, b, opt.quick, opt.reps, rng);
    const kernels::Conv2dGeometry g = conv_geometry(s, b, opt.quick);
    if (!kernels::cpu::winograd_applies(g) && !kernels::cpu::winograd_1d_applies(g)) continue;
    kernels::cpu::set_winograd_enabled(false);
    print_conv_row(s, "  same, im2col", b, opt.quick, opt.reps, rng);
    kernels::cpu::set_winograd_enabled(true);
  }
  std::printf("  sum of medians over the %zu shapes (forward + both backwards): %.1f ms\n",
              sizeof shapes / sizeof shapes[0], conv_total * 1e3);

  print_pool_rows(b, opt.quick, opt.reps, rng);
  std::printf("\nbench wall time: %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}
