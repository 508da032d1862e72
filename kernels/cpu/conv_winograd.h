// Winograd convolutions on the CPU (NHWC activations, OHWI weights), used by kernels/cpu/conv.cpp:
//   F(2x2, 3x3) for stride-1 3x3 convolutions where winograd_applies(g) (conv_winograd.cpp has the maths);
//   F(4, 7) along one axis for stride-1 1x7 and 7x1 convolutions where winograd_1d_applies(g)
//   (conv_winograd_1d.cpp).
#pragma once
#include <cstdint>

#include "kernels/conv.h"

namespace kernels::cpu {

// True for the convolutions these kernels take: 3x3 kernel, stride 1, each padding in [0, 2] (so that a
// stride-1 backward data, the forward of dy with the flipped kernel, qualifies too), and enough channels
// on both sides for the 16 small GEMMs to beat the im2col GEMM (docs/perf-notes.md, "Winograd").
bool winograd_applies(const Conv2dGeometry& g);

// Turns the Winograd kernels on or off for the whole process: on by default, off when the environment has
// ENGINE_WINOGRAD=0 (both kinds). For A/B timings (bench_cpu_kernels prints both) and im2col's rounding; not while
// convolutions run on other threads.
void set_winograd_enabled(bool enabled);
bool winograd_enabled();

// y (+)= conv(x, w) + bias over y [output_rows, out_c] (row stride ldy); x [input_rows, in_c] (ldx),
// w [out_c, 3, 3, in_c] dense, bias [out_c] or null. accumulate: add to y, else overwrite it.
void winograd_forward(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* w, const float* bias,
                      float* y, int64_t ldy, bool accumulate);

// dw (+)= the weight gradient, dw [out_c, 3, 3, in_c] dense; dy [output_rows, out_c] (ldy). No bias
// gradient (conv.cpp sums dy's columns itself).
void winograd_backward_filter(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* dy, int64_t ldy,
                              float* dw, bool accumulate);

// True for the convolutions the one-axis kernels take: a 1x7 or 7x1 kernel, stride 1, no padding
// across the axis and at most kernel - 1 along it (so that the backward data, the forward of dy with the flipped
// kernel, qualifies too), at least 16 channels on each side and lines of at least 8 outputs.
bool winograd_1d_applies(const Conv2dGeometry& g);

// As winograd_forward and winograd_backward_filter, for the convolutions winograd_1d_applies takes: w and dw
// [out_c, kernel_h, kernel_w, in_c] dense.
void winograd_1d_forward(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* w, const float* bias,
                         float* y, int64_t ldy, bool accumulate);
void winograd_1d_backward_filter(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* dy, int64_t ldy,
                                 float* dw, bool accumulate);

}  // namespace kernels::cpu
