// Element types and devices of tensors. float32 is the reference type and the type every op takes; bf16
// is the 2-byte storage type of the GPU's mixed-precision path (Tensor::to(DType) converts; see
// docs/precision.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/layout.h"

namespace engine {

// One element-type enum for tensors and kernels (kernels/layout.h), so a tensor's dtype goes into a
// kernel's MatrixView as it is.
using DType = kernels::DType;
using kernels::dtype_name;
using kernels::dtype_size;

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

}  // namespace engine
