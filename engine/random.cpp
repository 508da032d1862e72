#include "engine/random.h"

#include <cmath>
#include <vector>

#include "engine/check.h"

namespace engine {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

template <typename Draw>
void fill_host(const Tensor& t, Draw draw) {
  std::vector<float> values(t.numel());
  for (float& v : values) v = draw();
  t.copy_from(Tensor::from_vector(t.shape(), values));
}

}  // namespace

Generator::Generator(uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL) ^ 0x5851f42d4c957f2dULL;
  for (uint64_t& s : state_) s = splitmix64(x);
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

float Generator::uniform() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }

float Generator::uniform(float low, float high) { return low + (high - low) * uniform(); }

float Generator::normal() {
  // Box-Muller on (0, 1] x [0, 1): never log(0).
  const double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  const double u2 = static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

uint64_t Generator::below(uint64_t n) {
  ENGINE_CHECK(n > 0) << "below(0)";
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // reject the incomplete last block
  uint64_t r;
  do r = next_u64();
  while (r >= limit);
  return r % n;
}

void init_uniform(const Tensor& t, float low, float high, Generator& gen) {
  fill_host(t, [&] { return gen.uniform(low, high); });
}

void init_normal(const Tensor& t, float mean, float stddev, Generator& gen) {
  // Box-Muller gives two independent normals per (u1, u2): use both (half the log/sqrt, no extra cos).
  std::vector<float> values(t.numel());
  for (size_t i = 0; i < values.size(); i += 2) {
    const double u1 = (static_cast<double>(gen.next_u64() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    const double u2 = static_cast<double>(gen.next_u64() >> 11) * (1.0 / 9007199254740992.0);
    const double radius = std::sqrt(-2.0 * std::log(u1)), angle = 2.0 * M_PI * u2;
    values[i] = mean + stddev * static_cast<float>(radius * std::cos(angle));
    if (i + 1 < values.size()) values[i + 1] = mean + stddev * static_cast<float>(radius * std::sin(angle));
  }
  t.copy_from(Tensor::from_vector(t.shape(), values));
}

void init_truncated_normal(const Tensor& t, float mean, float stddev, Generator& gen) {
  fill_host(t, [&] {
    float z;
    do z = gen.normal();
    while (std::fabs(z) > 2.0f);
    return mean + stddev * z;
  });
}

Fans weight_fans(const Tensor& weight) {
  if (weight.ndim() == 4) {
    const int64_t receptive = weight.size(1) * weight.size(2);
    return {receptive * weight.size(3), receptive * weight.size(0)};
  }
  ENGINE_CHECK(weight.ndim() == 2) << "fans of a weight need [O, KH, KW, I] or [out, in], got " << weight.str();
  return {weight.size(1), weight.size(0)};
}

void init_kaiming_normal(const Tensor& weight, Generator& gen) {
  const Fans f = weight_fans(weight);
  init_normal(weight, 0.0f, std::sqrt(2.0f / static_cast<float>(f.fan_in)), gen);
}

void init_he_normal(const Tensor& weight, Generator& gen) {
  const Fans f = weight_fans(weight);
  init_truncated_normal(weight, 0.0f, std::sqrt(2.0f / static_cast<float>(f.fan_in)) / 0.87962566f, gen);
}

void init_glorot_uniform(const Tensor& weight, Generator& gen) {
  const Fans f = weight_fans(weight);
  const float limit = std::sqrt(6.0f / static_cast<float>(f.fan_in + f.fan_out));
  init_uniform(weight, -limit, limit, gen);
}

}  // namespace engine
