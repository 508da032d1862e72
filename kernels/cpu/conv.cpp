// 2-D convolution on the CPU as GEMMs over im2col patches (NHWC activations, OHWI weights; see
// conv.h).
//
// Let P be the output pixels (n, oh, ow) flattened to rows, K = kernel_h * kernel_w * in_c and
//   patch[p, (kh, kw, i)] = x[n, oh*sh - pad_top + kh, ow*sw - pad_left + kw, i]  (zero outside x).
// The column order (kh, kw, i) is the order of a row of the OHWI weights, so with W = w as [O, K]:
//   forward:          y[P, O]  = patch[P, K] * W^T + bias
//   backward data:    dpatch   = dy[P, O] * W[O, K],   dx = col2im(dpatch)  (the adjoint of im2col)
//                     or, for stride 1, the forward convolution of dy with the flipped kernel
//                     (see has_transposed_form)
//   backward filter:  dW[O, K] = dy^T[O, P] * patch[P, K],   dbias[o] = sum_p dy[p, o]
// A 1x1 stride-1 unpadded convolution has patch == x, so each pass is a single GEMM on x itself.
//
// Patches are built for a range of output pixels at a time (a "chunk", which may span several
// images or part of one) into a reused per-thread workspace, one GEMM per chunk, each thread on its
// own chunks: the patches a thread writes stay in its L2 until its own single-threaded GEMM reads
// them, and a whole convolution is one parallel region (no barrier between im2col and GEMM).
//   forward (and the stride-1 backward data, itself a convolution): the chunks split the output rows;
//   backward filter: dW is a sum over the chunks, added in order; each thread owns a block of dW's
//     columns (patch columns) and builds only those columns of each chunk's patches;
//   strided backward data: the dpatch GEMM per chunk (threaded by gemm()) and a gather (col2im)
//     threaded over input rows.
// Chunks and column blocks depend on the geometry only, never on the thread count, and every parallel
// loop writes disjoint elements and sums in a fixed order: every GEMM call and every sum is the same
// run to run and for any number of threads, so are the results, bit for bit.
// Stride-1 3x3 convolutions with enough channels and pixels take Winograd F(2x2, 3x3) instead, in all three
// passes (kernels/cpu/conv_winograd.h: winograd_applies), and stride-1 1x7 and 7x1 ones Winograd F(4, 7) along
// their axis (winograd_1d_applies).
#include "kernels/conv.h"
#include "kernels/cpu/bf16_widen.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/workspace.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/convert.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace kernels::cpu {
namespace {

// Upper bound of a thread's im2col patches (bytes): a chunk's patches stay in the thread's L2
// (1 MiB per core on the EPYCs we run on) between im2col and the GEMM that packs them. Measured on
// DenseNet-201 training on one core: 1 MiB chunks took 10-20% less time than the 4 MiB ones shared
// by the threads before (0.43-0.45 against 0.51-0.57 s per image).
constexpr int64_t kWorkspaceBytes = int64_t(1) << 20;
// The strided backward data's chunks (dpatch, then col2im) are shared by all threads: larger.
constexpr int64_t kSharedWorkspaceBytes = int64_t(4) << 20;
// A chunk never has fewer output pixels than this (unless the whole convolution has fewer), so even
// very wide patches (7x7 kernels on many channels) make reasonably tall GEMMs.
constexpr int64_t kMinChunkPixels = 256;
// Chunks that split GEMM rows start at multiples of this (gemm()'s row blocks do too).
constexpr int64_t kRowAlign = 16;
// The number of forward chunks, and of backward-filter column blocks, is a multiple of this where the
// size allows: the threads of our 2-core machines get equal shares.
constexpr int64_t kChunkMultiple = 2;

bool is_pointwise(const Conv2dGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
         g.pad_top == 0 && g.pad_bottom == 0 && g.pad_left == 0 && g.pad_right == 0;
}

int64_t patch_cols(const Conv2dGeometry& g) { return g.kernel_h * g.kernel_w * g.in_c; }

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Output pixels per chunk for patches of `cols` floats per pixel within `budget` bytes.
int64_t chunk_pixels(int64_t total_pixels, int64_t cols, int64_t budget) {
  const int64_t by_budget = budget / (cols * int64_t(sizeof(float)));
  return std::min(total_pixels, std::max(kMinChunkPixels, by_budget));
}

// Threads for a convolution's own parallel loops (1 inside another parallel region).
int conv_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

// Columns [col_begin, col_end) of patch rows p - first for output pixels p in [first, first + count)
// into patch ([count, col_end - col_begin] dense), on the calling thread.
void im2col_rows(const Conv2dGeometry& g, const float* x, int64_t ldx, int64_t first, int64_t count,
                 int64_t col_begin, int64_t col_end, float* patch) {
  const int64_t oh_count = g.out_h(), ow_count = g.out_w(), pixels_per_image = oh_count * ow_count;
  const int64_t channels = g.in_c, width = col_end - col_begin, row_cols = g.kernel_w * channels;
  // A whole kernel row is one contiguous run of x when the input is dense.
  const bool dense_x = ldx == channels;
  for (int64_t r = 0; r < count; ++r) {
    const int64_t p = first + r;
    const int64_t n = p / pixels_per_image, oh = (p % pixels_per_image) / ow_count,
                  ow = p % ow_count;
    const int64_t ih0 = oh * g.stride_h - g.pad_top, iw0 = ow * g.stride_w - g.pad_left;
    const bool row_inside = iw0 >= 0 && iw0 + g.kernel_w <= g.in_w;
    float* out = patch + r * width - col_begin;  // out[col] for col in [col_begin, col_end)
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      // This kernel row's columns [run, run + row_cols), clipped to the wanted ones.
      const int64_t run = kh * row_cols;
      const int64_t lo = std::max(col_begin, run), hi = std::min(col_end, run + row_cols);
      if (lo >= hi) continue;
      const int64_t ih = ih0 + kh;
      if (ih < 0 || ih >= g.in_h) {
        std::memset(out + lo, 0, size_t(hi - lo) * sizeof(float));
        continue;
      }
      const float* x_row = x + ((n * g.in_h + ih) * g.in_w) * ldx;
      if (dense_x && row_inside) {
        std::memcpy(out + lo, x_row + iw0 * ldx + (lo - run), size_t(hi - lo) * sizeof(float));
        continue;
      }
      for (int64_t kw = (lo - run) / channels; kw * channels + run < hi; ++kw) {
        const int64_t cell = run + kw * channels;  // the cell's columns [cell, cell + channels)
        const int64_t c0 = std::max(lo, cell), c1 = std::min(hi, cell + channels);
        const int64_t iw = iw0 + kw;
        if (iw < 0 || iw >= g.in_w)
          std::memset(out + c0, 0, size_t(c1 - c0) * sizeof(float));
        else
          std::memcpy(out + c0, x_row + iw * ldx + (c0 - cell), size_t(c1 - c0) * sizeof(float));
      }
    }
  }
}

