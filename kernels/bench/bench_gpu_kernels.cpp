// Micro-benchmark of the CUDA backend's kernels on DenseNet and Inception-ResNet-v2 shapes: achieved
// GB/s for the memory-bound kernels (batch norm, batch norm fused with ReLU, ReLU, add, copy into a concatenation slice, pooling,
// a reduction, binary cross-entropy, Adam over 20M parameters; f32 and bf16 activations) and TFLOP/s for the cuDNN convolutions and cuBLAS GEMMs
// (TF32 on by default), next to the device's peak.
//
//   bench_gpu_kernels [--quick] [-b|--batch N] [--runs N] [--no-tf32]      (--help: the flags, with defaults)
//
// Each row is the median of --runs (default 20) timed runs after 3 warm-up runs, timed with CUDA events
// on the kernels' stream. GB/s counts the minimum traffic: every input read once and every output
// written once (a kernel that reads its input twice, as the batch-norm statistics do, shows that as a
// lower figure). FLOP/s counts 2 * multiply-accumulates of the pass. Peak bandwidth comes from the
// device's attributes (2 * memory clock * bus width); peak FLOP/s is printed only for devices
// identified by name (H100 SXM / H200, H100 PCIe: NVIDIA's dense figures), else "n/a".
// The output is a Markdown table, ready for docs/gpu-validation.md. Without the CUDA backend or
// without a device it prints one line saying so and exits 0.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bench/bench_args.h"

#ifdef ENGINE_WITH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/batchnorm.h"
#include "kernels/conv.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/optimizer.h"
#include "kernels/pool.h"
#endif

namespace {

struct Options {
  bool quick = false;
  int64_t batch = 32;
  int runs = 20;
  bool tf32 = true;
};

Options parse(int argc, char** argv) {
  Options o;
  bool no_tf32 = false;
  CLI::App app("Micro-benchmark of the CUDA backend's kernels on DenseNet and Inception-ResNet-v2 shapes "
               "(a Markdown table).",
               "bench_gpu_kernels");
  app.set_help_flag("-h,--help", "this text");
  app.add_flag("--quick", o.quick, "batch at most 4, at most 5 timed runs");
  kernels::bench::add_count(app, "-b,--batch", o.batch, "images per kernel call");
  kernels::bench::add_count(app, "--runs", o.runs, "timed runs per row (the median is reported)");
  app.add_flag("--no-tf32", no_tf32, "FP32 convolutions and GEMMs without TF32");
  kernels::bench::parse_or_exit(app, argc, argv);
  o.tf32 = !no_tf32;
  if (o.quick) o.batch = std::min<int64_t>(o.batch, 4), o.runs = std::min(o.runs, 5);
  return o;
}

}  // namespace

#ifndef ENGINE_WITH_CUDA

int main(int argc, char** argv) {
  parse(argc, argv);
  std::printf("bench_gpu_kernels: this build has no CUDA backend (configure with -DENGINE_CUDA=ON); "
              "nothing to measure\n");
  return 0;
}

#else

namespace {

namespace kc = kernels::cuda;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

struct Peaks {
  std::string name;
  double bandwidth_gbs = 0;  // from the device attributes
  double tf32_tflops = 0, fp32_tflops = 0, bf16_tflops = 0;  // 0: unknown
  std::string flops_source;
};

Peaks device_peaks() {
  Peaks p;
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  p.name = prop.name;
  int clock_khz = 0, bus_bits = 0;
  check(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device), "memory clock");
  check(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device), "bus width");
  p.bandwidth_gbs = 2.0 * double(clock_khz) * 1e3 * double(bus_bits) / 8.0 / 1e9;
  const std::string name = prop.name;
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H200") || (has("H100") && (has("SXM") || has("HBM3")))) {
    p.bf16_tflops = 989, p.tf32_tflops = 495, p.fp32_tflops = 67;
    p.flops_source = "H100 SXM / H200 dense spec";
  } else if (has("H100") && has("PCIe")) {
    p.bf16_tflops = 756, p.tf32_tflops = 378, p.fp32_tflops = 51;
    p.flops_source = "H100 PCIe dense spec";
  }
  return p;
}

