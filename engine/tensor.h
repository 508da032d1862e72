// Tensor: a shape, strides, a dtype and a device over a shared Storage, plus autograd metadata.
//
// A Tensor is a handle (shared_ptr to its TensorImpl): copying a Tensor shares the same tensor, as in
// PyTorch. Views (slice, view) share the Storage with another offset, shape and strides; the channel
// slice of an NHWC concatenation buffer is the view that matters most (see kernels/layout.h).
//
// Element types (engine/dtype.h, docs/precision.md): f32, the type of every op, and bf16, 2-byte storage
// for the GPU's mixed-precision path. Storage is sized by the dtype; to(DType) converts (f32 -> bf16
// rounds to nearest even, bf16 -> f32 is exact, on the tensor's device); ops refuse bf16 tensors with a
// message that says to convert them.
//
// Methods here are raw: they do not record autograd history. The differentiable operations live in
// engine/ops.h (reshape, slice_channels, concat_channels, ...).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace engine {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& shape);

// Bytes on one device, freed with the last reference. CPU memory is 64-byte aligned.
class Storage {
 public:
  // pinned: page-locked host memory (CPU only; used when a CUDA device is present, else ordinary).
  Storage(size_t nbytes, Device device, bool pinned = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }
  // Writes through the Tensor API into these bytes so far (Tensor::copy_from, fill_): a cache of the
  // contents compares it to notice writes it was not told of (the bf16 working copy of engine/optim.h).
  // Kernels writing through data() pointers (the ops, the optimizers) do not count.
  uint64_t write_count() const { return writes_.load(std::memory_order_relaxed); }
  void note_write() { writes_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> writes_{0};
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;
};

class Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (no storage)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- Creation (contiguous, row-major) ---
  static Tensor empty(const Shape& shape, Device device = Device::cpu(), DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, Device device = Device::cpu(), DType dtype = DType::f32);
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu(), DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, Device device = Device::cpu(), DType dtype = DType::f32) {
    return full(shape, 1.0f, device, dtype);
  }
  // The values (row-major) as a tensor of `dtype`: rounded to nearest even for bf16.
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values,
                            Device device = Device::cpu(), DType dtype = DType::f32);
  static Tensor scalar(float value, Device device = Device::cpu()) { return full({}, value, device); }
  // A CPU tensor in page-locked memory when a CUDA device is present (fast, asynchronous uploads; the
  // data loader's batch buffers), in ordinary memory otherwise.
  static Tensor empty_pinned(const Shape& shape, DType dtype = DType::f32);

  // --- Properties ---
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t size(int dim) const;  // negative dims count from the end
  int ndim() const { return static_cast<int>(shape().size()); }
  int64_t numel() const;
  const Shape& strides() const;
  int64_t offset() const;  // in elements, into the storage
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;
  TensorImpl* impl() const { return impl_.get(); }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

  // Pointer to the first element (on the tensor's device). data() requires f32.
  float* data() const;
  void* raw_data() const;

  // --- Raw views and copies (no autograd history) ---
  Tensor view(const Shape& shape) const;                     // contiguous tensors only
  Tensor slice(int dim, int64_t start, int64_t end) const;   // elements [start, end) of dim
  Tensor contiguous() const;                                 // this, or a dense copy
  Tensor clone() const;                                      // always a dense copy
  Tensor to(Device device) const;                            // this, or a copy on `device`
  // to(device) without waiting, for a dense host tensor going to a device: the copy is queued with the
  // device's kernels and this returns at once (from pinned memory, a loader's batch, always; from ordinary
  // memory the driver may first stage it, or wait). The caller keeps this tensor (its storage) alive and
  // unchanged until the device has passed the copy, e.g. until it has waited on a DeviceMarker recorded
  // after it (as TrainingStep::finish does). Any other case: to(device).
  Tensor to_nonblocking(Device device) const;
  // This, or a dense copy converted to `dtype` on the same device (f32 -> bf16: nearest even; NaN stays
  // NaN, past the largest finite bf16 is Inf; bf16 -> f32: exact).
  Tensor to(DType dtype) const;
  std::vector<float> to_vector() const;                      // host copy, row-major, as f32 (exact)
  float item() const;                                        // the value of a one-element tensor
  void fill_(float value) const;                             // value rounded to the dtype
  void copy_from(const Tensor& source) const;                // same shape and dtype; any strides/devices
  // Makes this tensor (every handle to it) refer to `source`'s data, shape and strides. Used to move
  // parameters between devices and into arenas without invalidating the handles modules hold.
  void set_data(const Tensor& source) const;

  // --- Autograd ---
  bool requires_grad() const;
  Tensor& set_requires_grad(bool enabled = true);
  bool is_leaf() const;  // no grad_fn: created by the user, not by a recorded op
  const std::shared_ptr<Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<Node> node) const;
  Tensor grad() const;  // undefined until a backward pass reaches this leaf
  void set_grad(const Tensor& grad) const;
  void zero_grad() const;  // zero-fills the gradient if it exists
  // Back-propagates from this tensor. A non-scalar root needs an explicit gradient of its shape.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  // The same data without autograd history (shares the storage).
  Tensor detach() const;

  const std::string& name() const;
  Tensor& set_name(const std::string& name);

  std::string str() const;  // "Tensor[2, 3] f32 cpu"

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // elements
  Shape shape;
  Shape strides;  // elements
  DType dtype = DType::f32;
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  std::string name;
};

// Contiguous (row-major) strides of a shape.
Shape contiguous_strides(const Shape& shape);

}  // namespace engine
