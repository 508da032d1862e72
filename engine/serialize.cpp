// Named tensors to and from safetensors files (see serialize.h): engine dtypes to the format's and back,
// with the exact widenings of F16 and BF16 on load.
#include "engine/serialize.h"

#include <cstring>

#include "engine/safetensors.h"
#include "kernels/bf16.h"

namespace engine {
namespace {

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000 | (mantissa << 13);  // inf / nan
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exponent = 113;
    while (!(mantissa & 0x400)) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<Tensor> host;  // keeps the host copies alive until written
  std::vector<safetensors::WriteEntry> entries;
  host.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    ENGINE_CHECK(t.defined()) << "save_tensors: '" << name << "' is an undefined tensor";
    host.push_back(t.to(Device::cpu()).contiguous());
    const Tensor& h = host.back();
    const safetensors::DType file_dtype = t.dtype() == DType::bf16 ? safetensors::DType::BF16 : safetensors::DType::F32;
    entries.push_back({name, file_dtype, h.shape(), h.raw_data(), static_cast<size_t>(h.numel()) * dtype_size(h.dtype())});
  }
  safetensors::write(path, entries, metadata);
}

std::map<std::string, Tensor> load_tensors(const std::string& path, std::map<std::string, std::string>* metadata,
                                           LoadAs as) {
  const safetensors::Reader reader(path);
  if (metadata) *metadata = reader.metadata();
  std::map<std::string, Tensor> out;
  for (const safetensors::TensorInfo& info : reader.tensors()) {
    if (as == LoadAs::stored && info.dtype == safetensors::DType::BF16) {
      Tensor t = Tensor::empty(info.shape, Device::cpu(), DType::bf16);
      reader.read(info.name, t.raw_data(), info.nbytes());
      out.emplace(info.name, t);
      continue;
    }
    Tensor t = Tensor::empty(info.shape);
    float* dst = t.data();
    const int64_t n = info.numel();
    switch (info.dtype) {
      case safetensors::DType::F32:
        reader.read(info.name, dst, info.nbytes());
        break;
      case safetensors::DType::F64: {
        std::vector<double> tmp(n);
        reader.read(info.name, tmp.data(), info.nbytes());
        for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(tmp[i]);
        break;
      }
      case safetensors::DType::F16:
      case safetensors::DType::BF16: {
        std::vector<uint16_t> tmp(n);
        reader.read(info.name, tmp.data(), info.nbytes());
        const bool bf16 = info.dtype == safetensors::DType::BF16;
        for (int64_t i = 0; i < n; ++i) {
          if (bf16) {
            dst[i] = kernels::f32_from_bf16_bits(tmp[i]);
          } else {
            dst[i] = half_to_float(tmp[i]);
          }
        }
        break;
      }
      default:
        ENGINE_FAIL() << "safetensors: " << path << ": tensor '" << info.name << "' has dtype "
                      << safetensors::dtype_name(info.dtype) << "; only F32, F64, F16 and BF16 load as tensors";
    }
    out.emplace(info.name, t);
  }
  return out;
}

}  // namespace engine
