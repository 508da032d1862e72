// Choosing a device. The machine is probed once (lazily); "no driver" and "no device" both mean the
// CPU. Binaries therefore start and run anywhere and say in one line when they fall back to the CPU.
#pragma once
#include <string>

#include "engine/dtype.h"

namespace engine {

struct DeviceProbe {
  bool cuda_built = false;  // this binary has the CUDA backend
  int cuda_devices = 0;
  std::string reason;       // why there is no CUDA device, when there is none
  std::string description;  // the first CUDA device, e.g. "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)"
};

const DeviceProbe& probe_devices();
bool cuda_available();

// "auto" (CUDA when available, else the CPU with a one-line notice on stderr), "cpu", "cuda" or
// "cuda:N" (an error naming the reason when unavailable). A CUDA device becomes the process's current
// GPU: everything the process allocates and launches afterwards goes there (one process per GPU).
Device select_device(const std::string& request);

}  // namespace engine
