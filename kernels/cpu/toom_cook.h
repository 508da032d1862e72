// The Toom-Cook matrices of Winograd's F(m, r) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), derived at compile time from a list of points, and the unrolled matrix products the CPU's
// Winograd kernels build their transforms from (conv_winograd.cpp: F(2x2, 3x3); conv_winograd_1d.cpp:
// F(4, 7) along one axis). For the correlation y_i = sum_k d_(i+k) g_k, i < m, k < r, with alpha = m + r - 1:
//   y = A^T [ (G g) (.) (B^T d) ]          A^T: m x alpha,  G: alpha x r,  B^T: alpha x alpha
//   A^T[i][j] = p_j^i,   G[j][k] = p_j^k / s_j,   B^T = diag(s) E^-T,
// for alpha - 1 finite points p_j and infinity, where E maps the alpha coefficients of a polynomial of degree
// alpha - 1 to its values at the points and to its leading coefficient (infinity's row and column: A^T and G
// pick the last coefficient), and s_j scales row j of B^T to the smallest integers, exact in float; s moves into
// G. docs/derivations.md (6b) derives it. Internal to the Winograd kernels.
#pragma once
#include <cstdint>
#include <utility>

namespace kernels::cpu::winograd {

// The finite points, in the order they are taken: each adds one to alpha. Small magnitudes and their halves
// keep the transforms well conditioned (0, +-1, +-2, +-1/2 are those of F(6, 3) in the literature). F(2, 3)
// takes the first three, F(4, 7) all nine.
inline constexpr double kPoints[] = {0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5};
inline constexpr int kMaxPoints = int(sizeof kPoints / sizeof kPoints[0]);

// The matrices of F(M, R), derived in double and stored in float: the input and output transforms exactly
// (integers and powers of the points), the kernel transform rounded once.
template <int M, int R>
struct Transform {
  float at[M][M + R - 1] = {};
  float bt[M + R - 1][M + R - 1] = {};
  float g[M + R - 1][R] = {};
};

constexpr double abs_value(double v) { return v < 0 ? -v : v; }
constexpr double nearest_integer(double v) { return double(static_cast<long long>(v < 0 ? v - 0.5 : v + 0.5)); }
constexpr double power(double base, int exponent) {
  double result = 1.0;
  for (int i = 0; i < exponent; ++i) result *= base;
  return result;
}
// Row j of the evaluation at the points (j < alpha - 1) and at infinity (j = alpha - 1, the leading
// coefficient): the value of the monomial x^k there, for polynomials of degree `degree`.
constexpr double evaluation(int j, int k, int alpha, int degree) {
  return j < alpha - 1 ? power(kPoints[j], k) : (k == degree ? 1.0 : 0.0);
}

template <int M, int R>
constexpr Transform<M, R> make_transform() {
  constexpr int A = M + R - 1;
  static_assert(A - 1 <= kMaxPoints, "not enough points for this F(m, r)");
  Transform<M, R> t{};
  // [E | I] -> [I | E^-1] by Gauss-Jordan elimination with partial pivoting, in double.
  double e[A][2 * A] = {};
  for (int j = 0; j < A; ++j) {
    for (int l = 0; l < A; ++l) e[j][l] = evaluation(j, l, A, A - 1);
    e[j][A + j] = 1.0;
  }
  for (int col = 0; col < A; ++col) {
    int pivot = col;
    for (int row = col + 1; row < A; ++row)
      if (abs_value(e[row][col]) > abs_value(e[pivot][col])) pivot = row;
    for (int l = 0; l < 2 * A; ++l) {
      const double swap = e[col][l];
      e[col][l] = e[pivot][l];
      e[pivot][l] = swap;
    }
    const double inverse = 1.0 / e[col][col];
    for (int l = 0; l < 2 * A; ++l) e[col][l] *= inverse;
    for (int row = 0; row < A; ++row) {
      if (row == col) continue;
      const double factor = e[row][col];
      for (int l = 0; l < 2 * A; ++l) e[row][l] -= factor * e[col][l];
    }
  }
  for (int j = 0; j < A; ++j) {
    // Row j of B^T = column j of E^-1, scaled by s_j to the least integers: divided by its smallest entry,
    // then multiplied by the least k that makes every entry whole.
    double smallest = 0.0;
    for (int i = 0; i < A; ++i) {
      const double v = abs_value(e[i][A + j]);
      if (v > 1e-9 && (smallest == 0.0 || v < smallest)) smallest = v;
    }
    double scale = 0.0;
    for (int k = 1; k <= 4096 && scale == 0.0; ++k) {
      bool whole = true;
      for (int i = 0; i < A; ++i) {
        const double v = e[i][A + j] / smallest * k;
        if (abs_value(v - nearest_integer(v)) > 1e-6 * (1.0 + abs_value(v))) whole = false;
      }
      if (whole) scale = k / smallest;
    }
    if (scale == 0.0) throw "make_transform: a row of B^T has no small integer multiple";  // a compile error
    for (int i = 0; i < A; ++i) t.bt[j][i] = float(nearest_integer(e[i][A + j] * scale));
    for (int k = 0; k < R; ++k) t.g[j][k] = float(evaluation(j, k, A, R - 1) / scale);
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < A; ++j) t.at[i][j] = float(evaluation(j, i, A, M - 1));
  return t;
}

template <int M, int R>
inline constexpr Transform<M, R> kTransform = make_transform<M, R>();

// The five products the kernels need, as compile-time matrices: at(row, col) is a constant expression.
template <int M, int R>
struct InputTransform {  // B^T, alpha x alpha: v = B^T d
  static constexpr float at(int e, int i) { return kTransform<M, R>.bt[e][i]; }
};
template <int M, int R>
struct OutputTransform {  // A^T, M x alpha: y = A^T m
  static constexpr float at(int i, int e) { return kTransform<M, R>.at[i][e]; }
};
template <int M, int R>
struct OutputGradientTransform {  // A, alpha x M: dm = A dy
  static constexpr float at(int e, int i) { return kTransform<M, R>.at[i][e]; }
};
template <int M, int R>
struct KernelTransform {  // G, alpha x R: u = G g
  static constexpr float at(int e, int k) { return kTransform<M, R>.g[e][k]; }
};
template <int M, int R>
struct KernelGradientTransform {  // G^T, R x alpha: dg = G^T du
  static constexpr float at(int k, int e) { return kTransform<M, R>.g[e][k]; }
};

// sum_i Matrix::at(Row, i) * in[i * in_stride], unrolled at compile time: zero entries skipped, the rest added in
// index order (the ones fold away). Straight-line code, which GCC vectorises across the caller's channel loop.
template <typename Matrix, int Row, int... I>
inline float row_times(const float* in, int64_t in_stride, std::integer_sequence<int, I...>) {
  float sum = -0.0f;  // -0 + x == x for every x, so the first term costs no addition (0 + -0 would be +0)
  (
      [&] {
        if constexpr (Matrix::at(Row, I) != 0.0f) sum += Matrix::at(Row, I) * in[I * in_stride];
      }(),
      ...);
  return sum;
}

template <typename Matrix, int... Row, int... I>
inline void matrix_times(const float* in, int64_t in_stride, float* out, int64_t out_stride,
                         std::integer_sequence<int, Row...>, std::integer_sequence<int, I...> columns) {
  ((out[Row * out_stride] = row_times<Matrix, Row>(in, in_stride, columns)), ...);
}

// out[j * out_stride] = sum_i Matrix::at(j, i) * in[i * in_stride] for j < Rows, i < Cols.
template <typename Matrix, int Rows, int Cols>
inline void multiply(const float* in, int64_t in_stride, float* out, int64_t out_stride) {
  matrix_times<Matrix>(in, in_stride, out, out_stride, std::make_integer_sequence<int, Rows>{},
                       std::make_integer_sequence<int, Cols>{});
}

}  // namespace kernels::cpu::winograd
