// Row-major SGEMM on the CPU (see gemm.h): OpenBLAS where the build found it (ENGINE_HAVE_OPENBLAS), oneMKL
// where the build was asked for it (ENGINE_BLAS=MKL: ENGINE_HAVE_MKL, run sequential as OpenBLAS runs on one
// thread below), else a built-in GEMM that packs op(B) once and streams rows of C with a vectorisable inner loop.
//
// One thread pool for the whole engine. OpenBLAS runs single-threaded
// and gemm() splits C into row blocks (or column blocks when C is wide and short) over the OpenMP
// threads, each block one single-threaded cblas_sgemm. With OpenBLAS's own pthreads pool next to
// OpenMP's, the two pools' idle threads busy-wait against each other on 2 cores: measured A/B in
// one process (conv forward + both backwards, 9 DenseNet/IRv2 shapes, batch 8, 2 threads, default
// OMP_WAIT_POLICY): 400 ms with OpenBLAS threads, 205 ms with this split.
// The split is fixed by the product's sizes, never by the thread count or by whether the call is
// already inside a parallel region (then its parts run one after the other), so every BLAS call, and
// so every bit of C, is the same for any number of threads, whatever kernels the BLAS runs (see
// kGemmParts). Kernels whose own chunks are the parallel work call gemm_serial, one call per chunk.
// This needs each BLAS call on one thread: OpenBLAS's pthreads build (the one CMake looks for first,
// Debian's libopenblas0-pthread) obeys openblas_set_num_threads(1); its OpenMP build would take
// OpenMP's thread count outside a parallel region instead.
// gemm_mixed widens bf16 operands into f32 copies, runs gemm, and rounds a bf16 C once (bf16_widen.h).
//
// On a processor with two 512-bit FMA units the convolutions' products (pixels times a weight, and a weight's
// gradient summed over pixels) run on this engine's own kernels instead (gemm_avx512.h), which read the
// pixels where they lie where a BLAS would copy them first; the BLAS takes the rest. Which kernel a product gets depends on its shape alone, so the bits stay the same for
// any thread count. ENGINE_CPU_GEMM=blas|own|auto in the environment, or use_own_gemm_kernels(), chooses.
#include "kernels/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/bf16_widen.h"
#include "kernels/cpu/gemm_avx512.h"
#include "kernels/cpu/workspace.h"
#include "kernels/cpu_info.h"

#if defined(ENGINE_HAVE_MKL)
#include <mkl_cblas.h>
#include <mkl_service.h>
using blasint = MKL_INT;
#elif defined(ENGINE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace kernels::cpu {
namespace {

#if defined(ENGINE_HAVE_MKL) || defined(ENGINE_HAVE_OPENBLAS)
// The BLAS runs each call on the calling thread: OpenBLAS starts with its own thread pool, switched to one
// thread before the first GEMM; oneMKL's single library is told its sequential layer before any other call.
const bool blas_single_threaded = [] {
#ifdef ENGINE_HAVE_MKL
  if (mkl_set_threading_layer(MKL_THREADING_SEQUENTIAL) != MKL_THREADING_SEQUENTIAL)
    throw std::runtime_error("oneMKL refused its sequential threading layer (MKL_THREADING_LAYER in the environment?)");
#else
  openblas_set_num_threads(1);
#endif
  return true;
}();

void sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
              transpose_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}
#else
const bool blas_single_threaded = true;

// C[m, n] = alpha op(A) op(B) + beta C, single-threaded (gemm() below splits the work):
// op(B) is packed densely as [k, n], then each row of C accumulates alpha a_ik * B[k, :] over k.
void sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  std::vector<float> packed_b(static_cast<size_t>(k * n));
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < n; ++j) packed_b[p * n + j] = transpose_b ? b[j * ldb + p] : b[p * ldb + j];
  // Sums run over chunks of 128 terms, then the chunks are added: the rounding error grows with the
  // chunk count, not with k (long im2col rows would otherwise drift past the tests' tolerance).
  constexpr int64_t kChunk = 128;
  std::vector<float> chunk_sum(static_cast<size_t>(n)), total(static_cast<size_t>(n));
  for (int64_t i = 0; i < m; ++i) {
    float* __restrict acc = chunk_sum.data();
    float* __restrict sum = total.data();
    for (int64_t j = 0; j < n; ++j) sum[j] = 0.0f;
    for (int64_t p0 = 0; p0 < k; p0 += kChunk) {
      for (int64_t j = 0; j < n; ++j) acc[j] = 0.0f;
      for (int64_t p = p0; p < std::min(k, p0 + kChunk); ++p) {
        const float a_ip = transpose_a ? a[p * lda + i] : a[i * lda + p];
        const float* __restrict b_row = packed_b.data() + p * n;
        for (int64_t j = 0; j < n; ++j) acc[j] += a_ip * b_row[j];
      }
      for (int64_t j = 0; j < n; ++j) sum[j] += acc[j];
    }
    float* c_row = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) c_row[j] = alpha * sum[j] + (beta == 0.0f ? 0.0f : beta * c_row[j]);
  }
}
#endif