// dx += col2im(dpatch) for the output pixels [first, first + count), whose patch gradients are
// dpatch [count, K]; the input rows (flattened over images) that the chunk reads are [begin, end).
// A thread owns whole input rows of dx: for its row it adds, for each kernel row kh that maps onto
// it and each output pixel of the chunk in the matching output row, the kernel row's KW*I patch
// entries (one contiguous run of dx when dx is dense). Every dx element is written by one thread,
// summing in the fixed order (kh, ow, kw): race-free and independent of the thread count. Rows in
// [zero_from, end) are set to zero first (they have not been written by an earlier chunk).
void col2im_add(const Conv2dGeometry& g, const float* dpatch, int64_t first, int64_t count,
                int64_t begin, int64_t end, int64_t zero_from, float* dx, int64_t ldx) {
  const int64_t oh_count = g.out_h(), ow_count = g.out_w(), channels = g.in_c;
  const int64_t cols = patch_cols(g), row_cols = g.kernel_w * channels;
  const int64_t last = first + count;  // one past the chunk
  const bool dense_dx = ldx == channels;
#pragma omp parallel for schedule(static)
  for (int64_t input_row = std::min(begin, zero_from); input_row < end; ++input_row) {
    float* dx_row = dx + input_row * g.in_w * ldx;
    if (input_row >= zero_from)
      for (int64_t iw = 0; iw < g.in_w; ++iw)
        std::memset(dx_row + iw * ldx, 0, size_t(channels) * sizeof(float));
    if (input_row < begin) continue;  // a row no output of this chunk reads: only zeroed
    const int64_t n = input_row / g.in_h, ih = input_row % g.in_h;
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      const int64_t oh_scaled = ih + g.pad_top - kh;  // = oh * stride_h
      if (oh_scaled < 0 || oh_scaled % g.stride_h != 0 || oh_scaled / g.stride_h >= oh_count)
        continue;
      // The chunk's pixels of output row (n, oh): ow in [ow_begin, ow_end).
      const int64_t row_first = (n * oh_count + oh_scaled / g.stride_h) * ow_count;
      const int64_t ow_begin = std::max<int64_t>(0, first - row_first);
      const int64_t ow_end = std::min(ow_count, last - row_first);
      for (int64_t ow = ow_begin; ow < ow_end; ++ow) {
        const float* src = dpatch + (row_first + ow - first) * cols + kh * row_cols;
        const int64_t iw0 = ow * g.stride_w - g.pad_left;
        const int64_t kw_begin = std::max<int64_t>(0, -iw0);
        const int64_t kw_end = std::min(g.kernel_w, g.in_w - iw0);
        if (dense_dx) {
          float* dst = dx_row + (iw0 + kw_begin) * channels;
          const float* from = src + kw_begin * channels;
          for (int64_t j = 0; j < (kw_end - kw_begin) * channels; ++j) dst[j] += from[j];
          continue;
        }
        for (int64_t kw = kw_begin; kw < kw_end; ++kw) {
          float* dst = dx_row + (iw0 + kw) * ldx;
          const float* from = src + kw * channels;
          for (int64_t i = 0; i < channels; ++i) dst[i] += from[i];
        }
      }
    }
  }
}

