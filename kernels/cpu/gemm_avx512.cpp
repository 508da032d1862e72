// AVX-512 GEMM kernels for the convolutions' products, beside OpenBLAS or oneMKL (gemm.cpp decides which runs).
//
// Why: most of the convolutions' products multiply a wide operand of pixels [P, in_c] by a weight with few
// outputs (Inception-ResNet-v2's 1x1s: 32-192; DenseNet's 3x3s: 32; every Winograd GEMM). A BLAS first copies
// ("packs") the [P, in_c] operand into its own layout, then does only 32-192 multiply-adds per packed element;
// on a core with two 512-bit FMA units the packing was a quarter of OpenBLAS's time (docs/perf-notes.md, "An
// Intel Xeon"). These kernels read the pixels where they lie and pack only the weight.
//
// The maths (row-major, alpha = 1):
//   C[i, j] = (((beta C0[i, j] + S_0[i, j]) + S_1[i, j]) + ...),   S_q[i, j] = sum_{p in block q} op(A)[i, p] op(B)[p, j]
// where block q is the run of kKBlock consecutive p from p = q kKBlock, each S_q one chain of FMAs in p order
// in a register. An element's bits depend on the product alone, never on the part of C a thread computes, and
// the rounding error grows with kKBlock plus the number of blocks, not with k (a weight gradient sums over
// every pixel of a batch), as in a BLAS that adds its K blocks into C.
//
// One register tile, MR rows of C by NV vectors of 16 columns (MR * NV of the 32 zmm registers accumulate),
// in two forms:
//   rows  op(A) = A as stored, [m, k]: A[i, p] broadcast from row i of A. op(B) is read where it lies when it
//         is B at most 64 columns wide, else packed once per call (or once for many calls: prepare_b) into
//         panels of 64 columns ([k][16 NV] each, zero-padded to 16; B^T transposed 16 x 16 in registers).
//         C is walked in chunks of rows whose part of A stays in L2 while every panel passes over it.
//   sums  op(A) = A^T, A stored [k, m] and B [k, n] (the weight gradients dW = dY^T X): k is walked in blocks
//         of kKBlock rows; a block of A (m <= 128 columns) is packed tile by tile, B's rows are read where
//         they lie, and every tile of C passes over each panel of B's block while it stays in L1.
#include "kernels/cpu/gemm_avx512.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/cpu/workspace.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define ENGINE_AVX512_TARGET __attribute__((target("avx512f")))

namespace kernels::cpu::avx512 {
namespace {

constexpr int64_t kKBlock = 128;     // products per partial sum (see the file comment), and the cache block
constexpr int64_t kPanel = 64;       // columns per packed panel of the rows form: 4 vectors of 16
constexpr int64_t kChunkRows = 240;  // rows of C per chunk of the rows form: a multiple of every MR (6, 8, 12)
// The products `suits` gives each form (measured against OpenBLAS: docs/perf-notes.md).
constexpr int64_t kRowsMaxN = 256, kRowsMinKWide = 128, kSumsMaxM = 128;

// Rows of the register tile for NV vectors per row: MR * NV accumulators, plus NV of B and one broadcast,
// within 32 registers.
constexpr int max_rows(int nv) { return nv == 1 ? 14 : nv == 2 ? 12 : nv == 3 ? 8 : 6; }

// C[r, 16 v + l] = (beta == 0 ? 0 : beta C[r, ..]) + sum_{p < k} A(r, p) B(p, 16 v + l), r < MR, v < NV,
// where A(r, p) = a[r * lda + p] (rows form) or a[p * lda + r] (sums form, kSums), and
// B(p, 16 v + l) = b[p * ldb + 16 v + l]. The last vector's columns are those set in `last`: the others are
// neither read nor written.
template <int MR, int NV, bool kSums>
ENGINE_AVX512_TARGET void tile(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k, float* c,
                               int64_t ldc, __mmask16 last, float beta) {
  const bool masked = last != __mmask16(0xFFFF);
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < k; ++p) {
    const float* b_row = b + p * ldb;
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV - 1; ++v) bv[v] = _mm512_loadu_ps(b_row + 16 * v);
    bv[NV - 1] = masked ? _mm512_maskz_loadu_ps(last, b_row + 16 * (NV - 1)) : _mm512_loadu_ps(b_row + 16 * (NV - 1));
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(kSums ? a[p * lda + r] : a[r * lda + p]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
  const __m512 beta_v = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* c_vec = c + r * ldc + 16 * v;
      const __mmask16 mask = v == NV - 1 ? last : __mmask16(0xFFFF);
      __m512 sum = acc[r][v];
      if (beta != 0.0f) {
        __m512 old = _mm512_maskz_loadu_ps(mask, c_vec);
        if (beta != 1.0f) old = _mm512_mul_ps(beta_v, old);
        sum = _mm512_add_ps(old, sum);
      }
      _mm512_mask_storeu_ps(c_vec, mask, sum);
    }
}

using TileFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t, __mmask16, float);