// The engine's own kernels: by default on processors with two 512-bit FMA units (Intel Xeons with AMX, AMD Zen
// 5), where the BLAS's copies cost the most against its multiply-adds and where they were measured faster;
// ENGINE_CPU_GEMM=own runs them wherever AVX-512F is (Zen 4 runs it as two 256-bit halves: not measured),
// ENGINE_CPU_GEMM=blas nowhere. Read on first use, inside the program (a bad value is an exception its
// caller reports, not a failure before main), and overridden by use_own_gemm_kernels.
bool own_kernels_by_default() {
  static const bool on = [] {
    const char* env = std::getenv("ENGINE_CPU_GEMM");
    const std::string choice = env != nullptr ? env : "auto";
    if (choice != "auto" && choice != "own" && choice != "blas")
      throw std::invalid_argument("ENGINE_CPU_GEMM=" + choice + ": use auto (the default), own or blas");
    if (!avx512::cpu_has_avx512() || choice == "blas") return false;
    return choice == "own" || cpu_features().full_width_avx512;
  }();
  return on;
}

std::atomic<int> own_kernels_override{-1};  // -1: the default above; 0 or 1: use_own_gemm_kernels

bool own_kernels_on() {
  const int override_on = own_kernels_override.load(std::memory_order_relaxed);
  return override_on >= 0 ? override_on == 1 : own_kernels_by_default();
}

// The single-threaded GEMM a product runs on: the own kernels where they take it (alpha == 1), else the BLAS.
using SgemmFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t);

void own_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float /*alpha == 1*/,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  avx512::sgemm(transpose_a, transpose_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

SgemmFn kernel_for(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha) {
  return own_kernels_on() && avx512::suits(transpose_a, transpose_b, m, n, k, alpha)
             ? &own_sgemm
             : &sgemm;
}

// BLAS kernels may round an element of C differently depending on the part of the product it is computed
// in: OpenBLAS 0.3.21 computes small products (m * n * k up to 1e6) with other kernels than large ones
// (186 of 4,520 shapes tried changed bits when their rows or columns were split, every time because a part
// fell into that range), and its AVX2 (Haswell) kernels, which it runs on AVX2 machines or where
// OPENBLAS_CORETYPE=Haswell says so, round a row by its place in a block of 12 rows or in the tail: a
// split at half the rows (a multiple of 16) changed bits in 3,080 of 5,184 shapes tried. So the parts
// depend on the product alone: kGemmParts of them (one per thread of our 2-core machines) where every
// part, the last and shortest included, has at least kMinPartMacs multiply-adds, else one. On machines with
// more cores a product (a pointwise convolution, a linear layer) still runs on two threads, while the other
// convolutions' chunks, which are many, use them all: more parts would repack an operand once per part,
// which costs a 2-core machine's threads about 32 / rows of each part's time.
constexpr double kMinPartMacs = 2e6;
constexpr int64_t kGemmParts = 2;

// Rows (or columns) per part when `length` of them, each worth `macs_per_unit` multiply-adds, are split
// into kGemmParts parts: a multiple of 16, every part at least kMinPartMacs. Returns `length` (one part)
// when no split qualifies.
int64_t split_block(int64_t length, double macs_per_unit) {
  const int64_t block = ((length + kGemmParts - 1) / kGemmParts + 15) / 16 * 16;
  const int64_t last = length - (length - 1) / block * block;
  return block < length && double(last) * macs_per_unit >= kMinPartMacs ? block : length;
}

// gemm over f32 views (sizes from the views): what gemm_mixed runs on its widened operands.
void gemm_views(bool transpose_a, bool transpose_b, float alpha, ConstMatrixView a, ConstMatrixView b, float beta,
                MatrixView c) {
  const int64_t k = transpose_a ? a.rows : a.cols;
  gemm(transpose_a, transpose_b, c.rows, c.cols, k, alpha, a.f32(), a.ld, b.f32(), b.ld, beta, c.f32(), c.ld);
}

}  // namespace

void gemm_mixed(bool transpose_a, bool transpose_b, float alpha, ConstMatrixView a_view, ConstMatrixView b_view,
                float beta, MatrixView c_view) {
  const auto [m, n, k] = gemm_mixed_operands("gemm_mixed", transpose_a, transpose_b, a_view, b_view, c_view);
  if (m == 0 || n == 0) return;
  (void)k;
  // bf16 operands widened (a bf16 C read widened), f32 products and sums, a bf16 C rounded once
  // (kernels/bf16_emulation.h).
  run_widened(&gemm_views, transpose_a, transpose_b, alpha, a_view, b_view, beta, c_view);
}

