#include "engine/device.h"

#include <cstdio>
#include <mutex>

#include "engine/backend.h"
#include "engine/check.h"

namespace engine {

const DeviceProbe& probe_devices() {
  static DeviceProbe probe;
  static std::once_flag once;
  std::call_once(once, [] {
    const DeviceBackend* cuda = find_backend(DeviceType::cuda);
    if (cuda == nullptr) {
      probe.reason = "built without the CUDA backend";
      return;
    }
    probe.cuda_built = true;
    probe.cuda_devices = cuda->device_count(&probe.reason);
    if (probe.cuda_devices > 0) probe.description = cuda->device_description(0);
  });
  return probe;
}

bool cuda_available() { return probe_devices().cuda_devices > 0; }

Device select_device(const std::string& request) {
  const DeviceProbe& probe = probe_devices();
  if (request == "cpu") return Device::cpu();
  if (request == "auto") {
    if (probe.cuda_devices > 0) {
      find_backend(DeviceType::cuda)->make_current(0);
      return Device::cuda(0);
    }
    std::fprintf(stderr, "note: no CUDA device (%s); running on the CPU\n", probe.reason.c_str());
    return Device::cpu();
  }
  if (request.rfind("cuda", 0) == 0) {
    int index = 0;
    if (request.size() > 4) {
      const std::string digits = request.size() > 5 ? request.substr(5) : "";
      ENGINE_USER_CHECK(request[4] == ':' && !digits.empty() && digits.size() <= 4 &&
                        digits.find_first_not_of("0123456789") == std::string::npos)
          << "device '" << request << "': use cuda or cuda:N";
      index = std::stoi(digits);
    }
    ENGINE_USER_CHECK(probe.cuda_devices > 0) << "device '" << request << "' requested but " << probe.reason
                                              << "; use --device cpu or auto";
    ENGINE_USER_CHECK(index >= 0 && index < probe.cuda_devices)
        << "device '" << request << "': only " << probe.cuda_devices << " CUDA device(s)";
    find_backend(DeviceType::cuda)->make_current(index);
    return Device::cuda(index);
  }
  ENGINE_USER_FAIL() << "unknown device '" << request << "': use auto, cpu, cuda or cuda:N";
}

}  // namespace engine