// The tile for `rows` rows (1 to max_rows(NV)).
template <int NV, bool kSums, int R = max_rows(NV)>
TileFn tile_for(int64_t rows) {
  if constexpr (R == 1)
    return &tile<1, NV, kSums>;
  else
    return rows == R ? &tile<R, NV, kSums> : tile_for<NV, kSums, R - 1>(rows);
}

template <bool kSums>
TileFn tile_for(int nv, int64_t rows) {
  switch (nv) {
    case 1: return tile_for<1, kSums>(rows);
    case 2: return tile_for<2, kSums>(rows);
    case 3: return tile_for<3, kSums>(rows);
    default: return tile_for<4, kSums>(rows);
  }
}

// One panel of columns [n0, n0 + width) of C, width <= 16 * nv: its vectors and the last one's mask.
struct Panel {
  int64_t n0, width;
  int nv;
  __mmask16 last;
  Panel(int64_t q, int64_t panel_width, int64_t n)
      : n0(q * panel_width),
        width(std::min(panel_width, n - q * panel_width)),
        nv(static_cast<int>((width + 15) / 16)),
        last(width % 16 == 0 ? __mmask16(0xFFFF) : __mmask16((1u << (width % 16)) - 1)) {}
};

// dst[i * ld_dst + j] = src[j * ld_src + i] for i, j < 16: a 16 x 16 block transposed in registers (pairs of
// 32-bit lanes interleaved, then pairs of 64-bit lanes, then 128-bit quarters twice). The zero-masked forms
// with every lane set are the plain instructions; GCC 12's plain intrinsics warn (-Wuninitialized, from
// their own _mm512_undefined_ps).
constexpr __mmask16 kAll16 = 0xFFFF;
constexpr __mmask8 kAll8 = 0xFF;
ENGINE_AVX512_TARGET void transpose16(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
  __m512 r[16], t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld_src);
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_ps(kAll16, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll16, r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {
    const __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]), t2 = _mm512_castps_pd(t[i + 2]),
                  t3 = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, t0, t2));
    r[i + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, t0, t2));
    r[i + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, t1, t3));
    r[i + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, t1, t3));
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_maskz_shuffle_f32x4(kAll16, r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_maskz_shuffle_f32x4(kAll16, r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_maskz_shuffle_f32x4(kAll16, r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_maskz_shuffle_f32x4(kAll16, r[i + 8], r[i + 12], 0xdd);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_maskz_shuffle_f32x4(kAll16, t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_maskz_shuffle_f32x4(kAll16, t[i], t[i + 8], 0xdd);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ld_dst, r[i]);
}

// Floats of op(B)[k, n] packed: panel q at q * k * kPanel floats, [k][16 nv] each.
int64_t packed_floats(int64_t n, int64_t k) { return (n + kPanel - 1) / kPanel * k * kPanel; }

// op(B)[k, n] packed panel after panel into `dst` (packed_floats(n, k) floats, 64-byte aligned), each panel
// [k][16 nv], zero-padded. op(B) = B^T (a weight stored [outputs, inputs]): 16 x 16 blocks transposed in
// registers, then the columns past the last whole block and the rows past the last 16 one value at a time.
void pack_into(bool transpose_b, int64_t n, int64_t k, const float* b, int64_t ldb, float* dst_all) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
  for (int64_t q = 0; q < panels; ++q) {
    const Panel panel(q, kPanel, n);
    const int64_t stride = 16 * panel.nv;
    const int64_t k16 = transpose_b ? k / 16 * 16 : 0, width16 = transpose_b ? panel.width / 16 * 16 : 0;
    float* dst = dst_all + q * k * kPanel;
    for (int64_t p = 0; p < k16; p += 16)
      for (int64_t j = 0; j < width16; j += 16) transpose16(b + (panel.n0 + j) * ldb + p, ldb, dst + p * stride + j, stride);
    for (int64_t p = 0; p < k; ++p) {
      float* row = dst + p * stride;
      if (transpose_b)
        for (int64_t j = p < k16 ? width16 : 0; j < panel.width; ++j) row[j] = b[(panel.n0 + j) * ldb + p];
      else
        for (int64_t j = 0; j < panel.width; ++j) row[j] = b[p * ldb + panel.n0 + j];
      for (int64_t j = panel.width; j < stride; ++j) row[j] = 0.0f;
    }
  }
}

float* align64(float* p) { return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63)); }