void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  (void)blas_single_threaded;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta * C; BLAS implementations differ on k == 0, so do it here.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  const SgemmFn sgemm_part = kernel_for(transpose_a, transpose_b, m, n, k, alpha);
  const bool split_rows = m >= n;
  const int64_t length = split_rows ? m : n;
  const int64_t block = split_block(length, double(m) * double(n) * double(k) / double(length));
  if (block >= length) {
    sgemm_part(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const int64_t blocks = (length + block - 1) / block;
  // The own kernels' row parts share one copy of op(B) (each part would make its own: the same bits).
  const bool share_b = sgemm_part == &own_sgemm && split_rows && !transpose_a;
  const int64_t shared_floats = share_b ? gemm_prepared_b_floats(transpose_b, n, k) : 0;
  const PreparedGemmB shared_b =
      share_b ? prepare_gemm_b(transpose_b, n, k, b, ldb, workspace(Workspace::kGemmSharedB, shared_floats),
                               shared_floats)
              : PreparedGemmB{};
  const int threads = omp_in_parallel() ? 1 : static_cast<int>(std::min<int64_t>(blocks, omp_get_max_threads()));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t p = 0; p < blocks; ++p) {
    const int64_t begin = p * block, size = std::min(length, begin + block) - begin;
    if (share_b)
      gemm_serial_prepared(size, a + begin * lda, lda, shared_b, beta, c + begin * ldc, ldc);
    else if (split_rows)  // rows [begin, begin + size) of C and op(A)
      sgemm_part(transpose_a, transpose_b, size, n, k, alpha, transpose_a ? a + begin : a + begin * lda,
            lda, b, ldb, beta, c + begin * ldc, ldc);
    else  // columns [begin, begin + size) of C and op(B)
      sgemm_part(transpose_a, transpose_b, m, size, k, alpha, a, lda,
            transpose_b ? b + begin * ldb : b + begin, ldb, beta, c + begin, ldc);
  }
}

void gemm_serial(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return gemm(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  kernel_for(transpose_a, transpose_b, m, n, k, alpha)(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta,
                                                      c, ldc);
}

namespace {

// Whether the own kernels run a rows-form product with this op(B) (for any number of rows).
bool own_rows_form(bool transpose_b, int64_t n, int64_t k) {
  return own_kernels_on() && k > 0 && avx512::suits(false, transpose_b, 1, n, k, 1.0f);
}

}  // namespace

int64_t gemm_prepared_b_floats(bool transpose_b, int64_t n, int64_t k) {
  return own_rows_form(transpose_b, n, k) ? avx512::prepared_b_floats(transpose_b, n, k) : 0;
}

PreparedGemmB prepare_gemm_b(bool transpose_b, int64_t n, int64_t k, const float* b, int64_t ldb, float* storage,
                             int64_t storage_floats) {
  PreparedGemmB prepared;
  prepared.transpose_b = transpose_b, prepared.n = n, prepared.k = k, prepared.b = b, prepared.ldb = ldb;
  // The kernels' choice read again: where it changed since the storage was sized, the storage decides.
  prepared.own = own_rows_form(transpose_b, n, k) && storage_floats >= avx512::prepared_b_floats(transpose_b, n, k);
  if (prepared.own) prepared.packed = avx512::prepare_b(transpose_b, n, k, b, ldb, storage);
  return prepared;
}

void gemm_serial_prepared(int64_t m, const float* a, int64_t lda, const PreparedGemmB& b, float beta, float* c,
                          int64_t ldc) {
  if (m == 0 || b.n == 0) return;
  if (!b.own) return gemm_serial(false, b.transpose_b, m, b.n, b.k, 1.0f, a, lda, b.b, b.ldb, beta, c, ldc);
  avx512::sgemm_prepared(m, b.n, b.k, a, lda, b.b, b.ldb, b.packed, beta, c, ldc);
}

bool use_own_gemm_kernels(bool on) {
  own_kernels_override.store(on && avx512::cpu_has_avx512() ? 1 : 0);
  return own_kernels_on();
}

bool own_gemm_kernels() { return own_kernels_on(); }

namespace {

// The BLAS and its kernels: gemm_library() without the own kernels.
std::string blas_library() {
#if defined(ENGINE_HAVE_MKL)
  MKLVersion version;
  mkl_get_version(&version);
  return "oneMKL " + std::to_string(version.MajorVersion) + "." + std::to_string(version.UpdateVersion) +
         ", sequential";
#elif defined(ENGINE_HAVE_OPENBLAS)
  // openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...": its first two words.
  const std::string config = openblas_get_config();
  const size_t second_space = config.find(' ', config.find(' ') + 1);
  return config.substr(0, second_space) + ", " + openblas_get_corename() + " kernels";
#else
  return "built-in";
#endif
}

}  // namespace

std::string gemm_library() {
  return blas_library() + (own_kernels_on() ? "; own AVX-512 kernels for the convolutions" : "");
}

int num_threads() { return omp_get_max_threads(); }

void set_num_threads(int threads) {
  omp_set_num_threads(std::max(1, threads));
#ifdef ENGINE_HAVE_OPENBLAS
  openblas_set_num_threads(1);  // parallelism comes from gemm()'s OpenMP split
#endif
}

}  // namespace kernels::cpu
