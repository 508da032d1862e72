// The CUDA device table (see backend.h), compiled only in builds with the CUDA backend: the caching
// allocator, stream-ordered copies and fills, and the math switches of kernels/cuda/context.h; also the
// CUDA graphs behind engine/runtime.h's graph capture.
// This file is the engine's only caller of kernels/cuda's runtime and context.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "engine/backend.h"
#include "engine/check.h"
#include "engine/runtime.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/runtime.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"

namespace engine {
namespace {

// A strided copy seen as one of row-strided matrices [rows, cols]: true when, in both src and dst, the
// last dimension is dense and the others (size-1 dimensions aside) collapse into rows with one stride.
// A channel slice of an NHWC buffer is such a copy.
bool row_copy(int ndim, const int64_t* shape, const int64_t* dst_strides, const int64_t* src_strides,
              int64_t* rows, int64_t* cols, int64_t* ld_dst, int64_t* ld_src) {
  *cols = ndim == 0 ? 1 : shape[ndim - 1];
  *rows = 1;
  for (int d = 0; d + 1 < ndim; ++d) *rows *= shape[d];
  for (auto [strides, ld] : {std::pair{dst_strides, ld_dst}, std::pair{src_strides, ld_src}}) {
    if (ndim > 0 && *cols != 1 && strides[ndim - 1] != 1) return false;
    *ld = -1;
    int64_t rows_inside = 1;
    for (int d = ndim - 2; d >= 0; --d) {
      if (shape[d] == 1) continue;
      if (*ld < 0) {
        *ld = strides[d];
      } else if (strides[d] != *ld * rows_inside) {
        return false;
      }
      rows_inside *= shape[d];
    }
    if (*ld < *cols) {  // a single row: any stride >= cols serves; rows that overlap are no matrix
      if (*rows > 1) return false;
      *ld = *cols;
    }
  }
  return true;
}

class CudaBackend final : public DeviceBackend {
 public:
  const char* name() const override { return "cuda"; }

  int device_count(std::string* reason) const override { return kernels::cuda::device_count(reason); }
  std::string device_description(int index) const override { return kernels::cuda::device_description(index); }
  void make_current(int index) const override { kernels::cuda::set_process_device(index); }
  std::vector<std::pair<std::string, std::string>> runtime_info() const override {
    return {{"cuda_runtime", kernels::cuda::runtime_version()},
            {"cudnn", kernels::cuda::cudnn_version()},
            {"tf32", kernels::cuda::allow_tf32() ? "on" : "off"},
            {"conv_algo_search", kernels::cuda::conv_algo_search_name(kernels::cuda::conv_algo_search())}};
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
    stats.requested_bytes = static_cast<int64_t>(cuda.requested_in_use);
    stats.peak_requested_bytes = static_cast<int64_t>(cuda.peak_requested);
    stats.cached_bytes = static_cast<int64_t>(cuda.cached);
    return stats;
  }
  void reset_memory_peak() const override { kernels::cuda::reset_peak_memory(); }
  void empty_cache() const override { kernels::cuda::empty_cache(); }
  bool is_out_of_memory(const std::exception& e) const override {
    return dynamic_cast<const kernels::cuda::OutOfMemory*>(&e) != nullptr;
  }

