// Seeded random numbers with reproducible, independent streams.
//
// Generator(seed, stream) is xoshiro256** seeded through splitmix64 from (seed, stream): the same pair
// always gives the same sequence, and different streams (one per purpose: weight init, data order,
// augmentation, each loader worker) do not overlap in practice. state()/set_state() let checkpoints
// resume a run exactly.
#pragma once
#include <array>
#include <cstdint>

#include "engine/tensor.h"

namespace engine {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t stream = 0);

  uint64_t next_u64();
  float uniform();                      // [0, 1), 24 random bits
  float uniform(float low, float high); // [low, high)
  float normal();                       // standard normal (Box-Muller)
  uint64_t below(uint64_t n);           // uniform integer in [0, n), unbiased

  using State = std::array<uint64_t, 4>;
  State state() const { return state_; }
  void set_state(const State& s) { state_ = s; }

 private:
  State state_;
};

// Initialisers fill a tensor in place (on any device; values are drawn on the host).
void init_uniform(const Tensor& t, float low, float high, Generator& gen);
void init_normal(const Tensor& t, float mean, float stddev, Generator& gen);
// Normal truncated to +-2 stddev by redrawing (Keras's TruncatedNormal).
void init_truncated_normal(const Tensor& t, float mean, float stddev, Generator& gen);

// Fans of a weight: OHWI conv [O, KH, KW, I] -> fan_in = KH*KW*I, fan_out = KH*KW*O; linear [out, in] ->
// fan_in = in, fan_out = out.
struct Fans {
  int64_t fan_in;
  int64_t fan_out;
};
Fans weight_fans(const Tensor& weight);

// PyTorch's kaiming_normal_ (fan_in, ReLU gain): N(0, 2 / fan_in).
void init_kaiming_normal(const Tensor& weight, Generator& gen);
// Keras's he_normal: truncated normal with stddev sqrt(2 / fan_in) / 0.87962566.
void init_he_normal(const Tensor& weight, Generator& gen);
// Keras's glorot_uniform (Dense default): U(-l, l), l = sqrt(6 / (fan_in + fan_out)).
void init_glorot_uniform(const Tensor& weight, Generator& gen);

}  // namespace engine
