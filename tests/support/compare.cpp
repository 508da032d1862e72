#include "support/compare.h"

#include <sstream>

namespace test_support {

std::string index_str(size_t i, const std::vector<int64_t>& shape) {
  if (shape.empty() || static_cast<int64_t>(i) >= engine::shape_numel(shape)) return std::to_string(i);
  std::vector<int64_t> index(shape.size());
  size_t rest = i;
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = static_cast<int64_t>(rest % static_cast<size_t>(shape[d]));
    rest /= static_cast<size_t>(shape[d]);
  }
  std::ostringstream s;
  s << i << " [";
  for (size_t d = 0; d < index.size(); ++d) s << (d ? ", " : "") << index[d];
  s << "]";
  return s.str();
}

::testing::AssertionResult allclose(const engine::Tensor& actual, const std::vector<double>& expected,
                                    const std::vector<int64_t>& expected_shape, double atol, double rtol) {
  if (actual.shape() != expected_shape)
    return ::testing::AssertionFailure() << "shape " << engine::shape_str(actual.shape()) << ", expected "
                                         << engine::shape_str(expected_shape);
  return allclose(actual.to_vector(), expected, atol, rtol, expected_shape);
}

::testing::AssertionResult allclose(const engine::Tensor& actual, const engine::Tensor& expected, double atol,
                                    double rtol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << engine::shape_str(actual.shape()) << ", expected "
                                         << engine::shape_str(expected.shape());
  return allclose(actual.to_vector(), expected.to_vector(), atol, rtol, expected.shape());
}

engine::Tensor poisoned_tensor(const std::vector<int64_t>& shape, engine::Device device) {
  return engine::Tensor::full(shape, kPoison, device);
}

}  // namespace test_support
