// Test support: the op table, in the spirit of ggml's test-backend-ops. Each entry (an OpCase) declares
// one engine op (engine/ops.h) on one set of shapes: its inputs, how to run it on tensors, a naive
// reference in double, and tolerances. One harness runs, for every entry:
//   1. check_cpu_against_reference: the CPU op against the double reference (atol + rtol |ref|);
//   2. check_gpu_against_cpu: the CUDA op, forward and backward, against the CPU op (skipped without a
//      device; tests/gpu/test_ops_table.cpp);
//   3. check_gradients: the op's backward against central finite differences (support/gradcheck.h).
// Inputs may be channel slices of wider NHWC buffers (the op reads them in place) and outputs may be
// written into channel slices of wider buffers (OpRun::output_slice); the channels around a slice are
// NaN poison, as are preallocated outputs, so an op that reads outside its slice, writes outside it or
// skips an element fails.
//
// The families live in tests/support/op_table_<family>.cpp; tests/cpu/test_ops_table.cpp and
// tests/gpu/test_ops_table.cpp register the same table with GoogleTest. docs/adding-an-op.md says how
// to add an entry.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "support/gradcheck.h"

namespace test_support {

// A dense row-major array of doubles: what the references see and return.
struct HostArray {
  Shape shape;
  std::vector<double> values;

  HostArray() = default;
  explicit HostArray(Shape s) : shape(std::move(s)), values(static_cast<size_t>(engine::shape_numel(shape)), 0.0) {}
  int64_t numel() const { return static_cast<int64_t>(values.size()); }
  double& operator[](int64_t i) { return values[static_cast<size_t>(i)]; }
  double operator[](int64_t i) const { return values[static_cast<size_t>(i)]; }
  // Row-major element of a 4-D (NHWC, OHWI) or 2-D array.
  double& at(int64_t a, int64_t b, int64_t c, int64_t d) { return values[index(a, b, c, d)]; }
  double at(int64_t a, int64_t b, int64_t c, int64_t d) const { return values[index(a, b, c, d)]; }
  double& at(int64_t r, int64_t c) { return values[static_cast<size_t>(r * shape[1] + c)]; }
  double at(int64_t r, int64_t c) const { return values[static_cast<size_t>(r * shape[1] + c)]; }

 private:
  size_t index(int64_t a, int64_t b, int64_t c, int64_t d) const {
    return static_cast<size_t>(((a * shape[1] + b) * shape[2] + c) * shape[3] + d);
  }
};

// One input of an op: its shape as the op sees it, how its values are drawn, whether its gradient is
// checked, and optionally that it is a channel slice [offset, offset + C) of a wider buffer.
struct OpInput {
  enum class Values { uniform, away_from_zero, distinct, fixed };
  Shape shape;
  Values values = Values::uniform;
  float low = -1.0f, high = 1.0f;  // uniform: [low, high); away_from_zero: +-[low, high); distinct: gap = low
  std::vector<float> fixed;        // Values::fixed
  bool grad = true;
  bool present = true;  // false: the op is given an undefined tensor
  engine::DType dtype = engine::DType::f32;  // bf16: the values are rounded, the op sees a bf16 tensor
  bool bf16_values = false;  // f32 values that bf16 represents exactly (a weight whose bf16 working copy is exact)
  int64_t buffer_channels = 0;  // > 0: a channel slice of a [..., buffer_channels] buffer
  int64_t channel_offset = 0;

  // Chainable: input({2, 5, 5, 3}).range(0.5f, 1.5f).no_grad().channel_slice(7, 2)
  OpInput& range(float lo, float hi) { low = lo, high = hi; return *this; }
  OpInput& away_from_zero(float min_abs = 0.1f, float max_abs = 1.0f) {
    values = Values::away_from_zero, low = min_abs, high = max_abs;
    return *this;
  }
  OpInput& distinct(float gap = 0.05f) { values = Values::distinct, low = gap; return *this; }
  OpInput& with_values(std::vector<float> v) { values = Values::fixed, fixed = std::move(v); return *this; }
  OpInput& no_grad() { grad = false; return *this; }
  OpInput& channel_slice(int64_t channels, int64_t offset) {
    buffer_channels = channels, channel_offset = offset;
    return *this;
  }
};
inline OpInput input(Shape shape) { OpInput in; in.shape = std::move(shape); return in; }
// An input the op takes as undefined (conv2d without bias, batch_norm without gamma): the reference
// sees an empty HostArray.
inline OpInput absent() { OpInput in; in.grad = false, in.present = false; return in; }

// What an entry's run function gets besides its inputs: the device, and preallocated outputs.
class OpRun {
 public:
  explicit OpRun(engine::Device device) : device_(device) {}
  engine::Device device() const { return device_; }
  // Channels [offset, offset + shape.back()) of a NaN-poisoned [..., buffer_channels] buffer; the
  // harness checks afterwards that the channels around the slice are still NaN.
  Tensor output_slice(const Shape& shape, int64_t buffer_channels, int64_t offset,
                      engine::DType dtype = engine::DType::f32);
  // Every output buffer's channels outside its slice are untouched NaN.
  ::testing::AssertionResult gaps_untouched() const;

