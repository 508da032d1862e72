// Tensor storage, views and raw copies (see tensor.h).
#include "engine/tensor.h"

#include <cstdint>
#include <cstring>
#include <sstream>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check.h"
#include "engine/device.h"

namespace engine {

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    ENGINE_CHECK(d >= 0) << "negative dimension in shape " << shape_str(shape);
    n *= d;
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

// ---------------------------------------------------------------------------------------------------
// Storage

// Memory comes from the device's table (backend.h); pinned host memory from the table of the device it
// will be copied to (CUDA), where the build has one.
Storage::Storage(size_t nbytes, Device device, bool pinned) : nbytes_(nbytes), device_(device) {
  const DeviceBackend* pinning = pinned && device.is_cpu() ? find_backend(DeviceType::cuda) : nullptr;
  if (pinning != nullptr && nbytes > 0) {
    data_ = pinning->pinned_allocate(nbytes);
    pinned_ = true;
    return;
  }
  data_ = backend_for(device).allocate(nbytes);
}

Storage::~Storage() {
  if (pinned_) {
    find_backend(DeviceType::cuda)->pinned_free(data_);
    return;
  }
  backend_for(device_).release(data_, nbytes_);
}

namespace {

// Moves dense bytes between any two devices: host <-> device through the device's table.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu()) return backend_for(src_device).copy_to_host(dst, src, bytes);
  if (src_device.is_cpu()) return backend_for(dst_device).copy_from_host(dst, src, bytes);
  ENGINE_CHECK(dst_device.type == src_device.type)
      << "copy between " << src_device.str() << " and " << dst_device.str() << " needs a stop on the CPU";
  backend_for(dst_device).copy_within(dst, src, bytes);
}

std::shared_ptr<TensorImpl> make_impl(const Shape& shape, Device device, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  const size_t nbytes = shape_numel(shape) * dtype_size(dtype);
  try {
    impl->storage = std::make_shared<Storage>(nbytes, device);
  } catch (const engine::Error&) {
    throw;
  } catch (const std::exception& e) {  // the device allocator's out-of-memory error: name the tensor
    std::ostringstream message;
    message << "allocating Tensor" << shape_str(shape) << " " << dtype_name(dtype) << " (" << nbytes << " bytes) on "
            << device.str() << ": " << e.what();
    if (backend_for(device).is_out_of_memory(e)) throw DeviceOutOfMemory(message.str());
    ENGINE_FAIL() << message.str();
  }
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return impl;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Creation

Tensor Tensor::empty(const Shape& shape, Device device, DType dtype) {
  return Tensor(make_impl(shape, device, dtype));
}

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), Device::cpu(), cuda_available());
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, Device device, DType dtype) { return full(shape, 0.0f, device, dtype); }

Tensor Tensor::full(const Shape& shape, float value, Device device, DType dtype) {
  Tensor t = empty(shape, device, dtype);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values, Device device, DType dtype) {
  ENGINE_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape))
      << values.size() << " values do not fill shape " << shape_str(shape);
  if (dtype != DType::f32) return from_vector(shape, values, Device::cpu()).to(dtype).to(device);
  Tensor t = empty(shape, device);
  copy_bytes(t.raw_data(), device, values.data(), Device::cpu(), values.size() * sizeof(float));
  return t;
}

// ---------------------------------------------------------------------------------------------------
// Properties

#define ENGINE_REQUIRE_DEFINED() ENGINE_CHECK(impl_) << "operation on an undefined tensor"

