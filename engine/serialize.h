// Named tensors to and from safetensors files (engine/safetensors.h does the format; this adapts it to
// engine::Tensor). Used for checkpoints, converted weights and golden data.
#pragma once
#include <map>
#include <string>

#include "engine/module.h"

namespace engine {

// Writes f32 tensors (any device, any strides) atomically.
void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {});

// Reads every tensor as f32 on the CPU (F64, F16 and BF16 are converted; other dtypes are an error
// naming the tensor). `metadata`, when given, receives the file's metadata.
std::map<std::string, Tensor> load_tensors(const std::string& path,
                                           std::map<std::string, std::string>* metadata = nullptr);

}  // namespace engine