// The input rows (flattened over images: n * in_h + ih) read by the output pixels [first, last]:
// [begin, end), possibly empty.
void input_rows_read(const Conv2dGeometry& g, int64_t first, int64_t last, int64_t* begin,
                     int64_t* end) {
  const int64_t oh_count = g.out_h(), ow_count = g.out_w();
  const int64_t first_row = first / ow_count, last_row = last / ow_count;  // (n, oh) flattened
  // Clamped to [0, in_h] and [-1, in_h - 1]: a window may lie entirely in the padding.
  const int64_t ih_first =
      std::clamp<int64_t>((first_row % oh_count) * g.stride_h - g.pad_top, 0, g.in_h);
  const int64_t ih_last = std::clamp<int64_t>(
      (last_row % oh_count) * g.stride_h - g.pad_top + g.kernel_h - 1, -1, g.in_h - 1);
  *begin = (first_row / oh_count) * g.in_h + ih_first;
  *end = std::max(*begin, (last_row / oh_count) * g.in_h + ih_last + 1);
}

// rows x cols block of a row-strided matrix set to zero.
void zero_rows(float* m, int64_t rows, int64_t cols, int64_t ld) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) std::memset(m + r * ld, 0, size_t(cols) * sizeof(float));
}

// Every row of y [rows, cols] (row stride ld) set to bias.
void fill_rows_with_bias(float* y, int64_t rows, int64_t cols, int64_t ld, const float* bias) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * ld, bias, size_t(cols) * sizeof(float));
}