 private:
  struct Slice {
    Tensor buffer;
    int64_t begin, end;
  };
  engine::Device device_;
  std::vector<Slice> slices_;
};

struct Tolerance {
  double atol, rtol;
};

struct OpCase {
  std::string name;    // unique; letters, digits and '_' (GoogleTest parameter names)
  std::string family;  // conv, batch_norm, elementwise, pool, linear, loss, shape
  std::vector<OpInput> inputs;
  // Runs the op; returns its output and whatever else the op writes that is worth checking (batch_norm's
  // running statistics). The first output is the one differentiated.
  std::function<std::vector<Tensor>(const std::vector<Tensor>& in, OpRun& run)> run;
  // The same outputs, in double, from the dense input values.
  std::function<std::vector<HostArray>(const std::vector<HostArray>& in)> reference;
  Tolerance forward{1e-5, 1e-5};  // CPU op against the reference
  Tolerance gpu{1e-5, 1e-5};      // GPU op (forward and input gradients) against the CPU op
  bool check_grad = true;
  GradcheckOptions grad;
  // Entries with bf16 inputs (bf16_variant): the CPU's bf16 input gradients against the f32 op's on
  // the same (bf16-representable) inputs and output gradient.
  Tolerance bf16_backward{1e-5, 8e-3};
};

// The bf16 version of an f32 entry (docs/precision.md): the inputs numbered in `activations` are bf16
// tensors (values rounded to bf16; the reference sees the rounded values), the others stay f32 (weights,
// BN parameters, targets). Named "bf16_" + c.name; check_cpu_against_reference compares its outputs
// with the double reference within `forward` and its input gradients with the f32 op's within
// `backward`; the GPU is held to `gpu` against the CPU; finite differences stay with the f32 entry.
// `weights`: f32 inputs that the op reads as their bf16 working copy; drawn bf16-representable, so that
// the reference computes with the values the op uses.
OpCase bf16_variant(OpCase c, const std::vector<size_t>& activations, Tolerance forward, Tolerance backward,
                    Tolerance gpu, const std::vector<size_t>& weights = {});
// The entry named `name` of a family's list (to derive a bf16 variant from it).
const OpCase& entry_named(const std::vector<OpCase>& cases, const std::string& name);

// One family's entries (tests/support/op_table_<family>.cpp).
std::vector<OpCase> conv_cases();
std::vector<OpCase> batch_norm_cases();
std::vector<OpCase> elementwise_cases();
std::vector<OpCase> pool_cases();
std::vector<OpCase> linear_cases();
std::vector<OpCase> loss_cases();
std::vector<OpCase> shape_cases();

// The three checks.
void check_cpu_against_reference(const OpCase& c);
void check_gpu_against_cpu(const OpCase& c);  // the caller skips when there is no CUDA device
void check_gradients(const OpCase& c);  // nothing when !c.check_grad

// GoogleTest's name of a parameter, and its printer.
std::string op_case_name(const ::testing::TestParamInfo<OpCase>& info);
void PrintTo(const OpCase& c, std::ostream* os);

}  // namespace test_support

// One parameterised instantiation per family of the table for the value-parameterised suite
// `Suite` (a ::testing::TestWithParam<OpCase>), named e.g. Conv/Suite.Test/<case>: the one list of
// families the CPU and GPU tables run.
#define OP_TABLE_FAMILY(Family, Suite, cases)                                              \
  INSTANTIATE_TEST_SUITE_P(Family, Suite, ::testing::ValuesIn(test_support::cases()), \
                           test_support::op_case_name)
#define INSTANTIATE_OP_TABLE(Suite)                      \
  OP_TABLE_FAMILY(Conv, Suite, conv_cases);              \
  OP_TABLE_FAMILY(BatchNorm, Suite, batch_norm_cases);   \
  OP_TABLE_FAMILY(Elementwise, Suite, elementwise_cases); \
  OP_TABLE_FAMILY(Pool, Suite, pool_cases);              \
  OP_TABLE_FAMILY(Linear, Suite, linear_cases);          \
  OP_TABLE_FAMILY(Loss, Suite, loss_cases);              \
  OP_TABLE_FAMILY(Shape, Suite, shape_cases)