// A device buffer of floats, set to a constant.
struct Buffer {
  float* ptr = nullptr;
  int64_t size = 0;
  Buffer(int64_t n, float value) : size(n) {
    ptr = static_cast<float*>(kc::allocate(size_t(n) * sizeof(float), "benchmark buffer"));
    kc::fill({ptr, n, 1, 1}, value);
  }
  ~Buffer() { kc::release(ptr); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// A device buffer of bf16 values, set to a constant (rounded once).
struct Bf16Buffer {
  void* ptr = nullptr;
  int64_t size = 0;
  Bf16Buffer(int64_t n, float value) : size(n) {
    ptr = kc::allocate(size_t(n) * 2, "benchmark buffer");
    kc::fill(view(n, 1, 1), value);
  }
  ~Bf16Buffer() { kc::release(ptr); }
  Bf16Buffer(const Bf16Buffer&) = delete;
  Bf16Buffer& operator=(const Bf16Buffer&) = delete;
  // [rows, cols] with row stride ld, from element `offset` on.
  kernels::MatrixView view(int64_t rows, int64_t cols, int64_t ld, int64_t offset = 0) const {
    return {static_cast<uint16_t*>(ptr) + offset, rows, cols, ld, kernels::DType::bf16};
  }
};

double median_ms(const std::function<void()>& f, int runs) {
  cudaStream_t stream = static_cast<cudaStream_t>(kc::current_stream());
  for (int i = 0; i < 3; ++i) f();  // warm-up: algorithm choice, allocator, caches
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<float> times;
  for (int i = 0; i < runs; ++i) {
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    f();
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return double(times[times.size() / 2]);
}

struct Bench {
  Options options;
  Peaks peaks;

  void memory_row(const char* name, const std::string& shape, double bytes,
                  const std::function<void()>& f) {
    const double ms = median_ms(f, options.runs);
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf("| %-34s | %-30s | %9.3f | %8.0f GB/s | %7.1f%% |\n", name, shape.c_str(), ms, gbs,
                100.0 * gbs / peaks.bandwidth_gbs);
    std::fflush(stdout);
  }

  void compute_row(const char* name, const std::string& shape, double flops,
                   const std::function<void()>& f, bool tf32) {
    const double ms = median_ms(f, options.runs);
    const double tflops = flops / (ms * 1e-3) / 1e12;
    const double peak = tf32 ? peaks.tf32_tflops : peaks.fp32_tflops;
    char percent[32] = "n/a";
    if (peak > 0) std::snprintf(percent, sizeof(percent), "%.1f%%", 100.0 * tflops / peak);
    std::printf("| %-34s | %-30s | %9.3f | %6.1f TFLOP/s | %8s |\n", name, shape.c_str(), ms, tflops,
                percent);
    std::fflush(stdout);
  }
};

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t v : d) s += (s.empty() ? "" : "x") + std::to_string(v);
  return s;
}

kernels::Conv2dGeometry conv(int64_t batch, int64_t h, int64_t w, int64_t in_c, int64_t out_c,
                             int64_t kh, int64_t kw, int64_t sh, int64_t pt, int64_t pb, int64_t pl,
                             int64_t pr) {
  kernels::Conv2dGeometry g;
  g.batch = batch, g.in_h = h, g.in_w = w, g.in_c = in_c, g.out_c = out_c, g.kernel_h = kh,
  g.kernel_w = kw, g.stride_h = sh, g.stride_w = sh, g.pad_top = pt, g.pad_bottom = pb,
  g.pad_left = pl, g.pad_right = pr;
  return g;
}

void run(const Options& options) {
  Bench b{options, device_peaks()};
  kc::set_allow_tf32(options.tf32);
  const int64_t N = options.batch;
  std::printf("# bench_gpu_kernels\n\n");
  std::printf("device: %s; peak memory bandwidth %.0f GB/s (2 x memory clock x bus width)\n",
              kc::device_description(0).c_str(), b.peaks.bandwidth_gbs);
  if (b.peaks.tf32_tflops > 0)
    std::printf("peak FLOP/s (%s): TF32 %.0f TFLOP/s, FP32 %.0f TFLOP/s, BF16 %.0f TFLOP/s\n",
                b.peaks.flops_source.c_str(), b.peaks.tf32_tflops, b.peaks.fp32_tflops,
                b.peaks.bf16_tflops);
  else
    std::printf("peak FLOP/s: n/a (device not identified by name)\n");
  std::printf("batch %lld, median of %d runs, TF32 %s\n\n", static_cast<long long>(N), options.runs,
              options.tf32 ? "on" : "off");
  std::printf("| %-34s | %-30s | %9s | %13s | %8s |\n", "kernel", "shape", "median ms", "achieved",
              "of peak");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(36, '-').c_str(), std::string(32, '-').c_str(),
              std::string(11, '-').c_str(), std::string(15, '-').c_str(),
              std::string(10, '-').c_str());