// dbias[o] (+)= sum over rows of dy[row, o], in row order with a double accumulator per channel.
void bias_gradient(const float* dy, int64_t rows, int64_t channels, int64_t ldy, float* dbias,
                   bool accumulate) {
  constexpr int64_t kBlock = 32;  // channels per task: one task reads a narrow column strip of dy
  const int64_t blocks = (channels + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kBlock, c1 = std::min(channels, c0 + kBlock);
    double sum[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = dy + r * ldy;
      for (int64_t c = c0; c < c1; ++c) sum[c - c0] += row[c];
    }
    for (int64_t c = c0; c < c1; ++c)
      dbias[c] = float(sum[c - c0] + (accumulate ? double(dbias[c]) : 0.0));
  }
}

// How im2col_forward splits the output rows: `count` chunks of `size` rows (the last may be
// shorter), `size` a multiple of kRowAlign, the count even where the rows allow (two threads get equal
// shares). The split depends on the geometry only, so each GEMM call is the same for any thread count
// (OpenBLAS rounds some small products differently from large ones: kernels/cpu/gemm.cpp).
struct RowChunks {
  int64_t size = 0, count = 0;
};

RowChunks row_chunks(int64_t pixels, int64_t cols) {
  const int64_t largest = chunk_pixels(pixels, cols, kWorkspaceBytes);
  const int64_t count = round_up((pixels + largest - 1) / largest, kChunkMultiple);
  RowChunks c;
  c.size = round_up((pixels + count - 1) / count, kRowAlign);
  c.count = (pixels + c.size - 1) / c.size;
  return c;
}

// y (+)= conv(x, w) + bias through im2col chunks: y[chunk, O] = patch[chunk, K] * W[O, K]^T, each
// thread building its own chunks' patches and running their GEMMs single-threaded. W^T is made ready for the
// GEMMs once (kernels/gemm.h: prepare_gemm_b), not once per chunk.
// accumulate: add to y (used without a bias); else overwrite it.
void im2col_forward(const Conv2dGeometry& g, const float* x, int64_t ldx, const float* w,
                    const float* bias, float* y, int64_t ldy, bool accumulate) {
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  const int64_t cols = patch_cols(g);
  const int threads = conv_threads();
  const RowChunks chunks = row_chunks(pixels, cols);
  const int64_t prepared_floats = gemm_prepared_b_floats(true, g.out_c, cols);
  const PreparedGemmB w_t = prepare_gemm_b(true, g.out_c, cols, w, cols,
                                           workspace(Workspace::kPreparedWeights, prepared_floats), prepared_floats);
  // With a bias, y starts as the bias and the GEMM adds to it.
  const float beta = bias != nullptr || accumulate ? 1.0f : 0.0f;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && chunks.count > 1)
  for (int64_t chunk = 0; chunk < chunks.count; ++chunk) {
    const int64_t first = chunk * chunks.size, count = std::min(chunks.size, pixels - first);
    float* patch = workspace(Workspace::kPatches, count * cols);
    float* y_chunk = y + first * ldy;
    im2col_rows(g, x, ldx, first, count, 0, cols, patch);
    if (bias != nullptr)
      for (int64_t r = 0; r < count; ++r)
        std::memcpy(y_chunk + r * ldy, bias, size_t(g.out_c) * sizeof(float));
    // One call per chunk on this thread, for any thread count (kernels/gemm.h: gemm_serial).
    gemm_serial_prepared(count, patch, cols, w_t, beta, y_chunk, ldy);
  }
}

// A stride-1 convolution's backward data is itself a stride-1 convolution:
//   dx[n, ih, iw, i] = sum_{kh, kw, o} dy[n, ih + pt - kh, iw + pl - kw, o] * w[o, kh, kw, i]
// is the forward of dy with the kernel flipped and its channels swapped,
//   w'[i, kh', kw', o] = w[o, KH-1-kh', KW-1-kw', i],  padding KH-1-pt, KH-1-pb, KW-1-pl, KW-1-pr.
// Its GEMM reduces over K' = KH*KW*O instead of O, which is much faster when O is small (DenseNet's
// 3x3 convolutions have O = 32), and it needs no scatter.
bool has_transposed_form(const Conv2dGeometry& g) {
  auto pad_ok = [](int64_t pad, int64_t kernel) { return pad >= 0 && pad <= kernel - 1; };
  return g.stride_h == 1 && g.stride_w == 1 && pad_ok(g.pad_top, g.kernel_h) &&
         pad_ok(g.pad_bottom, g.kernel_h) && pad_ok(g.pad_left, g.kernel_w) &&
         pad_ok(g.pad_right, g.kernel_w);
}

