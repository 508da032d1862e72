// A whole training step's parameter gradients on one and on two CPU threads, expected equal bit for bit:
// every CPU kernel splits its work by geometry alone and reduces in a fixed order (a GEMM's split, too, is
// fixed by its sizes: BLAS kernels may round a row by its place in the product; kernels/cpu/gemm.cpp).
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "kernels/gemm.h"
#include "nets/registry.h"

namespace test_support {

// `arch` (flatten head, Keras batch norm) at `input_size` from the generator seed `net_seed`, one step of
// BCE on `images` and `targets` at 1 and at 2 threads; the thread count is put back after.
inline void expect_step_gradients_independent_of_threads(const std::string& arch, int64_t input_size,
                                                         uint64_t net_seed, const engine::Tensor& images,
                                                         const engine::Tensor& targets) {
  std::map<std::string, std::vector<float>> grads[2];
  const int threads_before = kernels::cpu::num_threads();
  for (int threads = 1; threads <= 2; ++threads) {
    kernels::cpu::set_num_threads(threads);
    engine::Generator gen(net_seed);
    auto net = nets::make_net(arch, nets::Head::flatten, nets::Flavor::keras, input_size, gen);
    engine::bce_with_logits(net->forward(images), targets).backward();
    for (const auto& [name, t] : net->named_parameters()) grads[threads - 1][name] = t.grad().to_vector();
  }
  kernels::cpu::set_num_threads(threads_before);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (const auto& [name, g] : grads[0]) EXPECT_EQ(g, grads[1].at(name)) << name;
}

}  // namespace test_support