  // --- Memory-bound kernels -------------------------------------------------------------------
  {  // DenseNet: 56x56 with a 256-channel concatenation buffer
    const int64_t rows = N * 56 * 56, C = 256;
    const double n = double(rows * C) * sizeof(float);
    const std::string shape = dims({N, 56, 56, C});
    Buffer x(rows * C, 0.5f), y(rows * C, 0.0f), dy(rows * C, 0.25f), dx(rows * C, 0.0f);
    Buffer gamma(C, 1.0f), beta(C, 0.0f), mean(C, 0.0f), invstd(C, 1.0f), rm(C, 0.0f), rv(C, 1.0f),
        dgamma(C, 0.0f), dbeta(C, 0.0f);
    b.memory_row("batch_norm_forward_training", shape, 2 * n, [&] {
      kc::batch_norm_forward_training({x.ptr, rows, C, C}, {y.ptr, rows, C, C},
                                      {gamma.ptr, beta.ptr}, {mean.ptr, invstd.ptr, rm.ptr, rv.ptr},
                                      {1e-3f, 0.01f, false});
    });
    b.memory_row("batch_norm_forward_eval", shape, 2 * n, [&] {
      kc::batch_norm_forward_eval({x.ptr, rows, C, C}, {y.ptr, rows, C, C},
                                  {gamma.ptr, beta.ptr, rm.ptr, rv.ptr}, {1e-3f});
    });
    b.memory_row("batch_norm_backward_training", shape, 3 * n, [&] {
      kc::batch_norm_backward_training({x.ptr, rows, C, C}, {dy.ptr, rows, C, C},
                                       {gamma.ptr, nullptr, nullptr, nullptr, mean.ptr, invstd.ptr},
                                       {dx.ptr, rows, C, C}, false, {dgamma.ptr, dbeta.ptr});
    });
    // Fused with the ReLU after it (minimum traffic as the unfused rows; the statistics' pass reads x once
    // more, the backward's two passes read x and dy twice): forward 3 passes of traffic replace BN's 3
    // plus ReLU's 2; backward 5 replace BN's 5 plus ReLU's 3. Napkin at 2.5 TB/s streaming: forward
    // 2n / (3n / 2.5 TB/s) = 1.67 TB/s on this row's scale, backward 3n / (5n / 2.5) = 1.5 TB/s.
    b.memory_row("batch_norm_relu_forward_training", shape, 2 * n, [&] {
      kc::batch_norm_relu_forward_training({x.ptr, rows, C, C}, {y.ptr, rows, C, C}, {gamma.ptr, beta.ptr},
                                           {mean.ptr, invstd.ptr, rm.ptr, rv.ptr}, {1e-3f, 0.01f, false});
    });
    b.memory_row("batch_norm_relu_forward_eval", shape, 2 * n, [&] {
      kc::batch_norm_relu_forward_eval({x.ptr, rows, C, C}, {y.ptr, rows, C, C},
                                       {gamma.ptr, beta.ptr, rm.ptr, rv.ptr}, {1e-3f});
    });
    b.memory_row("batch_norm_relu_backward_training", shape, 3 * n, [&] {
      kc::batch_norm_relu_backward_training({x.ptr, rows, C, C}, {dy.ptr, rows, C, C},
                                            {gamma.ptr, beta.ptr, nullptr, nullptr, mean.ptr, invstd.ptr},
                                            {dx.ptr, rows, C, C}, false, {dgamma.ptr, dbeta.ptr});
    });
    // The statistics' scalar path (C not a multiple of 4: one float per load instead of float4).
    b.memory_row("batch_norm_forward_training (C=255)", dims({N, 56, 56, 255}) + " of 256", 2 * n * 255 / 256,
                 [&] {
                   kc::batch_norm_forward_training({x.ptr, rows, 255, C}, {y.ptr, rows, 255, C},
                                                   {gamma.ptr, beta.ptr}, {mean.ptr, invstd.ptr, rm.ptr, rv.ptr},
                                                   {1e-3f, 0.01f, false});
                 });
    b.memory_row("relu_forward", shape, 2 * n, [&] {
      kc::relu_forward({x.ptr, rows, C, C}, {y.ptr, rows, C, C});
    });
    b.memory_row("relu_backward", shape, 3 * n, [&] {
      kc::relu_backward({x.ptr, rows, C, C}, {dy.ptr, rows, C, C}, {dx.ptr, rows, C, C}, false);
    });
    b.memory_row("add", shape, 3 * n, [&] {
      kc::add({x.ptr, rows, C, C}, {dy.ptr, rows, C, C}, {y.ptr, rows, C, C});
    });
    b.memory_row("copy 32 channels into a slice", dims({N, 56, 56, 32}) + " of 256",
                 2.0 * double(rows * 32) * sizeof(float), [&] {
                   kc::copy({dy.ptr, rows, 32, 32}, {y.ptr + 224, rows, 32, C}, false);
                 });
    b.memory_row("sum (double, deterministic)", shape, n, [&] { kc::sum({x.ptr, rows, C, C}); });
    b.memory_row("column_sums (bias gradient)", shape, n, [&] {
      kc::column_sums({x.ptr, rows, C, C}, dgamma.ptr, false);
    });
    // The element path of the maps (an odd row stride: no 16-byte loads), beside add's 16-byte one.
    b.memory_row("add (ld 255: element path)", dims({N, 56, 56, 254}) + " of 255", 3 * n * 254 / 256, [&] {
      kc::add({x.ptr, rows, 254, 255}, {dy.ptr, rows, 254, 255}, {y.ptr, rows, 254, 255});
    });

    // bf16 activations, native (half the bytes of the f32 rows above: at the same GB/s, half the time).
    // Napkin at ~2.5 TB/s: relu_forward N=32 moves 2 x 51 MB = 0.10 GB in ~0.04 ms; batch-norm training
    // forward reads x twice and writes y (3 x 51 MB) in ~0.06 ms, its backward 5 passes in ~0.1 ms.
    const double h = double(rows * C) * 2;
    Bf16Buffer x16(rows * C, 0.5f), y16(rows * C, 0.0f), dy16(rows * C, 0.25f), dx16(rows * C, 0.0f);
    b.memory_row("relu_forward bf16", shape, 2 * h, [&] { kc::relu_forward(x16.view(rows, C, C), y16.view(rows, C, C)); });
    b.memory_row("relu_backward bf16", shape, 3 * h, [&] {
      kc::relu_backward(x16.view(rows, C, C), dy16.view(rows, C, C), dx16.view(rows, C, C), false);
    });
    b.memory_row("add bf16", shape, 3 * h, [&] {
      kc::add(x16.view(rows, C, C), dy16.view(rows, C, C), y16.view(rows, C, C));
    });
    b.memory_row("scale bf16 (accumulate)", shape, 3 * h, [&] {
      kc::scale(0.5f, x16.view(rows, C, C), y16.view(rows, C, C), true);
    });
    b.memory_row("copy 32 channels into a slice bf16", dims({N, 56, 56, 32}) + " of 256",
                 2.0 * double(rows * 32) * 2, [&] {
                   kc::copy(dy16.view(rows, 32, 32), y16.view(rows, 32, C, 224), false);
                 });
    b.memory_row("batch_norm_forward_training bf16", shape, 2 * h, [&] {
      kc::batch_norm_forward_training(x16.view(rows, C, C), y16.view(rows, C, C), {gamma.ptr, beta.ptr},
                                      {mean.ptr, invstd.ptr, rm.ptr, rv.ptr}, {1e-3f, 0.01f, false});
    });
    b.memory_row("batch_norm_forward_eval bf16", shape, 2 * h, [&] {
      kc::batch_norm_forward_eval(x16.view(rows, C, C), y16.view(rows, C, C), {gamma.ptr, beta.ptr, rm.ptr, rv.ptr},
                                  {1e-3f});
    });
    b.memory_row("batch_norm_backward_training bf16", shape, 3 * h, [&] {
      kc::batch_norm_backward_training(x16.view(rows, C, C), dy16.view(rows, C, C),
                                       {gamma.ptr, nullptr, nullptr, nullptr, mean.ptr, invstd.ptr},
                                       dx16.view(rows, C, C), false, {dgamma.ptr, dbeta.ptr});
    });
    b.memory_row("batch_norm_backward_eval bf16", shape, 3 * h, [&] {
      kc::batch_norm_backward_eval(x16.view(rows, C, C), dy16.view(rows, C, C),
                                   {gamma.ptr, beta.ptr, rm.ptr, rv.ptr}, {1e-3f}, dx16.view(rows, C, C), false,
                                   {dgamma.ptr, dbeta.ptr});
    });
    b.memory_row("batch_norm_relu_forward_training bf16", shape, 2 * h, [&] {
      kc::batch_norm_relu_forward_training(x16.view(rows, C, C), y16.view(rows, C, C), {gamma.ptr, beta.ptr},
                                           {mean.ptr, invstd.ptr, rm.ptr, rv.ptr}, {1e-3f, 0.01f, false});
    });
    b.memory_row("batch_norm_relu_forward_eval bf16", shape, 2 * h, [&] {
      kc::batch_norm_relu_forward_eval(x16.view(rows, C, C), y16.view(rows, C, C),
                                       {gamma.ptr, beta.ptr, rm.ptr, rv.ptr}, {1e-3f});
    });
    b.memory_row("batch_norm_relu_backward_training bf16", shape, 3 * h, [&] {
      kc::batch_norm_relu_backward_training(x16.view(rows, C, C), dy16.view(rows, C, C),
                                            {gamma.ptr, beta.ptr, nullptr, nullptr, mean.ptr, invstd.ptr},
                                            dx16.view(rows, C, C), false, {dgamma.ptr, dbeta.ptr});
    });
  }
  {  // Binary cross-entropy over 1M logits (bandwidth, not the batch-size latency): f32, and bf16 logits
     // and gradient beside f32 targets (the mixed-precision head). Backward reads z, t, w, writes dz.
    const int64_t n = 1 << 20;
    Buffer z(n, 0.5f), t(n, 1.0f), w(n, 1.0f), dz(n, 0.0f), dloss(1, 1.0f);
    Bf16Buffer z16(n, 0.5f), dz16(n, 0.0f);
    const std::string shape = std::to_string(n) + " logits";
    b.memory_row("bce_with_logits_backward_from", shape, 4.0 * double(n) * 4, [&] {
      kc::bce_with_logits_backward_from({z.ptr, n, 1, 1}, {t.ptr, n, 1, 1}, {w.ptr, n, 1, 1}, dloss.ptr,
                                        {dz.ptr, n, 1, 1}, false);
    });
    b.memory_row("bce_with_logits_backward_from bf16", shape, double(n) * (2 + 4 + 4 + 2), [&] {
      kc::bce_with_logits_backward_from(z16.view(n, 1, 1), {t.ptr, n, 1, 1}, {w.ptr, n, 1, 1}, dloss.ptr,
                                        dz16.view(n, 1, 1), false);
    });
    b.memory_row("bce_with_logits_forward_to bf16", shape, double(n) * (2 + 4 + 4), [&] {
      kc::bce_with_logits_forward_to(z16.view(n, 1, 1), {t.ptr, n, 1, 1}, {w.ptr, n, 1, 1}, dz.ptr);
    });
  }
  {  // Pools: DenseNet stem max pool, transition average pool; global average pool
    kernels::Pool2dGeometry g;
    g.batch = N, g.in_h = 112, g.in_w = 112, g.channels = 64, g.kernel_h = g.kernel_w = 3;
    g.stride_h = g.stride_w = 2, g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 1;
    const int64_t in = N * 112 * 112 * 64, out = N * g.out_h() * g.out_w() * 64;
    Buffer x(in, 0.5f), dx(in, 0.0f), y(out, 0.0f), dy(out, 0.25f);
    const std::string shape = dims({N, 112, 112, 64}) + " 3x3 s2";
    b.memory_row("max_pool2d_forward", shape, double(in + out) * 4, [&] {
      kc::max_pool2d_forward(g, {x.ptr, g.input_rows(), g.channels, 64},
                             {y.ptr, g.output_rows(), g.channels, 64});
    });
    b.memory_row("max_pool2d_backward (recompute)", shape, double(2 * in + out) * 4, [&] {
      kc::max_pool2d_backward(g, {x.ptr, g.input_rows(), g.channels, 64},
                              {dy.ptr, g.output_rows(), g.channels, 64},
                              {dx.ptr, g.input_rows(), g.channels, 64}, false);
    });
    // Training's pair: the forward also writes an int32 arg-max per output (in + 2 out), the backward
    // reads it and dy once and writes dx (in + 2 out). Napkin at ~2.5 TB/s: N=32 moves 103 + 2 x 26 MB =
    // 0.155 GB in ~0.065 ms each (the recomputing backward above reads x's 9 cells per window again).
    Buffer argmax(out, 0.0f);
    auto* const cells = reinterpret_cast<int32_t*>(argmax.ptr);
    b.memory_row("max_pool2d_forward_argmax", shape, double(in + 2 * out) * 4, [&] {
      kc::max_pool2d_forward_argmax(g, {x.ptr, g.input_rows(), g.channels, 64},
                                    {y.ptr, g.output_rows(), g.channels, 64}, cells);
    });
    b.memory_row("max_pool2d_backward_argmax", shape, double(in + 2 * out) * 4, [&] {
      kc::max_pool2d_backward_argmax(g, cells, {dy.ptr, g.output_rows(), g.channels, 64},
                                     {dx.ptr, g.input_rows(), g.channels, 64}, false);
    });
    Bf16Buffer x16(in, 0.5f), dx16(in, 0.0f), y16(out, 0.0f), dy16(out, 0.25f);
    b.memory_row("max_pool2d_forward_argmax bf16", shape, double(in + out) * 2 + double(out) * 4, [&] {
      kc::max_pool2d_forward_argmax(g, x16.view(g.input_rows(), 64, 64), y16.view(g.output_rows(), 64, 64), cells);
    });
    b.memory_row("max_pool2d_backward_argmax bf16", shape, double(in + out) * 2 + double(out) * 4, [&] {
      kc::max_pool2d_backward_argmax(g, cells, dy16.view(g.output_rows(), 64, 64), dx16.view(g.input_rows(), 64, 64),
                                     false);
    });
  }
  {
    kernels::Pool2dGeometry g;
    g.batch = N, g.in_h = 56, g.in_w = 56, g.channels = 128, g.kernel_h = g.kernel_w = 2;
    g.stride_h = g.stride_w = 2;
    const int64_t in = N * 56 * 56 * 128, out = N * 28 * 28 * 128;
    Buffer x(in, 0.5f), dx(in, 0.0f), y(out, 0.0f), dy(out, 0.25f);
    const std::string shape = dims({N, 56, 56, 128}) + " 2x2 s2";
    b.memory_row("avg_pool2d_forward", shape, double(in + out) * 4, [&] {
      kc::avg_pool2d_forward(g, true, {x.ptr, g.input_rows(), g.channels, 128},
                             {y.ptr, g.output_rows(), g.channels, 128});
    });
    b.memory_row("avg_pool2d_backward (gather)", shape, double(in + out) * 4, [&] {
      kc::avg_pool2d_backward(g, true, {dy.ptr, g.output_rows(), g.channels, 128},
                              {dx.ptr, g.input_rows(), g.channels, 128}, false);
    });
    Buffer gx(N * 49 * 1920, 0.5f), gy(N * 1920, 0.0f);
    b.memory_row("global_avg_pool_forward", dims({N, 7, 7, 1920}), double(N * 50 * 1920) * 4, [&] {
      kc::global_avg_pool_forward(49, {gx.ptr, N * 49, 1920, 1920}, {gy.ptr, N, 1920, 1920});
    });
  }
  {  // Adam over a 20M-parameter arena (DenseNet-201 has 18M, Inception-ResNet-v2 54M)
    const int64_t n = options.quick ? 2000000 : 20000000;
    Buffer p(n, 0.1f), g(n, 0.01f), m(n, 0.0f), v(n, 0.001f);
    kernels::AdamHyper h;
    int64_t step = 1;
    b.memory_row("adam_update (pytorch)", std::to_string(n) + " params", 7.0 * double(n) * 4,
                 [&] { kc::adam_update(n, p.ptr, g.ptr, m.ptr, v.ptr, step++, h); });
  }

