// The op table's harness (see op_table.h): inputs drawn per entry, channel-slice views with poisoned
// surroundings, and the three checks.
#include "support/op_table.h"

#include <sstream>

#include "support/compare.h"

#ifdef ENGINE_WITH_CUDA
#include "kernels/cuda/context.h"
#endif

namespace test_support {

using namespace engine;

Tensor OpRun::output_slice(const Shape& shape, int64_t buffer_channels, int64_t offset, DType dtype) {
  Shape buffer_shape = shape;
  buffer_shape.back() = buffer_channels;
  const Tensor buffer = poisoned_tensor(buffer_shape, device_).to(dtype);
  slices_.push_back({buffer, offset, offset + shape.back()});
  return buffer.slice(-1, offset, offset + shape.back());
}

namespace {

// Channels outside [begin, end) of `buffer` are all NaN poison.
::testing::AssertionResult poison_around(const Tensor& buffer, int64_t begin, int64_t end, const char* what) {
  const std::vector<float> v = buffer.to_vector();
  const int64_t channels = buffer.size(-1);
  for (size_t i = 0; i < v.size(); ++i) {
    const int64_t c = static_cast<int64_t>(i) % channels;
    if ((c < begin || c >= end) && !std::isnan(v[i]))
      return ::testing::AssertionFailure() << what << " channel " << c << " outside the slice [" << begin << ", "
                                           << end << ") of element " << index_str(i, buffer.shape())
                                           << " was written: " << v[i];
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

::testing::AssertionResult OpRun::gaps_untouched() const {
  for (const Slice& s : slices_) {
    const auto result = poison_around(s.buffer, s.begin, s.end, "output buffer");
    if (!result) return result;
  }
  return ::testing::AssertionSuccess();
}

namespace {

bool has_bf16_input(const OpCase& c) {
  for (const OpInput& in : c.inputs)
    if (in.present && in.dtype == DType::bf16) return true;
  return false;
}

uint64_t name_seed(const std::string& name) {  // FNV-1a: the same inputs for an entry on every run
  uint64_t h = 1469598103934665603ull;
  for (char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

std::vector<float> draw(const OpInput& in, Generator& gen) {
  const Shape& shape = in.shape;
  switch (in.values) {
    case OpInput::Values::uniform: return random_tensor(shape, gen, in.low, in.high).to_vector();
    case OpInput::Values::away_from_zero: return random_away_from_zero(shape, gen, in.low, in.high).to_vector();
    case OpInput::Values::distinct: return random_distinct(shape, gen, in.low).to_vector();
    case OpInput::Values::fixed: break;
  }
  EXPECT_EQ(static_cast<int64_t>(in.fixed.size()), shape_numel(shape)) << "fixed values of an input";
  return in.fixed;
}

bool is_absent(const OpInput& in) { return !in.present; }

// An entry's inputs: the dense values (for the reference), the leaves (what gradients flow to: the
// wide buffer of a channel slice) and the views the op is given.
struct Inputs {
  std::vector<HostArray> dense;
  std::vector<Tensor> leaves;
  std::vector<std::vector<float>> leaf_values;
  std::vector<Shape> leaf_shapes;

  // The channels around a slice are NaN (forward checks) or random (finite differences, which
  // perturb every element of a leaf).
  explicit Inputs(const OpCase& c, bool poison_gaps) {
    Generator gen(name_seed(c.name), 7);
    for (const OpInput& in : c.inputs) {
      if (is_absent(in)) {
        dense.emplace_back();
        leaf_values.emplace_back();
        leaf_shapes.emplace_back();
        continue;
      }
      std::vector<float> values = draw(in, gen);
      if (in.dtype == DType::bf16 || in.bf16_values)
        for (float& v : values) v = static_cast<float>(kernels::BFloat16(v));
      HostArray d(in.shape);
      for (size_t i = 0; i < values.size(); ++i) d.values[i] = values[i];
      dense.push_back(d);
      if (in.buffer_channels == 0) {
        leaf_values.push_back(values);
        leaf_shapes.push_back(in.shape);
        continue;
      }
      const int64_t channels = in.shape.back();
      EXPECT_LE(in.channel_offset + channels, in.buffer_channels) << c.name << ": slice outside its buffer";
      Shape wide = in.shape;
      wide.back() = in.buffer_channels;
      std::vector<float> buffer = poison_gaps ? poisoned(static_cast<size_t>(shape_numel(wide)))
                                              : random_tensor(wide, gen).to_vector();
      const int64_t rows = shape_numel(in.shape) / channels;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t ch = 0; ch < channels; ++ch)
          buffer[static_cast<size_t>(r * in.buffer_channels + in.channel_offset + ch)] =
              values[static_cast<size_t>(r * channels + ch)];
      leaf_values.push_back(buffer);
      leaf_shapes.push_back(wide);
    }
  }

  // Fresh leaves on `device` (batch_norm's running statistics are updated in place, so every run
  // starts from its own copies).
  std::vector<Tensor> make_leaves(const OpCase& c, Device device) const {
    std::vector<Tensor> out;
    for (size_t k = 0; k < c.inputs.size(); ++k) {
      if (is_absent(c.inputs[k])) {
        out.emplace_back();
        continue;
      }
      Tensor t = Tensor::from_vector(leaf_shapes[k], leaf_values[k], device, c.inputs[k].dtype);
      if (c.inputs[k].grad) t.set_requires_grad();
      out.push_back(t);
    }
    return out;
  }
};

// What the op is given: the leaves, or their channel slices.
std::vector<Tensor> views_of(const OpCase& c, const std::vector<Tensor>& leaves) {
  std::vector<Tensor> views;
  for (size_t k = 0; k < leaves.size(); ++k) {
    const OpInput& in = c.inputs[k];
    views.push_back(in.buffer_channels > 0 && leaves[k].defined()
                        ? slice_channels(leaves[k], in.channel_offset, in.channel_offset + in.shape.back())
                        : leaves[k]);
  }
  return views;
}

// The sliced inputs' surrounding channels are still poison: the op wrote nothing outside its inputs.
void expect_input_gaps_untouched(const OpCase& c, const std::vector<Tensor>& leaves) {
  for (size_t k = 0; k < leaves.size(); ++k) {
    const OpInput& in = c.inputs[k];
    if (in.buffer_channels == 0 || !leaves[k].defined()) continue;
    EXPECT_TRUE(poison_around(leaves[k].detach(), in.channel_offset, in.channel_offset + in.shape.back(),
                              "input buffer"))
        << "input " << k;
  }
}

}  // namespace

namespace {
void check_bf16_backward_against_f32(const OpCase& c);
}  // namespace

void check_cpu_against_reference(const OpCase& c) {
  const Inputs inputs(c, /*poison_gaps=*/true);
  const std::vector<Tensor> leaves = inputs.make_leaves(c, Device::cpu());
  OpRun run(Device::cpu());
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    outputs = c.run(views_of(c, leaves), run);
  }
  const std::vector<HostArray> expected = c.reference(inputs.dense);
  ASSERT_EQ(outputs.size(), expected.size()) << "the op and its reference return different numbers of outputs";
  for (size_t k = 0; k < outputs.size(); ++k)
    EXPECT_TRUE(allclose(outputs[k], expected[k].values, expected[k].shape, c.forward.atol, c.forward.rtol))
        << "output " << k << " against the double reference";
  EXPECT_TRUE(run.gaps_untouched());
  expect_input_gaps_untouched(c, leaves);
  if (has_bf16_input(c)) check_bf16_backward_against_f32(c);
}

namespace {

// Forward outputs, then the gradients of every leaf that requires one from backward(first output * R).
struct DeviceResult {
  std::vector<Tensor> outputs;
  std::vector<Tensor> grads;
};

// The output gradient R is drawn in f32 and, for an entry with bf16 inputs, rounded to bf16, so that
// the f32 op run on the same values for comparison (check_bf16_backward_against_f32) sees the same R.
DeviceResult run_forward_backward(const OpCase& c, const Inputs& inputs, Device device, bool bf16_seed = false) {
  DeviceResult r;
  const std::vector<Tensor> leaves = inputs.make_leaves(c, device);
  OpRun run(device);
  r.outputs = c.run(views_of(c, leaves), run);
  EXPECT_TRUE(run.gaps_untouched()) << device.str();
  expect_input_gaps_untouched(c, leaves);
  const Tensor& y = r.outputs.at(0);
  if (y.requires_grad()) {
    Generator gen(name_seed(c.name), 11);
    Tensor seed = random_tensor(y.shape(), gen, 0.5f, 1.5f);
    if (bf16_seed || has_bf16_input(c)) seed = seed.to(DType::bf16).to(DType::f32);
    y.backward(seed.to(device).to(y.dtype()));
  }
  for (size_t k = 0; k < leaves.size(); ++k)
    r.grads.push_back(leaves[k].defined() && leaves[k].requires_grad() ? leaves[k].grad() : Tensor());
  for (Tensor& t : r.outputs) t = t.detach();
  return r;
}

}  // namespace

namespace {

// Full float32 on the GPU for the duration of a check (TF32 would need tolerances of 1e-3).
class NoTf32 {
 public:
#ifdef ENGINE_WITH_CUDA
  NoTf32() : previous_(kernels::cuda::allow_tf32()) { kernels::cuda::set_allow_tf32(false); }
  ~NoTf32() { kernels::cuda::set_allow_tf32(previous_); }

 private:
  bool previous_;
#else
  NoTf32() {}  // no CUDA backend: nothing to switch
#endif
};

}  // namespace

namespace {

// A bf16 entry's input gradients on the CPU against the f32 op's on the same inputs (the bf16 values,
// widened) and the same output gradient: what bf16 storage of the activations and their gradients costs.
void check_bf16_backward_against_f32(const OpCase& c) {
  OpCase f32 = c;
  for (OpInput& in : f32.inputs) in.dtype = DType::f32;
  const Inputs bf16_inputs(c, /*poison_gaps=*/true), f32_inputs(c, /*poison_gaps=*/true);
  const DeviceResult narrow = run_forward_backward(c, bf16_inputs, Device::cpu());
  const DeviceResult wide = run_forward_backward(f32, f32_inputs, Device::cpu(), /*bf16_seed=*/true);
  for (size_t k = 0; k < wide.grads.size(); ++k) {
    if (!wide.grads[k].defined()) continue;
    ASSERT_TRUE(narrow.grads[k].defined()) << "input " << k << " got no gradient in bf16";
    EXPECT_EQ(narrow.grads[k].dtype(), c.inputs[k].dtype) << "the gradient of input " << k << " has its dtype";
    EXPECT_TRUE(allclose(narrow.grads[k], wide.grads[k], c.bf16_backward.atol, c.bf16_backward.rtol))
        << "bf16 gradient of input " << k << " against the f32 op's";
  }
}

}  // namespace

OpCase bf16_variant(OpCase c, const std::vector<size_t>& activations, Tolerance forward, Tolerance backward,
                    Tolerance gpu, const std::vector<size_t>& weights) {
  c.name = "bf16_" + c.name;
  for (size_t k : activations) c.inputs.at(k).dtype = DType::bf16;
  for (size_t k : weights) c.inputs.at(k).bf16_values = true;
  c.forward = forward;
  c.bf16_backward = backward;
  c.gpu = gpu;
  c.check_grad = false;  // finite differences stay with the f32 entry
  return c;
}

const OpCase& entry_named(const std::vector<OpCase>& cases, const std::string& name) {
  for (const OpCase& c : cases)
    if (c.name == name) return c;
  throw std::invalid_argument("op table: no entry named " + name);
}

void check_gpu_against_cpu(const OpCase& c) {
  const NoTf32 full_float32;
  const Inputs inputs(c, /*poison_gaps=*/true);
  const DeviceResult cpu = run_forward_backward(c, inputs, Device::cpu());
  const DeviceResult gpu = run_forward_backward(c, inputs, Device::cuda());
  ASSERT_EQ(cpu.outputs.size(), gpu.outputs.size());
  for (size_t k = 0; k < cpu.outputs.size(); ++k)
    EXPECT_TRUE(allclose(gpu.outputs[k], cpu.outputs[k], c.gpu.atol, c.gpu.rtol)) << "output " << k;
  for (size_t k = 0; k < cpu.grads.size(); ++k) {
    if (!cpu.grads[k].defined()) continue;
    ASSERT_TRUE(gpu.grads[k].defined()) << "input " << k << " got no gradient on the GPU";
    EXPECT_TRUE(allclose(gpu.grads[k], cpu.grads[k], c.gpu.atol, c.gpu.rtol)) << "gradient of input " << k;
  }
}

void check_gradients(const OpCase& c) {
  if (!c.check_grad) return;
  const Inputs inputs(c, /*poison_gaps=*/false);
  const std::vector<Tensor> leaves = inputs.make_leaves(c, Device::cpu());
  EXPECT_TRUE(gradcheck(
      [&c](const std::vector<Tensor>& in) {
        OpRun run(Device::cpu());
        return c.run(views_of(c, in), run).at(0);
      },
      leaves, c.grad));
}

std::string op_case_name(const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; }

void PrintTo(const OpCase& c, std::ostream* os) { *os << c.family << "/" << c.name; }

}  // namespace test_support
