// Element-type conversion on the GPU (see convert.h), the same function per element as
// kernels/cpu/convert.cpp (kernels/bf16.h), so the two agree bit for bit: one grid-stride kernel
// (launch.cuh) per pair of element types; thread i converts element (i / cols, i % cols) and touches
// only the first cols elements of every row. bf16 -> f32 is the 16-bit shift of kernels/bf16.h, not
// __bfloat162float: on sm_90 that is the cvt.f32.bf16 instruction, which PTX does not promise to keep a NaN's
// payload, and the conversion tests compare every one of the 65,536 patterns bit for bit.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/convert.h"

namespace kernels::cuda {
namespace detail {
namespace {

static_assert(sizeof(__nv_bfloat16) == sizeof(BFloat16), "BFloat16 and __nv_bfloat16 share one layout");

template <typename In, typename Out>
struct ConvertOp {
  const In* in;
  int64_t ld_in;
  Out* out;
  int64_t ld_out;
  __device__ void operator()(int64_t r, int64_t c) const {
    convert_element(in[r * ld_in + c], out[r * ld_out + c]);
  }
};

}  // namespace
}  // namespace detail

using namespace detail;

void convert(ConstMatrixView src_view, MatrixView dst_view) {
  const ConvertOperands o = convert_operands("convert", src_view, dst_view);
  with_typed_pointers(o, [&](const auto* in, auto* out) {
    using In = std::remove_const_t<std::remove_pointer_t<decltype(in)>>;
    using Out = std::remove_pointer_t<decltype(out)>;
    for_each_element(o.rows, o.cols, ConvertOp<In, Out>{in, o.ld_in, out, o.ld_out}, "convert");
  });
}

}  // namespace kernels::cuda
