#include "support/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

namespace test_support {

using namespace engine;

Tensor random_tensor(const Shape& shape, Generator& gen, float low, float high) {
  Tensor t = Tensor::empty(shape);
  init_uniform(t, low, high, gen);
  return t;
}

Tensor random_away_from_zero(const Shape& shape, Generator& gen, float min_abs, float max_abs) {
  std::vector<float> v(shape_numel(shape));
  for (float& x : v) {
    const float magnitude = gen.uniform(min_abs, max_abs);
    x = gen.uniform() < 0.5f ? -magnitude : magnitude;
  }
  return Tensor::from_vector(shape, v);
}

Tensor random_distinct(const Shape& shape, Generator& gen, float gap) {
  const int64_t n = shape_numel(shape);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (static_cast<float>(i) - 0.5f * static_cast<float>(n)) * gap;
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[gen.below(i + 1)]);
  return Tensor::from_vector(shape, v);
}

namespace {

double weighted_sum(const Tensor& out, const std::vector<float>& weights) {
  const std::vector<float> values = out.to_vector();
  double s = 0.0;
  for (size_t i = 0; i < values.size(); ++i) s += static_cast<double>(values[i]) * weights[i];
  return s;
}

std::vector<int64_t> indices_to_check(int64_t n, int max_checks) {
  std::vector<int64_t> idx;
  if (n <= max_checks) {
    idx.resize(n);
    std::iota(idx.begin(), idx.end(), 0);
    return idx;
  }
  for (int i = 0; i < max_checks; ++i) idx.push_back(static_cast<int64_t>(double(i) * double(n - 1) / (max_checks - 1)));
  idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
  return idx;
}

}  // namespace

::testing::AssertionResult gradcheck(const Function& f, const std::vector<Tensor>& inputs,
                                     const GradcheckOptions& options) {
  for (const Tensor& t : inputs) {
    if (!t.defined()) continue;
    if (!t.device().is_cpu() || !t.is_leaf() || !t.is_contiguous())
      return ::testing::AssertionFailure() << "gradcheck inputs must be contiguous CPU leaves";
    t.set_grad(Tensor());
  }
  // Analytic.
  Tensor out = f(inputs);
  Generator gen(options.seed, 99);
  std::vector<float> weights(out.numel());
  for (float& w : weights) w = gen.uniform(0.5f, 1.5f) * (gen.uniform() < 0.5f ? -1.0f : 1.0f);
  const Tensor weight_tensor = Tensor::from_vector(out.shape(), weights);
  out.backward(weight_tensor);

  std::ostringstream failures;
  int failed = 0;
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    const Tensor grad = x.grad();
    if (!grad.defined()) return ::testing::AssertionFailure() << "input " << k << " received no gradient";
    const std::vector<float> analytic = grad.to_vector();
    float* data = x.data();
    for (int64_t i : indices_to_check(x.numel(), options.max_checks)) {
      const float saved = data[i];
      data[i] = saved + options.eps;
      const double plus = weighted_sum(f(inputs), weights);
      data[i] = saved - options.eps;
      const double minus = weighted_sum(f(inputs), weights);
      data[i] = saved;
      const double numeric = (plus - minus) / (2.0 * options.eps);
      const double error = std::fabs(analytic[i] - numeric);
      if (error > options.atol + options.rtol * std::fabs(numeric)) {
        if (++failed <= 8)
          failures << "\n  input " << k << " element " << i << ": analytic " << analytic[i] << ", numeric "
                   << numeric << " (error " << error << ")";
      }
    }
  }
  if (failed) return ::testing::AssertionFailure() << failed << " gradient elements disagree:" << failures.str();
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult all_close(const std::vector<float>& actual, const std::vector<float>& expected,
                                     float atol, float rtol) {
  return allclose(actual, expected, atol, rtol);
}

}  // namespace test_support