// Whether the rows form reads op(B) where it lies: B as stored at most one panel wide (a block of it is then
// kKBlock rows of 1-4 lines, which spread over L1's sets). Wider, B's rows many lines apart leave some of L1's
// sets short of ways for a block, and B^T needs its transposition: both are packed.
bool reads_b_in_place(bool transpose_b, int64_t n) { return !transpose_b && n <= kPanel; }

// Rows form. For each chunk of kChunkRows rows of C, each block of kKBlock products: every panel of 64
// columns passes over the chunk's tiles, so that the panel's block of op(B) (kKBlock x 64 floats, 32 KiB) stays
// in L1 while the chunk's rows of A (at most 120 KiB of them) come from L2. `packed`: op(B) as pack_into
// leaves it, or null for B read in place (reads_b_in_place).
void rows_form(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
               const float* packed, float beta, float* c, int64_t ldc) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
  for (int64_t i0 = 0; i0 < m; i0 += kChunkRows) {
    const int64_t chunk_rows = std::min(kChunkRows, m - i0);
    for (int64_t p0 = 0; p0 < k; p0 += kKBlock) {
      const int64_t block = std::min(kKBlock, k - p0);
      for (int64_t q = 0; q < panels; ++q) {
        const Panel panel(q, kPanel, n);
        const int64_t mr = max_rows(panel.nv);
        // The panel's block: rows p0.. of op(B), `stride` floats apart.
        const int64_t stride = packed == nullptr ? ldb : 16 * panel.nv;
        const float* panel_b = packed == nullptr ? b + p0 * ldb + panel.n0 : packed + q * k * kPanel + p0 * stride;
        for (int64_t r0 = 0; r0 < chunk_rows; r0 += mr)
          tile_for<false>(panel.nv, std::min(mr, chunk_rows - r0))(a + (i0 + r0) * lda + p0, lda, panel_b, stride,
                                                                    block, c + (i0 + r0) * ldc + panel.n0, ldc,
                                                                    panel.last, p0 == 0 ? beta : 1.0f);
      }
    }
  }
}

// Sums form. For each block of kKBlock rows of A and B: every panel of B's block (at most 32 KiB) stays in L1
// while the tiles of C's rows pass over it, reading A's block from L2. The panel width is the one whose tile
// rows divide m where one does (m = 32: 3 vectors by 8 rows), so that no tile runs short.
void sums_form(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
               float* c, int64_t ldc) {
  int nv = 4;
  for (const int candidate : {4, 3, 2})
    if (m % max_rows(candidate) == 0) {
      nv = candidate;
      break;
    }
  const int64_t panel_width = 16 * nv, panels = (n + panel_width - 1) / panel_width;
  // A's block packed tile by tile, [m / mr][kKBlock][mr]: a tile's mr values for p, then for p + 1, in one run
  // (in A successive p are a row apart). m is C's narrow side (a weight's outputs): cheap to copy.
  const int64_t mr = max_rows(nv), tiles = (m + mr - 1) / mr;
  float* packed_a = workspace(Workspace::kGemmPackedB, tiles * kKBlock * mr);
  for (int64_t p0 = 0; p0 < k; p0 += kKBlock) {
    const int64_t block = std::min(kKBlock, k - p0);
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t i0 = t * mr, rows = std::min(mr, m - i0);
      float* dst = packed_a + t * kKBlock * mr;
      for (int64_t p = 0; p < block; ++p)
        for (int64_t r = 0; r < rows; ++r) dst[p * mr + r] = a[(p0 + p) * lda + i0 + r];
    }
    for (int64_t q = 0; q < panels; ++q) {
      const Panel panel(q, panel_width, n);
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t i0 = t * mr;
        tile_for<true>(panel.nv, std::min(mr, m - i0))(packed_a + t * kKBlock * mr, mr, b + p0 * ldb + panel.n0, ldb,
                                                      block, c + i0 * ldc + panel.n0, ldc, panel.last,
                                                      p0 == 0 ? beta : 1.0f);
      }
    }
  }
}

}  // namespace