Conv2dGeometry transposed_geometry(const Conv2dGeometry& g) {
  Conv2dGeometry t = g;
  t.in_h = g.out_h(), t.in_w = g.out_w(), t.in_c = g.out_c, t.out_c = g.in_c;
  t.pad_top = g.kernel_h - 1 - g.pad_top, t.pad_bottom = g.kernel_h - 1 - g.pad_bottom;
  t.pad_left = g.kernel_w - 1 - g.pad_left, t.pad_right = g.kernel_w - 1 - g.pad_right;
  return t;
}

// w' [in_c, kh, kw, out_c] from w [out_c, kh, kw, in_c] (see above).
void flip_and_swap_channels(const Conv2dGeometry& g, const float* w, float* w_t) {
  const int64_t taps = g.kernel_h * g.kernel_w;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < g.in_c; ++i)
    for (int64_t tap = 0; tap < taps; ++tap)  // tap' = (kh', kw') row-major; flipped: taps-1-tap'
      for (int64_t o = 0; o < g.out_c; ++o)
        w_t[(i * taps + tap) * g.out_c + o] = w[(o * taps + (taps - 1 - tap)) * g.in_c + i];
}

}  // namespace

void conv2d_forward(const Conv2dGeometry& g, ConstMatrixView x_view, const float* w,
                    const float* bias, MatrixView y_view) {
  if (any_bf16(x_view, y_view)) return run_widened(&conv2d_forward, g, x_view, w, bias, y_view);
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  if (pixels <= 0 || g.out_c <= 0) return;
  const auto [x, ldx, y, ldy] = window_forward_operands("conv2d_forward", g, x_view, y_view);
  if (is_pointwise(g)) {  // y[P, O] = x[P, I] * w[O, I]^T (+ bias: y starts as the bias, beta = 1)
    if (bias != nullptr) fill_rows_with_bias(y, pixels, g.out_c, ldy, bias);
    gemm(false, true, pixels, g.out_c, g.in_c, 1.0f, x, ldx, w, g.in_c,
         bias != nullptr ? 1.0f : 0.0f, y, ldy);
    return;
  }
  if (winograd_applies(g)) return winograd_forward(g, x, ldx, w, bias, y, ldy, false);
  if (winograd_1d_applies(g)) return winograd_1d_forward(g, x, ldx, w, bias, y, ldy, false);
  im2col_forward(g, x, ldx, w, bias, y, ldy, false);
}

