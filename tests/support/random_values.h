// Seeded random test inputs, the same on every machine (std::mt19937_64 and its uniform distribution).
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace test_support {

// n values uniform in [low, high), from `seed`.
inline std::vector<float> uniform(size_t n, uint64_t seed, float low = -1.0f, float high = 1.0f) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

}  // namespace test_support