const Shape& Tensor::shape() const { ENGINE_REQUIRE_DEFINED(); return impl_->shape; }
const Shape& Tensor::strides() const { ENGINE_REQUIRE_DEFINED(); return impl_->strides; }
int64_t Tensor::offset() const { ENGINE_REQUIRE_DEFINED(); return impl_->offset; }
DType Tensor::dtype() const { ENGINE_REQUIRE_DEFINED(); return impl_->dtype; }
Device Tensor::device() const { ENGINE_REQUIRE_DEFINED(); return impl_->storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { ENGINE_REQUIRE_DEFINED(); return impl_->storage; }
int64_t Tensor::numel() const { return shape_numel(shape()); }

int64_t Tensor::size(int dim) const {
  const int n = ndim();
  const int d = dim < 0 ? dim + n : dim;
  ENGINE_CHECK(d >= 0 && d < n) << "dimension " << dim << " out of range for shape " << shape_str(shape());
  return impl_->shape[d];
}

bool Tensor::is_contiguous() const {
  const Shape expected = contiguous_strides(shape());
  for (size_t i = 0; i < expected.size(); ++i)
    if (impl_->shape[i] != 1 && impl_->strides[i] != expected[i]) return false;
  return true;
}

void* Tensor::raw_data() const {
  ENGINE_REQUIRE_DEFINED();
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
}

float* Tensor::data() const {
  ENGINE_CHECK(dtype() == DType::f32) << "data() needs an f32 tensor, this one is " << dtype_name(dtype());
  return static_cast<float*>(raw_data());
}

std::string Tensor::str() const {
  if (!impl_) return "Tensor(undefined)";
  return "Tensor" + shape_str(shape()) + " " + dtype_name(dtype()) + " " + device().str();
}

// ---------------------------------------------------------------------------------------------------
// Views and copies

Tensor Tensor::view(const Shape& new_shape) const {
  ENGINE_CHECK(is_contiguous()) << "view() of a non-contiguous tensor " << str() << "; call contiguous() first";
  ENGINE_CHECK(shape_numel(new_shape) == numel())
      << "cannot view " << shape_str(shape()) << " as " << shape_str(new_shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = new_shape;
  impl->strides = contiguous_strides(new_shape);
  impl->dtype = impl_->dtype;
  return Tensor(impl);
}

Tensor Tensor::slice(int dim, int64_t start, int64_t end) const {
  const int d = dim < 0 ? dim + ndim() : dim;
  ENGINE_CHECK(d >= 0 && d < ndim()) << "slice dimension " << dim << " out of range for " << str();
  ENGINE_CHECK(0 <= start && start <= end && end <= impl_->shape[d])
      << "slice [" << start << ", " << end << ") out of range for dimension " << d << " of " << str();
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset + start * impl_->strides[d];
  impl->shape = impl_->shape;
  impl->shape[d] = end - start;
  impl->strides = impl_->strides;
  impl->dtype = impl_->dtype;
  return Tensor(impl);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor copy = empty(shape(), device(), dtype());
  copy.copy_from(*this);
  return copy;
}

Tensor Tensor::to(Device target) const {
  if (device() == target) return *this;
  Tensor source = contiguous();
  Tensor copy = empty(shape(), target, dtype());
  copy_bytes(copy.raw_data(), target, source.raw_data(), source.device(), numel() * dtype_size(dtype()));
  return copy;
}

Tensor Tensor::to_nonblocking(Device target) const {
  if (device() == target || !device().is_cpu() || target.is_cpu() || !is_contiguous())
    return to(target);
  Tensor copy = empty(shape(), target, dtype());
  backend_for(target).copy_from_host_async(copy.raw_data(), raw_data(), numel() * dtype_size(dtype()));
  return copy;
}

Tensor Tensor::to(DType target) const {
  if (dtype() == target) return *this;
  Tensor source = contiguous();
  Tensor converted = empty(shape(), device(), target);
  backend_for(device()).convert(source.raw_data(), dtype(), converted.raw_data(), target, numel());
  return converted;
}

std::vector<float> Tensor::to_vector() const {
  if (dtype() != DType::f32) return to(DType::f32).to_vector();
  Tensor host = to(Device::cpu()).contiguous();
  std::vector<float> values(numel());
  if (!values.empty()) std::memcpy(values.data(), host.raw_data(), values.size() * sizeof(float));
  return values;
}

float Tensor::item() const {
  ENGINE_CHECK(numel() == 1) << "item() of a tensor with " << numel() << " elements";
  return to_vector()[0];
}

void Tensor::fill_(float value) const {
  if (numel() == 0) return;
  if (dtype() != DType::f32) return copy_from(full(shape(), value, device()).to(dtype()));
  // A strided fill through the copy routine would be slow; tensors we fill are dense or row-strided.
  if (is_contiguous()) {
    storage()->note_write();  // (copy_from counts its own)
    backend_for(device()).fill(data(), numel(), value);
  } else {
    copy_from(full(shape(), value, device()));
  }
}

void Tensor::copy_from(const Tensor& source) const {
  ENGINE_CHECK(source.shape() == shape())
      << "copy_from: shape " << shape_str(source.shape()) << " into " << shape_str(shape());
  ENGINE_CHECK(source.dtype() == dtype())
      << "copy_from: a " << dtype_name(source.dtype()) << " tensor into a " << dtype_name(dtype())
      << " one; convert it with to(DType) first";
  if (numel() == 0) return;
  storage()->note_write();
  if (device() == source.device() && is_contiguous() && source.is_contiguous()) {
    backend_for(device()).copy_within(raw_data(), source.raw_data(), numel() * dtype_size(dtype()));
    return;
  }
  if (device() == source.device()) {
    backend_for(device()).strided_copy(ndim(), shape().data(), raw_data(), strides().data(), source.raw_data(),
                                       source.strides().data(), dtype_size(dtype()));
    return;
  }
  // Across devices: make the source dense on its own device, move the bytes, then place them.
  Tensor dense_source = source.contiguous();
  if (is_contiguous()) {
    copy_bytes(raw_data(), device(), dense_source.raw_data(), dense_source.device(),
               numel() * dtype_size(dtype()));
    return;
  }
  copy_from(dense_source.to(device()));
}

void Tensor::set_data(const Tensor& source) const {
  ENGINE_REQUIRE_DEFINED();
  ENGINE_CHECK(source.defined()) << "set_data from an undefined tensor";
  impl_->storage = source.impl_->storage;
  impl_->offset = source.impl_->offset;
  impl_->shape = source.impl_->shape;
  impl_->strides = source.impl_->strides;
  impl_->dtype = source.impl_->dtype;
}

// ---------------------------------------------------------------------------------------------------
// Autograd metadata

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool enabled) {
  ENGINE_REQUIRE_DEFINED();
  ENGINE_CHECK(!impl_->grad_fn || enabled)
      << "cannot clear requires_grad of a non-leaf tensor; use detach()";
  impl_->requires_grad = enabled;
  return *this;
}

bool Tensor::is_leaf() const { return !impl_ || !impl_->grad_fn; }
const std::shared_ptr<Node>& Tensor::grad_fn() const { ENGINE_REQUIRE_DEFINED(); return impl_->grad_fn; }
void Tensor::set_grad_fn(std::shared_ptr<Node> node) const { ENGINE_REQUIRE_DEFINED(); impl_->grad_fn = std::move(node); }
Tensor Tensor::grad() const { ENGINE_REQUIRE_DEFINED(); return impl_->grad; }

void Tensor::set_grad(const Tensor& grad) const {
  ENGINE_REQUIRE_DEFINED();
  ENGINE_CHECK(!grad.defined() || grad.shape() == shape())
      << "gradient of shape " << shape_str(grad.shape()) << " for a tensor of shape " << shape_str(shape());
  impl_->grad = grad;
}

void Tensor::zero_grad() const {
  ENGINE_REQUIRE_DEFINED();
  if (impl_->grad.defined()) impl_->grad.fill_(0.0f);
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  run_backward(*this, gradient, retain_graph);
}

Tensor Tensor::detach() const {
  ENGINE_REQUIRE_DEFINED();
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->dtype = impl_->dtype;
  impl->name = impl_->name;
  return Tensor(impl);
}

const std::string& Tensor::name() const { ENGINE_REQUIRE_DEFINED(); return impl_->name; }
Tensor& Tensor::set_name(const std::string& name) { ENGINE_REQUIRE_DEFINED(); impl_->name = name; return *this; }

}  // namespace engine
