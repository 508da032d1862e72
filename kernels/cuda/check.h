// Internal to kernels/cuda/: status checks that name the failing call, file and line; the stream the
// kernels run on; launch sizes; a scoped device buffer from the caching allocator. Uses CUDA runtime
// types, so only the CUDA backend's own sources include it (engine code includes context.h instead).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/context.h"

namespace kernels::cuda::detail {

// Throw std::runtime_error "file:line: CUDA error <name> (<text>) in <expression>".
[[noreturn]] void throw_cuda_error(cudaError_t status, const char* expression, const char* file,
                                   int line);
// Throw std::runtime_error "file:line: <message>".
[[noreturn]] void throw_error(const char* message, const char* file, int line);

inline cudaStream_t stream() { return static_cast<cudaStream_t>(current_stream()); }

// Multiprocessors of the current device (queried once per device).
int multiprocessor_count();

// Blocks for a grid-stride loop over `work` items, `threads` per block: enough to fill the device
// (a few waves), never more than the work needs, at least 1.
unsigned grid_size(int64_t work, int threads);

// A device buffer from the caching allocator, released when the scope ends (also on an exception).
// Releasing right after enqueuing the kernels that use it is safe: the allocator hands the block out
// again only to work queued later on the same stream.
class ScopedBuffer {
 public:
  ScopedBuffer(size_t bytes, const char* what) : ptr_(allocate(bytes, what)) {}
  ~ScopedBuffer() { release(ptr_); }
  ScopedBuffer(const ScopedBuffer&) = delete;
  ScopedBuffer& operator=(const ScopedBuffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_;
};

}  // namespace kernels::cuda::detail

// Checks a CUDA runtime call: on failure throws with the expression, file and line.
#define CHECK_CUDA(expr)                                                              \
  do {                                                                                \
    const cudaError_t check_cuda_status_ = (expr);                                    \
    if (check_cuda_status_ != cudaSuccess)                                            \
      ::kernels::cuda::detail::throw_cuda_error(check_cuda_status_, #expr, __FILE__, __LINE__); \
  } while (0)
