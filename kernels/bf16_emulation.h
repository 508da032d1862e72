// bf16 by emulation (docs/precision.md): storage rounded to nearest even, arithmetic in f32. Every kernel
// that takes matrix views also takes bf16 ones, on both backends, this way:
//   1. every bf16 view the kernel reads (ConstMatrixView parameters, and MatrixView outputs, which an
//      accumulating kernel reads) is widened exactly into a dense f32 scratch copy;
//   2. the kernel's f32 code runs on the copies;
//   3. every bf16 output (MatrixView parameter) is rounded once from its f32 result back into place.
// So a bf16 kernel is its f32 kernel with one rounding per stored value, written once here for every
// family and both backends instead of per kernel. On the CPU this is the bf16 reference; on the GPU it
// is correct but moves the data twice (bf16 kernels that load bf16 and compute in f32 directly are
// the faster path still to come). Each kernel opens with
//   if (any_bf16(x, y)) return run_widened(&relu_forward, x, y);
// where run_widened is the backend's (kernels/cpu/bf16_widen.h, kernels/cuda/bf16_widen.h): this
// header's widened_call with its scratch memory and its conversion kernel. Parameters that are not
// views (geometry, scalars, f32 per-channel pointers) pass through unchanged.
#pragma once
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/layout.h"

namespace kernels {

// True when any argument is a bf16 matrix view with data (an optional output left null is no operand).
inline bool is_bf16_view(const ConstMatrixView& v) { return v.data != nullptr && v.dtype == DType::bf16; }
inline bool is_bf16_view(const MatrixView& v) { return v.data != nullptr && v.dtype == DType::bf16; }
template <typename T>
bool is_bf16_view(const T&) {
  return false;
}
template <typename... Args>
bool any_bf16(const Args&... args) {
  return (is_bf16_view(args) || ...);
}

// The f32 scratch copies of one emulated call and the bf16 outputs they are rounded back into. Scratch:
// the backend's buffer of n floats (Scratch(n), data()); convert: the backend's conversion kernel.
template <typename Scratch, void (*convert)(ConstMatrixView, MatrixView)>
class WidenedCall {
 public:
  // A view argument bound to parameter type P: a bf16 input is widened, a bf16 output widened and
  // remembered for round_outputs(); everything else passes through.
  template <typename P, typename A>
  decltype(auto) bind(A&& arg) {
    if constexpr (std::is_same_v<std::decay_t<P>, MatrixView>) {
      return widen_output(MatrixView(arg));
    } else if constexpr (std::is_same_v<std::decay_t<P>, ConstMatrixView>) {
      return widen_input(ConstMatrixView(arg));
    } else {
      return std::forward<A>(arg);
    }
  }

  // Round every f32 result once into its bf16 destination.
  void round_outputs() {
    for (const auto& [result, destination] : outputs_) convert(result, destination);
  }

 private:
  MatrixView widen(ConstMatrixView v) {
    scratch_.emplace_back(size_t(v.rows * v.cols));
    const MatrixView wide(scratch_.back().data(), v.rows, v.cols, v.cols);
    if (v.rows > 0 && v.cols > 0) convert(v, wide);
    return wide;
  }
  ConstMatrixView widen_input(ConstMatrixView v) {
    if (v.dtype != DType::bf16) return v;
    if (v.data == nullptr) return {static_cast<const float*>(nullptr), v.rows, v.cols, v.ld};  // absent or empty
    return widen(v);
  }
  MatrixView widen_output(MatrixView v) {
    if (v.dtype != DType::bf16) return v;
    if (v.data == nullptr) return {static_cast<float*>(nullptr), v.rows, v.cols, v.ld};  // not wanted, or empty
    const MatrixView wide = widen(v);
    outputs_.emplace_back(wide, v);
    return wide;
  }

  std::vector<Scratch> scratch_;
  std::vector<std::pair<MatrixView, MatrixView>> outputs_;  // (f32 result, bf16 destination)
};

// kernel(args...) with bf16 views widened into f32 and bf16 outputs rounded once afterwards; returns
// what the kernel returns (a loss, a sum).
template <typename Scratch, void (*convert)(ConstMatrixView, MatrixView), typename R, typename... Params,
          typename... Args>
R widened_call(R (*kernel)(Params...), Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "run_widened: pass every argument of the kernel");
  WidenedCall<Scratch, convert> call;
  if constexpr (std::is_void_v<R>) {
    kernel(call.template bind<Params>(std::forward<Args>(args))...);
    call.round_outputs();
  } else {
    R result = kernel(call.template bind<Params>(std::forward<Args>(args))...);
    call.round_outputs();
    return result;
  }
}

}  // namespace kernels
