#include "kernels/cpu_info.h"

#include <cstdlib>
#include <fstream>

#include "kernels/gemm.h"

namespace kernels::cpu {

CpuInfo cpu_features() {
  CpuInfo info;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, flags, vendor;
  int family = 0;
  while (std::getline(cpuinfo, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && info.model == "unknown") info.model = value;
    if (key == "cpu MHz" && info.mhz == 0.0) info.mhz = std::atof(value.c_str());
    if (key == "flags" && flags.empty()) flags = " " + value + " ";
    if (key == "vendor_id" && vendor.empty()) vendor = value;
    if (key == "cpu family" && family == 0) family = std::atoi(value.c_str());
  }
  auto has = [&](const char* flag) { return flags.find(std::string(" ") + flag + " ") != std::string::npos; };
  info.avx512 = has("avx512f");
  // Two 512-bit FMA units: AMD Zen 5 on, and Intel's Xeons with AMX (Sapphire Rapids on: AMX is on
  // their server cores only, and every one of those has both units).
  info.full_width_avx512 =
      info.avx512 && ((vendor == "AuthenticAMD" && family >= 0x1a) || (vendor == "GenuineIntel" && has("amx_tile")));
  info.flop_per_cycle = info.full_width_avx512 ? 64 : has("fma") && has("avx2") ? 32 : has("avx") ? 16 : 8;
  return info;
}

CpuInfo cpu_info() {
  CpuInfo info = cpu_features();
  info.gemm_library = gemm_library();
  return info;
}

}  // namespace kernels::cpu
