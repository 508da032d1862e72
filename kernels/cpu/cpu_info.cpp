#include "kernels/cpu_info.h"

#include <cstdlib>
#include <fstream>

namespace kernels::cpu {

CpuInfo cpu_info() {
  CpuInfo info;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(cpuinfo, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && info.model == "unknown") info.model = value;
    if (key == "cpu MHz" && info.mhz == 0.0) info.mhz = std::atof(value.c_str());
    if (key == "flags" && flags.empty()) flags = " " + value + " ";
  }
  auto has = [&](const char* flag) { return flags.find(std::string(" ") + flag + " ") != std::string::npos; };
  info.flop_per_cycle = has("fma") && has("avx2") ? 32 : has("avx") ? 16 : 8;
  info.avx512 = has("avx512f");
  return info;
}

}  // namespace kernels::cpu
