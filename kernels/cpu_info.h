// What the CPU benchmarks say about the machine: model, clock and an estimate of the single-precision
// peak, read from /proc/cpuinfo (clock x FLOP per cycle; not measured: turbo can exceed it).
//   FLOP/cycle: two FMA pipes of 8 floats = 32 with AVX2 + FMA (also AVX-512 on cores that run it as
//   two 256-bit halves, such as AMD Zen 4); 64 on AMD Zen 5 (family 0x1A), whose server and desktop
//   parts have 512-bit AVX-512 units (its mobile parts run AVX-512 as 256-bit halves: their peak is half),
//   and on Intel Xeons with AMX (Sapphire Rapids and later: two 512-bit FMA units on every such part).
//   Earlier Intel server cores with two units reach 64 too, but /proc/cpuinfo does not tell them from
//   one-unit parts, so they are counted at 32.
#pragma once
#include <string>

namespace kernels::cpu {

struct CpuInfo {
  std::string model = "unknown";
  double mhz = 0.0;          // 0 when /proc/cpuinfo does not say
  int flop_per_cycle = 8;    // f32, per core
  bool avx512 = false;
  bool full_width_avx512 = false;  // two 512-bit FMA units (flop_per_cycle 64 above)
  std::string gemm_library;  // the GEMM's library and kernels (kernels/gemm.h: gemm_library)
  double peak_gflops_per_core() const { return mhz * 1e-3 * flop_per_cycle; }
};

CpuInfo cpu_info();
// The same without gemm_library (what the GEMM asks when it chooses its kernels).
CpuInfo cpu_features();

}  // namespace kernels::cpu