void conv2d_backward_data(const Conv2dGeometry& g, ConstMatrixView dy_view, const float* w,
                          MatrixView dx_view, bool accumulate) {
  if (any_bf16(dy_view, dx_view)) return run_widened(&conv2d_backward_data, g, dy_view, w, dx_view, accumulate);
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  const int64_t input_rows = g.batch * g.in_h;  // rows of pixels
  if (input_rows <= 0 || g.in_w <= 0 || g.in_c <= 0) return;
  const auto [dy, ldy, dx, ldx] =
      conv_backward_data_operands("conv2d_backward_data", g, dy_view, dx_view);
  if (is_pointwise(g)) {  // dx[P, I] (+)= dy[P, O] * w[O, I]
    gemm(false, false, pixels, g.in_c, g.out_c, 1.0f, dy, ldy, w, g.in_c, accumulate ? 1.0f : 0.0f,
         dx, ldx);
    return;
  }
  if (has_transposed_form(g)) {  // dx (+)= conv(dy, w') (see has_transposed_form)
    float* w_t = workspace(Workspace::kFlippedWeights, g.out_c * patch_cols(g));
    flip_and_swap_channels(g, w, w_t);
    const Conv2dGeometry t = transposed_geometry(g);
    if (winograd_applies(t)) return winograd_forward(t, dy, ldy, w_t, nullptr, dx, ldx, accumulate);
    if (winograd_1d_applies(t)) return winograd_1d_forward(t, dy, ldy, w_t, nullptr, dx, ldx, accumulate);
    im2col_forward(t, dy, ldy, w_t, nullptr, dx, ldx, accumulate);
    return;
  }
  // Strided convolutions: dpatch GEMM and col2im per chunk. Without accumulate, input rows are
  // zeroed just before the first chunk that adds into them (rows below zero_from are done); rows
  // that no window reads are zeroed on the way or at the end.
  int64_t zero_from = accumulate ? input_rows : 0;
  const int64_t cols = patch_cols(g), chunk = chunk_pixels(pixels, cols, kSharedWorkspaceBytes);
  float* dpatch = pixels > 0 ? workspace(Workspace::kPatches, chunk * cols) : nullptr;
  for (int64_t first = 0; first < pixels; first += chunk) {
    const int64_t count = std::min(chunk, pixels - first);
    gemm(false, false, count, cols, g.out_c, 1.0f, dy + first * ldy, ldy, w, cols, 0.0f, dpatch,
         cols);
    int64_t begin = 0, end = 0;
    input_rows_read(g, first, first + count - 1, &begin, &end);
    col2im_add(g, dpatch, first, count, begin, end, zero_from, dx, ldx);
    zero_from = std::max(zero_from, end);
  }
  if (zero_from < input_rows)
    zero_rows(dx + zero_from * g.in_w * ldx, (input_rows - zero_from) * g.in_w, g.in_c, ldx);
}

namespace {

// conv2d_backward_filter on bf16 x or dy (conv.h): the f32 kernel on widened copies into a zeroed f32 dW
// (adding the sums to zeros is exact, and dbias accumulates as asked), each element rounded once to
// bf16, then written into or added to dw.
void backward_filter_bf16(const Conv2dGeometry& g, ConstMatrixView x_view, ConstMatrixView dy_view, float* dw,
                          float* dbias, bool accumulate) {
  check_backward_filter_views("conv2d_backward_filter", g, x_view, dy_view);
  const int64_t n = g.out_c * patch_cols(g);
  if (n <= 0) return;
  std::vector<float> sums(static_cast<size_t>(n), 0.0f);
  run_widened(&conv2d_backward_filter, g, x_view, dy_view, sums.data(), dbias, accumulate);
  for (int64_t i = 0; i < n; ++i) {
    const float rounded = static_cast<float>(BFloat16(sums[static_cast<size_t>(i)]));
    dw[i] = accumulate ? dw[i] + rounded : rounded;
  }
}

}  // namespace

void conv2d_backward_filter(const Conv2dGeometry& g, ConstMatrixView x_view,
                            ConstMatrixView dy_view, float* dw, float* dbias, bool accumulate) {
  if (any_bf16(x_view, dy_view)) return backward_filter_bf16(g, x_view, dy_view, dw, dbias, accumulate);
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  const int64_t cols = patch_cols(g);
  if (g.out_c <= 0 || cols <= 0) return;
  const auto [x, ldx, dy, ldy] =
      conv_backward_filter_operands("conv2d_backward_filter", g, x_view, dy_view);
  if (dbias != nullptr) bias_gradient(dy, pixels, g.out_c, ldy, dbias, accumulate);
  if (pixels <= 0) {
    if (!accumulate) zero_rows(dw, g.out_c, cols, cols);
    return;
  }
  if (is_pointwise(g)) {  // dw[O, I] (+)= dy[P, O]^T * x[P, I]
    gemm(true, false, g.out_c, cols, pixels, 1.0f, dy, ldy, x, ldx, accumulate ? 1.0f : 0.0f, dw,
         cols);
    return;
  }
  if (winograd_applies(g)) return winograd_backward_filter(g, x, ldx, dy, ldy, dw, accumulate);
  if (winograd_1d_applies(g)) return winograd_1d_backward_filter(g, x, ldx, dy, ldy, dw, accumulate);
  // Chunks fixed by the geometry (dW sums them in order), and so are dW's column blocks (each GEMM
  // call is then the same for any thread count); a thread owns whole column blocks and builds only
  // those columns of each chunk's patches.
  const int64_t chunk = chunk_pixels(pixels, cols, kWorkspaceBytes);
  const int threads = conv_threads();
  const int64_t block = round_up((cols + kChunkMultiple - 1) / kChunkMultiple, kRowAlign);
  const int64_t blocks = (cols + block - 1) / block;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t col_begin = b * block, width = std::min(cols, col_begin + block) - col_begin;
    float* patch = workspace(Workspace::kPatches, std::min(chunk, pixels) * width);
    for (int64_t first = 0; first < pixels; first += chunk) {
      const int64_t count = std::min(chunk, pixels - first);
      im2col_rows(g, x, ldx, first, count, col_begin, col_begin + width, patch);
      const float beta = (first == 0 && !accumulate) ? 0.0f : 1.0f;
      gemm_serial(true, false, g.out_c, width, count, 1.0f, dy + first * ldy, ldy, patch, width, beta,
                  dw + col_begin, cols);
    }
  }
}

