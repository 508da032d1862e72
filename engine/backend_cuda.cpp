// The CUDA device table (see backend.h), compiled only in builds with the CUDA backend: the caching
// allocator, stream-ordered copies and fills, and the math switches of kernels/cuda/context.h.
// This file is the engine's only caller of kernels/cuda's runtime and context.
#include <cstdint>

#include "engine/backend.h"
#include "engine/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"

namespace engine {
namespace {

class CudaBackend final : public DeviceBackend {
 public:
  const char* name() const override { return "cuda"; }

  int device_count(std::string* reason) const override { return kernels::cuda::device_count(reason); }
  std::string device_description(int index) const override { return kernels::cuda::device_description(index); }
  std::vector<std::pair<std::string, std::string>> runtime_info() const override {
    return {{"cuda_runtime", kernels::cuda::runtime_version()},
            {"cudnn", kernels::cuda::cudnn_version()},
            {"tf32", kernels::cuda::allow_tf32() ? "on" : "off"}};
  }

  void* allocate(size_t bytes) const override { return bytes ? kernels::cuda::allocate(bytes) : nullptr; }
  void release(void* ptr, size_t /*bytes*/) const override { kernels::cuda::release(ptr); }
  void* pinned_allocate(size_t bytes) const override {
    return bytes ? kernels::cuda::pinned_host_malloc(bytes) : nullptr;
  }
  void pinned_free(void* ptr) const override { kernels::cuda::pinned_host_free(ptr); }
  DeviceMemoryStats memory_stats() const override {
    const kernels::cuda::MemoryStats cuda = kernels::cuda::memory_stats();
    DeviceMemoryStats stats;
    stats.in_use_bytes = static_cast<int64_t>(cuda.in_use);
    stats.peak_bytes = static_cast<int64_t>(cuda.peak_in_use);
    stats.cached_bytes = static_cast<int64_t>(cuda.cached);
    return stats;
  }
  void reset_memory_peak() const override { kernels::cuda::reset_peak_memory(); }
  void empty_cache() const override { kernels::cuda::empty_cache(); }
  bool is_out_of_memory(const std::exception& e) const override {
    return dynamic_cast<const kernels::cuda::OutOfMemory*>(&e) != nullptr;
  }

  void copy_from_host(void* dst, const void* src, size_t bytes) const override {
    kernels::cuda::copy_host_to_device(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) const override {
    kernels::cuda::copy_device_to_host(dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, size_t bytes) const override {
    kernels::cuda::copy_device_to_device(dst, src, bytes);
  }
  void fill(float* dst, int64_t count, float value) const override {
    if (count > 0) kernels::cuda::fill(kernels::MatrixView(dst, 1, count, count), value);
  }
  // The device kernel moves 4-byte elements (f32) over up to 8 dimensions.
  void strided_copy(int ndim, const int64_t* shape, void* dst, const int64_t* dst_strides, const void* src,
                    const int64_t* src_strides, size_t element_size) const override {
    ENGINE_CHECK(ndim <= 8) << "copy_from: strided copies on CUDA support up to 8 dimensions";
    ENGINE_CHECK(element_size == sizeof(float)) << "copy_from: strided copies on CUDA support f32 only";
    kernels::cuda::strided_copy(ndim, shape, static_cast<const float*>(src), src_strides, static_cast<float*>(dst),
                                dst_strides);
  }
  void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t count) const override {
    if (count > 0)
      kernels::cuda::convert({src, 1, count, count, src_dtype}, {dst, 1, count, count, dst_dtype});
  }
  void synchronize() const override { kernels::cuda::synchronize(); }

  void set_deterministic(bool deterministic) const override { kernels::cuda::set_deterministic(deterministic); }
  bool deterministic() const override { return kernels::cuda::deterministic(); }
  void set_allow_tf32(bool allow) const override { kernels::cuda::set_allow_tf32(allow); }
  bool allow_tf32() const override { return kernels::cuda::allow_tf32(); }
};

}  // namespace

const DeviceBackend& cuda_backend() {
  static const CudaBackend backend;
  return backend;
}

}  // namespace engine