bool cpu_has_avx512() {
  static const bool has = [] {
    __builtin_cpu_init();  // GCC asks for it before __builtin_cpu_supports where constructors may run first
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return has;
}

bool suits(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha) {
  if (alpha != 1.0f || n < 16) return false;
  // Where they were measured faster than OpenBLAS (docs/perf-notes.md): the rows form with up to 256 columns of
  // C, or more over at least 128 products (a wider C over fewer streams more bytes of C than it multiplies, as
  // in the backward data of a 1x1 convolution with 32 outputs); the sums form for up to 128 rows of C (a
  // weight's outputs). Never by m in the rows form or k in the sums form, the sides that grow with the batch:
  // a layer's products take the same kernels for any batch, so that a row of a process's half of a batch is
  // the same bits as in the whole batch (data parallelism).
  if (!transpose_a) return n <= kRowsMaxN || k >= kRowsMinKWide;
  return !transpose_b && m <= kSumsMaxM;
}

int64_t prepared_b_floats(bool transpose_b, int64_t n, int64_t k) {
  return reads_b_in_place(transpose_b, n) ? 0 : packed_floats(n, k) + 16;
}

const float* prepare_b(bool transpose_b, int64_t n, int64_t k, const float* b, int64_t ldb, float* storage) {
  if (reads_b_in_place(transpose_b, n)) return nullptr;
  float* packed = align64(storage);
  pack_into(transpose_b, n, k, b, ldb, packed);
  return packed;
}

void sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if ((transpose_a && transpose_b) || k < 1)
    throw std::logic_error("kernels::cpu::avx512::sgemm: A^T B^T or k == 0 (gemm.cpp asks suits() first)");
  if (transpose_a) return sums_form(m, n, k, a, lda, b, ldb, beta, c, ldc);
  const float* packed =
      prepare_b(transpose_b, n, k, b, ldb, workspace(Workspace::kGemmPackedB, prepared_b_floats(transpose_b, n, k)));
  rows_form(m, n, k, a, lda, b, ldb, packed, beta, c, ldc);
}

void sgemm_prepared(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                    const float* prepared, float beta, float* c, int64_t ldc) {
  if (k < 1) throw std::logic_error("kernels::cpu::avx512::sgemm_prepared: k == 0 (gemm.cpp handles it)");
  rows_form(m, n, k, a, lda, b, ldb, prepared, beta, c, ldc);
}

}  // namespace kernels::cpu::avx512

#else  // not x86-64 with GCC or Clang: never taken (cpu_has_avx512() is false)

namespace kernels::cpu::avx512 {

bool cpu_has_avx512() { return false; }
bool suits(bool, bool, int64_t, int64_t, int64_t, float) { return false; }
void sgemm(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float, float*,
           int64_t) {
  throw std::logic_error("kernels::cpu::avx512::sgemm: not built for this processor");
}
int64_t prepared_b_floats(bool, int64_t, int64_t) { return 0; }
const float* prepare_b(bool, int64_t, int64_t, const float*, int64_t, float*) { return nullptr; }
void sgemm_prepared(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, const float*, float,
                    float*, int64_t) {
  throw std::logic_error("kernels::cpu::avx512::sgemm_prepared: not built for this processor");
}

}  // namespace kernels::cpu::avx512

#endif