  void copy_from_host(void* dst, const void* src, size_t bytes) const override {
    count_host_sync();
    kernels::cuda::copy_host_to_device(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) const override {
    count_host_sync();
    kernels::cuda::copy_device_to_host(dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, size_t bytes) const override {
    kernels::cuda::copy_device_to_device(dst, src, bytes);
  }
  void fill(float* dst, int64_t count, float value) const override {
    if (count > 0) kernels::cuda::fill(kernels::MatrixView(dst, 1, count, count), value);
  }
  // The device's strided-copy kernel moves 4-byte (f32) or 2-byte (bf16) elements over up to 8 dimensions;
  // a bf16 copy of row-strided matrices goes through the conversion kernel (a bf16 -> bf16 copy, 16-byte
  // loads where aligned) instead.
  void strided_copy(int ndim, const int64_t* shape, void* dst, const int64_t* dst_strides, const void* src,
                    const int64_t* src_strides, size_t element_size) const override {
    const bool bf16 = element_size == dtype_size(DType::bf16);
    if (bf16) {
      int64_t rows = 0, cols = 0, ld_dst = 0, ld_src = 0;
      if (row_copy(ndim, shape, dst_strides, src_strides, &rows, &cols, &ld_dst, &ld_src)) {
        kernels::cuda::convert({src, rows, cols, ld_src, DType::bf16}, {dst, rows, cols, ld_dst, DType::bf16});
        return;
      }
    }
    ENGINE_CHECK(ndim <= 8) << "copy_from: strided copies on CUDA support up to 8 dimensions";
    ENGINE_CHECK(bf16 || element_size == sizeof(float)) << "copy_from: strided copies on CUDA support f32 and bf16";
    if (bf16)
      kernels::cuda::strided_copy(ndim, shape, static_cast<const kernels::BFloat16*>(src), src_strides,
                                  static_cast<kernels::BFloat16*>(dst), dst_strides);
    else
      kernels::cuda::strided_copy(ndim, shape, static_cast<const float*>(src), src_strides,
                                  static_cast<float*>(dst), dst_strides);
  }
  void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t count) const override {
    if (count > 0)
      kernels::cuda::convert({src, 1, count, count, src_dtype}, {dst, 1, count, count, dst_dtype});
  }
  void synchronize() const override {
    count_host_sync();
    kernels::cuda::synchronize();
  }

  void copy_from_host_async(void* dst, const void* src, size_t bytes) const override {
    kernels::cuda::copy_host_to_device_async(dst, src, bytes);
  }
  void copy_to_host_async(void* dst, const void* src, size_t bytes) const override {
    kernels::cuda::copy_device_to_host_async(dst, src, bytes);
  }
  // A CUDA event on the kernels' stream; waiting on it is the one host synchronisation it costs.
  std::shared_ptr<DeviceMarker> record_marker() const override {
    struct Event : DeviceMarker {
      explicit Event(kernels::cuda::StreamMarker* m) : marker(m) {}
      ~Event() override { kernels::cuda::destroy_stream_marker(marker); }
      void wait() const override {
        count_host_sync();
        kernels::cuda::wait_stream_marker(marker);
      }
      kernels::cuda::StreamMarker* marker;
    };
    return std::make_shared<Event>(kernels::cuda::record_stream_marker());
  }

  void set_deterministic(bool deterministic) const override { kernels::cuda::set_deterministic(deterministic); }
  bool deterministic() const override { return kernels::cuda::deterministic(); }
  void set_allow_tf32(bool allow) const override { kernels::cuda::set_allow_tf32(allow); }
  bool allow_tf32() const override { return kernels::cuda::allow_tf32(); }
};

// A CUDA graph (engine/runtime.h: graph capture) and the pool of its allocations, both given back with it.
class CudaGraph final : public DeviceGraph {
 public:
  explicit CudaGraph(kernels::cuda::Graph* graph) : graph_(graph) {}
  ~CudaGraph() override { kernels::cuda::destroy_graph(graph_); }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  void replay() const override { kernels::cuda::launch_graph(graph_); }

 private:
  kernels::cuda::Graph* graph_;
};

}  // namespace

const DeviceBackend& cuda_backend() {
  static const CudaBackend backend;
  return backend;
}

namespace detail {  // engine/runtime.cpp's graph capture on CUDA

bool cuda_graphs_supported(std::string* reason) {
  if (kernels::cuda::sync_after_every_launch()) {
    if (reason) *reason = "ENGINE_CUDA_SYNC=1 synchronises after every launch (debugging)";
    return false;
  }
  return true;
}
void cuda_begin_graph_capture() { kernels::cuda::begin_graph_capture(); }
std::unique_ptr<DeviceGraph> cuda_end_graph_capture() {
  return std::make_unique<CudaGraph>(kernels::cuda::end_graph_capture());
}
void cuda_abort_graph_capture() noexcept { kernels::cuda::abort_graph_capture(); }
void cuda_profile_range(bool begin) { kernels::cuda::profiler_range(begin); }

}  // namespace detail

}  // namespace engine
