// Per-thread scratch buffers of the CPU convolutions, reused from call to call and grown on demand: a
// thread's im2col patches or Winograd tiles stay in its own cache between the transform and the GEMM
// that reads them. Each use has its own slot, so that buffers live at the same time never alias (the
// stride-1 backward data holds its flipped weights while Winograd fills its tiles).
#pragma once
#include <cstdint>
#include <vector>

namespace kernels::cpu {

enum class Workspace : int {
  kPatches,           // im2col patches (conv.cpp)
  kFlippedWeights,    // the stride-1 backward data's flipped kernel (conv.cpp)
  kPreparedWeights,   // the im2col forward's weight made ready for its chunks' GEMMs (conv.cpp)
  kWinogradInputs,    // V: transformed input tiles (conv_winograd.cpp)
  kWinogradProducts,  // M or dM: the 16 GEMMs' results, or the transformed output gradients
  kWinogradWeights,   // U: the transformed kernel, read by every thread of the call that made it
  kWinogradPreparedWeights,  // U made ready for the chunks' GEMMs (kernels/gemm.h: prepare_gemm_b)
  kGemmPackedB,       // the AVX-512 GEMM kernels' packed op(B), or block of A (gemm_avx512.cpp)
  kGemmSharedB,       // op(B) packed once for the parts of one gemm() (gemm.cpp), read by every thread
  kCount,
};

// The calling thread's buffer of at least `floats` floats for `slot` (its contents are not kept when it
// grows).
inline float* workspace(Workspace slot, int64_t floats) {
  thread_local std::vector<float> buffers[static_cast<int>(Workspace::kCount)];
  std::vector<float>& buffer = buffers[static_cast<int>(slot)];
  if (static_cast<int64_t>(buffer.size()) < floats) {
    buffer.clear();
    buffer.shrink_to_fit();
    buffer.resize(static_cast<size_t>(floats));
  }
  return buffer.data();
}

}  // namespace kernels::cpu