  // --- Convolutions (cuDNN) and GEMMs (cuBLAS) ---------------------------------------------------
  struct ConvRow {
    const char* name;
    kernels::Conv2dGeometry g;
  };
  const std::vector<ConvRow> convs = {
      {"densenet 1x1 56x56 128->128", conv(N, 56, 56, 128, 128, 1, 1, 1, 0, 0, 0, 0)},
      {"densenet 3x3 56x56 128->32", conv(N, 56, 56, 128, 32, 3, 3, 1, 1, 1, 1, 1)},
      {"densenet 1x1 7x7 1920->128", conv(N, 7, 7, 1920, 128, 1, 1, 1, 0, 0, 0, 0)},
      {"densenet 3x3 7x7 128->32", conv(N, 7, 7, 128, 32, 3, 3, 1, 1, 1, 1, 1)},
      {"irv2 stem 3x3 s2 299 3->32", conv(N, 299, 299, 3, 32, 3, 3, 2, 0, 0, 0, 0)},
      {"irv2 1x7 17x17 128->160", conv(N, 17, 17, 128, 160, 1, 7, 1, 0, 0, 3, 3)},
      {"irv2 7x1 17x17 160->192", conv(N, 17, 17, 160, 192, 7, 1, 1, 3, 3, 0, 0)},
      {"irv2 3x3 s2 valid 35->17 256->384", conv(N, 35, 35, 256, 384, 3, 3, 2, 0, 0, 0, 0)},
      {"5x5 17x17 48->64", conv(N, 17, 17, 48, 64, 5, 5, 1, 2, 2, 2, 2)},
  };
  for (const ConvRow& row : convs) {
    if (options.quick && &row != &convs.front() && &row != &convs[1]) continue;
    const kernels::Conv2dGeometry& g = row.g;
    const int64_t x_n = g.batch * g.in_h * g.in_w * g.in_c;
    const int64_t y_n = g.batch * g.out_h() * g.out_w() * g.out_c;
    const int64_t w_n = g.out_c * g.kernel_h * g.kernel_w * g.in_c;
    Buffer x(x_n, 0.5f), y(y_n, 0.0f), w(w_n, 0.01f), bias(g.out_c, 0.1f), dx(x_n, 0.0f),
        dw(w_n, 0.0f), db(g.out_c, 0.0f);
    const double flops = 2.0 * g.macs();
    const std::string shape = dims({g.batch, g.in_h, g.in_w, g.in_c}) + " k" + dims({g.kernel_h, g.kernel_w});
    b.compute_row((std::string(row.name) + " fwd").c_str(), shape, flops,
                  [&] {
                    kc::conv2d_forward(g, {x.ptr, g.input_rows(), g.in_c, g.in_c}, w.ptr, bias.ptr,
                                       {y.ptr, g.output_rows(), g.out_c, g.out_c});
                  },
                  options.tf32);
    b.compute_row((std::string(row.name) + " bwd data").c_str(), shape, flops,
                  [&] {
                    kc::conv2d_backward_data(g, {y.ptr, g.output_rows(), g.out_c, g.out_c}, w.ptr,
                                             {dx.ptr, g.input_rows(), g.in_c, g.in_c}, false);
                  },
                  options.tf32);
    b.compute_row((std::string(row.name) + " bwd filter").c_str(), shape, flops,
                  [&] {
                    kc::conv2d_backward_filter(g, {x.ptr, g.input_rows(), g.in_c, g.in_c},
                                               {y.ptr, g.output_rows(), g.out_c, g.out_c}, dw.ptr,
                                               db.ptr, false);
                  },
                  options.tf32);
  }
  for (bool tf32 : {true, false}) {
    if (tf32 && !options.tf32) continue;
    const int64_t s = options.quick ? 1024 : 4096;
    kc::set_allow_tf32(tf32);
    Buffer a(s * s, 0.5f), bm(s * s, 0.25f), c(s * s, 0.0f);
    b.compute_row(tf32 ? "gemm TF32" : "gemm FP32 (TF32 off)", dims({s, s, s}), 2.0 * double(s) * s * s,
                  [&] { kc::gemm(false, false, s, s, s, 1.0f, a.ptr, s, bm.ptr, s, 0.0f, c.ptr, s); },
                  tf32);
  }
  kc::set_allow_tf32(options.tf32);
  {  // A classifier head: Inception-ResNet-v2's 1536 features -> 1000 classes
    Buffer x(N * 1536, 0.5f), w(1000 * 1536, 0.01f), y(N * 1000, 0.0f);
    b.compute_row("linear 1536->1000 fwd", dims({N, 1536, 1000}), 2.0 * double(N) * 1536 * 1000,
                  [&] { kc::gemm(false, true, N, 1000, 1536, 1.0f, x.ptr, 1536, w.ptr, 1536, 0.0f, y.ptr, 1000); },
                  options.tf32);
  }
  const kc::MemoryStats stats = kc::memory_stats();
  std::printf("\nallocator: peak %.1f MiB in use, %.1f MiB cached, %zu cudaMalloc calls\n",
              double(stats.peak_in_use) / (1 << 20), double(stats.cached) / (1 << 20),
              stats.device_mallocs);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options options = parse(argc, argv);
    std::string reason;
    if (kc::device_count(&reason) == 0) {
      std::printf("bench_gpu_kernels: no CUDA device (%s); nothing to measure\n", reason.c_str());
      return 0;
    }
    run(options);
    kc::stream_synchronize();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu_kernels: %s\n", e.what());
    return 1;
  }
}

#endif
