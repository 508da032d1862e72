// Test support: random tensors and a finite-difference gradient checker (Caffe's GradientChecker idea).
//
// gradcheck(f, inputs) compares the analytic gradients of L = sum(f(inputs) * R), R a fixed random
// tensor (so every output element matters, with different weights), with central differences
//   dL/dx_i ~ (L(x_i + eps) - L(x_i - eps)) / (2 eps)
// on up to `max_checks` elements of every input that requires a gradient. L is evaluated in double from
// float outputs; |analytic - numeric| <= atol + rtol * |numeric| must hold everywhere.
#pragma once
#include <functional>
#include <vector>

#include <gtest/gtest.h>

#include "engine/engine.h"
#include "support/compare.h"

namespace test_support {

using engine::Generator;
using engine::Shape;
using engine::Tensor;

// Uniform in [low, high).
Tensor random_tensor(const Shape& shape, Generator& gen, float low = -1.0f, float high = 1.0f);
// Uniform in +-[min_abs, max_abs]: never within min_abs of zero (ReLU's kink).
Tensor random_away_from_zero(const Shape& shape, Generator& gen, float min_abs = 0.1f, float max_abs = 1.0f);
// A random permutation of values spaced `gap` apart, centred on zero: no ties and no two values closer
// than gap (max-pool's kinks).
Tensor random_distinct(const Shape& shape, Generator& gen, float gap = 0.05f);

struct GradcheckOptions {
  float eps = 1e-2f;
  float atol = 2e-3f;
  float rtol = 2e-2f;
  int max_checks = 48;  // elements checked per input (spread over the tensor, always the first and last)
  uint64_t seed = 1234;
};

using Function = std::function<Tensor(const std::vector<Tensor>&)>;

// The inputs must be CPU f32 leaves; those with requires_grad are checked.
::testing::AssertionResult gradcheck(const Function& f, const std::vector<Tensor>& inputs,
                                     const GradcheckOptions& options = {});

// allclose (support/compare.h) under its older name.
::testing::AssertionResult all_close(const std::vector<float>& actual, const std::vector<float>& expected,
                                     float atol, float rtol);

}  // namespace test_support
