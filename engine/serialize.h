// Named tensors to and from safetensors files (engine/safetensors.h does the format; this adapts it to
// engine::Tensor). Used for checkpoints, converted weights and golden data.
#pragma once
#include <map>
#include <string>

#include "engine/module.h"

namespace engine {

// Writes tensors (any device, any strides) atomically: f32 ones as F32, bf16 ones as BF16 (their bits
// as they are).
void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {});

// The element type of the tensors load_tensors returns.
enum class LoadAs {
  f32,     // every tensor as f32: F32 as it is, F16 and BF16 widened exactly, F64 rounded to nearest
  stored,  // BF16 tensors as bf16, bit for bit; every other float type as f32 (as above)
};

// Reads every tensor on the CPU, typed as `as` says; dtypes other than F32, F64, F16 and BF16 are an
// error naming the tensor. `metadata`, when given, receives the file's metadata.
std::map<std::string, Tensor> load_tensors(const std::string& path,
                                           std::map<std::string, std::string>* metadata = nullptr,
                                           LoadAs as = LoadAs::f32);

}  // namespace engine
