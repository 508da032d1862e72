// Helpers of the folded-inference tests (tests/cpu/test_nets_folded.cpp, tests/gpu/test_nets_folded.cpp):
// batch-norm state far from the identity, and the relative L2 distance the tests bound.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/engine.h"
#include "nets/net.h"
#include "support/gradcheck.h"

namespace test_support {

// ||actual - expected|| / ||expected||, in double (any device, any float dtype).
inline double relative_l2(const engine::Tensor& actual, const engine::Tensor& expected) {
  const std::vector<float> a = actual.to(engine::DType::f32).to_vector();
  const std::vector<float> b = expected.to(engine::DType::f32).to_vector();
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < b.size() && i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// Every BatchNorm below `module`, depth first.
inline void collect_batch_norms(const engine::Module& module, std::vector<engine::BatchNorm*>& out) {
  for (const auto& [name, child] : module.named_children()) {
    if (auto* bn = dynamic_cast<engine::BatchNorm*>(child.get())) out.push_back(bn);
    collect_batch_norms(*child, out);
  }
}

// Batch-norm state far from the identity (a fresh net's running statistics are 0 and 1, gamma 1, beta 0,
// for which the fold is nearly trivial): statistics and affine parameters drawn at random, on the CPU.
inline void randomise_batch_norms(nets::Net& net, uint64_t seed) {
  engine::Generator gen(seed);
  std::vector<engine::BatchNorm*> norms;
  collect_batch_norms(net, norms);
  ASSERT_FALSE(norms.empty());
  for (engine::BatchNorm* bn : norms) {
    const engine::Shape shape{bn->spec().channels};
    bn->running_mean.copy_from(random_tensor(shape, gen, -0.2f, 0.2f));
    bn->running_var.copy_from(random_tensor(shape, gen, 0.5f, 2.0f));
    if (bn->weight.defined()) bn->weight.copy_from(random_tensor(shape, gen, 0.6f, 1.4f));
    if (bn->bias.defined()) bn->bias.copy_from(random_tensor(shape, gen, -0.2f, 0.2f));
  }
}

}  // namespace test_support