void conv2d_bias_relu_forward(const Conv2dGeometry& g, ConstMatrixView x, const float* w, const float* bias,
                              MatrixView y) {
  conv_bias_relu_check("conv2d_bias_relu_forward", bias);
  conv2d_forward(g, x, w, bias, y);
  relu_forward(y, y);  // a bf16 y: max(round(v), 0) == round(max(v, 0))
}

void conv2d_scaled_residual_forward(const Conv2dGeometry& g, ConstMatrixView x, const float* w, const float* bias,
                                    float scale, ConstMatrixView residual, MatrixView y, bool relu) {
  // bf16: one rounding of the whole tail, as CUDA's emulation (not the conv's, then the residual's).
  if (any_bf16(x, residual, y))
    return run_widened(&conv2d_scaled_residual_forward, g, x, w, bias, scale, residual, y, relu);
  scaled_residual_check("conv2d_scaled_residual_forward", bias, residual, y);
  conv2d_forward(g, x, w, bias, y);
  scaled_residual_forward(scale, residual, y, y, relu);  // in place: y = act(residual + scale * y)
}

namespace {

// The f32 passes with the weight as a view (dense [out_c, kh * kw * in_c]): what the mixed-precision
// kernels run on their widened operands.
void conv2d_forward_view_weight(const Conv2dGeometry& g, ConstMatrixView x, ConstMatrixView w, const float* bias,
                                MatrixView y) {
  conv2d_forward(g, x, w.f32(), bias, y);
}
void conv2d_backward_data_view_weight(const Conv2dGeometry& g, ConstMatrixView dy, ConstMatrixView w, MatrixView dx,
                                      bool accumulate) {
  conv2d_backward_data(g, dy, w.f32(), dx, accumulate);
}

}  // namespace

// The references of the mixed-precision kernels: bf16 operands widened (exact), the f32 kernel, each bf16
// output rounded once (kernels/bf16_emulation.h).
void conv2d_forward_mixed(const Conv2dGeometry& g, ConstMatrixView x_view, ConstMatrixView w_view, const float* bias,
                          MatrixView y_view) {
  conv_forward_mixed_operands("conv2d_forward_mixed", g, x_view, w_view, y_view);
  if (g.output_rows() <= 0 || g.out_c <= 0) return;
  run_widened(&conv2d_forward_view_weight, g, x_view, w_view, bias, y_view);
}

void conv2d_backward_data_mixed(const Conv2dGeometry& g, ConstMatrixView dy_view, ConstMatrixView w_view,
                                MatrixView dx_view, bool accumulate) {
  conv_backward_data_mixed_operands("conv2d_backward_data_mixed", g, dy_view, w_view, dx_view);
  run_widened(&conv2d_backward_data_view_weight, g, dy_view, w_view, dx_view, accumulate);
}

}  // namespace kernels::cpu
