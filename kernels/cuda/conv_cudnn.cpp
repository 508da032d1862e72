// 2-D convolutions on the GPU through cuDNN's (legacy, still supported in cuDNN 9) convolution API
// (contract in conv.h): forward, backward data, backward filter, NHWC activations with a row stride,
// OHWI weights.
//
// Layout. An NHWC activation [N, H, W, C] with row stride ld (ld > C for a channel slice of a wider
// buffer) is the 4-d tensor descriptor (n, c, h, w) with strides (H*W*ld, 1, W*ld, ld); OHWI weights
// are cuDNN's NHWC filter layout [K, C, R, S]. Cross-correlation, float data and compute; the
// mixed-precision forward (conv2d_forward_mixed) runs bf16 data with float compute (cuDNN's
// PSEUDO_BFLOAT16 configuration: x, w and y bf16, f32 products and sums, y rounded once).
//
// Padding. cuDNN pads symmetrically. Asymmetric padding (TF 'same' with an even kernel or stride 2)
// is done explicitly: the input is copied into a zero-filled buffer [N, H+pt+pb, W+pl+pr, C] and the
// convolution runs unpadded on it; backward data computes the padded input's gradient into a
// temporary and adds/copies its interior into dx.
//
// Algorithms. For each (pass, geometry, strides, element type, device, TF32, deterministic, workspace
// limit, search mode) a plan is made once: the descriptors, and the candidates from cuDNN's heuristics
// (cudnnGet*Algorithm_v7, best first), filtered (status OK; CUDNN_DETERMINISTIC in deterministic mode;
// workspace within conv_workspace_limit(); FMA math, i.e. no TF32, when TF32 is off) with the workspace
// each needs. In the timed search mode (context.h: set_conv_algo_search, the default) the first call
// outside CUDA graph capture then runs every candidate on its own inputs into a scratch output (one
// warm-up, then kTimedRuns runs between two CUDA events) and orders them fastest first; the
// deterministic mode keeps the heuristics' order (a timed choice may change from run to run, and with it
// the bits), and so does a call made during graph capture (the plan is timed by the next call outside
// it). A call runs the candidate that worked last time first, then the others in order: one whose workspace cannot be
// allocated (OutOfMemory from the caching allocator) or that cuDNN rejects for these descriptors
// (a NOT_SUPPORTED or BAD_PARAM status, e.g. for a row stride ld > C) is skipped. If every candidate
// fails on strided descriptors, the call falls back to dense temporaries (copies in and out), and the
// plan remembers that. Any other cuDNN status throws with the pass, the algorithm and the geometry.
//
// Semantics as the CPU: forward overwrites y (beta 0; cuDNN does not read y then) and adds the bias
// with a kernel (the f32 conv + bias + ReLU inference forward is one cudnnConvolutionBiasActivationForward
// call instead, with alpha2 = 0 so that its z input, y itself, is not read); backward data and filter overwrite or accumulate (beta 0 or 1); dbias is the
// deterministic column sum of dy (elementwise.h), accumulated like dw.
// Every call is serialised by one mutex (cuDNN handles are not thread-safe) and runs on the stream
// of context.h.
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "kernels/convert.h"
#include "kernels/cuda/bf16_widen.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/internal.h"
#include "kernels/elementwise.h"

namespace kernels::cuda {
namespace detail {
namespace {

std::string geometry_text(const Conv2dGeometry& g) {
  return "batch " + std::to_string(g.batch) + ", input " + std::to_string(g.in_h) + "x" +
         std::to_string(g.in_w) + "x" + std::to_string(g.in_c) + ", " + std::to_string(g.out_c) +
         " filters " + std::to_string(g.kernel_h) + "x" + std::to_string(g.kernel_w) + ", stride " +
         std::to_string(g.stride_h) + "x" + std::to_string(g.stride_w) + ", padding (t" +
         std::to_string(g.pad_top) + " b" + std::to_string(g.pad_bottom) + " l" +
         std::to_string(g.pad_left) + " r" + std::to_string(g.pad_right) + ")";
}

#define CHECK_CUDNN(expr)                                                                   \
  do {                                                                                      \
    const cudnnStatus_t check_cudnn_status_ = (expr);                                       \
    if (check_cudnn_status_ != CUDNN_STATUS_SUCCESS) {                                      \
      const std::string check_cudnn_message_ =                                              \
          std::string("cuDNN error ") + cudnnGetErrorString(check_cudnn_status_) + " in " #expr; \
      detail::throw_error(check_cudnn_message_.c_str(), __FILE__, __LINE__);                \
    }                                                                                       \
  } while (0)

// --- Descriptors (RAII) ------------------------------------------------------------------------------

// One cuDNN descriptor object, created and destroyed with its type's pair of functions.
template <typename Handle, cudnnStatus_t (*create)(Handle*), cudnnStatus_t (*destroy)(Handle)>
class Descriptor {
 public:
  Descriptor() { CHECK_CUDNN(create(&desc_)); }
  ~Descriptor() { destroy(desc_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  Handle get() const { return desc_; }

 private:
  Handle desc_ = nullptr;
};

using TensorDescriptor =
    Descriptor<cudnnTensorDescriptor_t, &cudnnCreateTensorDescriptor, &cudnnDestroyTensorDescriptor>;
using FilterDescriptor =
    Descriptor<cudnnFilterDescriptor_t, &cudnnCreateFilterDescriptor, &cudnnDestroyFilterDescriptor>;
using ConvolutionDescriptor = Descriptor<cudnnConvolutionDescriptor_t, &cudnnCreateConvolutionDescriptor,
                                         &cudnnDestroyConvolutionDescriptor>;
using ActivationDescriptor = Descriptor<cudnnActivationDescriptor_t, &cudnnCreateActivationDescriptor,
                                        &cudnnDestroyActivationDescriptor>;

int to_int(int64_t value, const char* what, const Conv2dGeometry& g) {
  if (value < 0 || value > INT_MAX) {
    const std::string message = std::string("conv2d: ") + what + " = " + std::to_string(value) +
                                " does not fit cuDNN's 32-bit int (" + geometry_text(g) +
                                "); use a smaller batch";
    detail::throw_error(message.c_str(), __FILE__, __LINE__);
  }
  return int(value);
}

// A convolution as cuDNN runs it: symmetric padding (pad_top == pad_bottom, pad_left == pad_right),
// the row strides of x (and dx) and y (and dy), and the element type of x, w and y (compute is f32).
struct Problem {
  Conv2dGeometry g;
  int64_t ldx = 0, ldy = 0;
  DType dtype = DType::f32;
};

cudnnDataType_t cudnn_type(DType t) { return t == DType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }

// NHWC [n, h, w, c] with row stride ld as a cuDNN tensor (n, c, h, w).
void set_nhwc(const TensorDescriptor& desc, int64_t n, int64_t h, int64_t w, int64_t c, int64_t ld,
              const Conv2dGeometry& g, DType dtype) {
  to_int(n * h * w * ld, "tensor extent (batch * height * width * row stride)", g);
  CHECK_CUDNN(cudnnSetTensor4dDescriptorEx(desc.get(), cudnn_type(dtype), int(n), int(c), int(h),
                                           int(w), int(h * w * ld), 1, int(w * ld), int(ld)));
}

// A problem's descriptors, made once per plan (the plan cache below keeps them with the algorithms).
// bias ([1, out_c, 1, 1]) and relu serve the fused conv + bias + ReLU forward only.
struct Descriptors {
  TensorDescriptor x, y, bias;
  FilterDescriptor w;
  ConvolutionDescriptor conv;
  ActivationDescriptor relu;

  explicit Descriptors(const Problem& p) {
    const Conv2dGeometry& g = p.g;
    set_nhwc(x, g.batch, g.in_h, g.in_w, g.in_c, p.ldx, g, p.dtype);
    set_nhwc(y, g.batch, g.out_h(), g.out_w(), g.out_c, p.ldy, g, p.dtype);
    CHECK_CUDNN(cudnnSetFilter4dDescriptor(w.get(), cudnn_type(p.dtype), CUDNN_TENSOR_NHWC,
                                           to_int(g.out_c, "out_c", g), to_int(g.in_c, "in_c", g),
                                           to_int(g.kernel_h, "kernel_h", g),
                                           to_int(g.kernel_w, "kernel_w", g)));
    CHECK_CUDNN(cudnnSetConvolution2dDescriptor(
        conv.get(), to_int(g.pad_top, "pad", g), to_int(g.pad_left, "pad", g),
        to_int(g.stride_h, "stride", g), to_int(g.stride_w, "stride", g), 1, 1,
        CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CHECK_CUDNN(cudnnSetTensor4dDescriptor(bias.get(), CUDNN_TENSOR_NCHW, cudnn_type(p.dtype), 1,
                                           to_int(g.out_c, "out_c", g), 1, 1));
    // CUDNN_NOT_PROPAGATE_NAN, as PyTorch's fused conv + ReLU sets it: what cudnnConvolutionBiasActivationForward
    // is known to accept (a NaN pre-activation may come out 0 there, where the unfused ReLU keeps it).
    CHECK_CUDNN(cudnnSetActivationDescriptor(relu.get(), CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    int n = 0, c = 0, h = 0, w_out = 0;
    CHECK_CUDNN(cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &n, &c, &h, &w_out));
    if (n != g.batch || c != g.out_c || h != g.out_h() || w_out != g.out_w()) {
      const std::string message = "conv2d: cuDNN's output shape " + std::to_string(n) + "x" +
                                  std::to_string(h) + "x" + std::to_string(w_out) + "x" +
                                  std::to_string(c) + " differs from the geometry's (" +
                                  geometry_text(g) + ")";
      detail::throw_error(message.c_str(), __FILE__, __LINE__);
    }
  }
};

// --- Algorithm plans -----------------------------------------------------------------------------------

// forward_bias_relu: the forward with the bias and ReLU fused into it (its own plans, the forward's
// algorithms).
// forward_residual: y = relu(alpha * conv(x, w) + z + bias), z the residual (Inception-ResNet-v2's block
// tail with the scale as alpha and the bias scaled by it).
enum class Pass : int { forward = 0, backward_data = 1, backward_filter = 2, forward_bias_relu = 3, forward_residual = 4 };

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::backward_data: return "backward data";
    case Pass::backward_filter: return "backward filter";
    case Pass::forward_bias_relu: return "forward with bias and ReLU";
    case Pass::forward_residual: return "forward with bias, scaled residual and ReLU";
  }
  return "?";
}

struct Candidate {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
  float milliseconds = -1.0f;  // the timed search's measurement (infinity: it failed); -1 untimed
};

struct Plan {
  std::unique_ptr<Descriptors> descriptors;  // the problem's, made once
  std::vector<Candidate> candidates;         // best first: by measured time once timed
  size_t preferred = 0;                      // the candidate that worked last
  bool dense_fallback = false;               // strided descriptors failed: use dense temporaries
  bool timed = false;                        // the timed search has ordered the candidates
  std::string rejected;                      // why heuristics' algorithms were left out (for errors)
  bool out_of_memory = false;                // the last run found a candidate's workspace unavailable
  // Every candidate rejected the problem (not for want of memory), dense fallback included: later calls
  // go to the caller's fallback at once instead of trying every algorithm again (the bf16 RGB stem,
  // an unfused shape: every step).
  bool unsupported = false;
  std::string unsupported_why;
};

// The operands of one call, of the problem's element type; which are used depends on the pass.
struct Operands {
  const void* x = nullptr;   // forward, backward filter
  void* dx = nullptr;        // backward data (output)
  const void* dy = nullptr;  // backward data, backward filter
  void* y = nullptr;         // forward (output)
  const void* w = nullptr;   // forward, backward data
  void* dw = nullptr;        // backward filter (output)
  const float* bias = nullptr;  // forward_bias_relu, forward_residual
  const void* z = nullptr;      // forward_residual: the residual, y's shape and strides
  float alpha = 1.0f;           // forward_residual: the scale of conv(x, w)
  float beta = 0.0f;         // 0: overwrite the output, 1: accumulate into it
};

using PlanKey = std::array<int64_t, 23>;

// The largest power of two, up to 16 bytes, that divides every operand's address. cuDNN's kernels may
// need vector-aligned operands (a channel slice of a concatenation starts anywhere), so a plan, its
// timing and a rejection hold for one alignment class: a slice at an odd offset that no algorithm runs
// must not send later aligned calls of the same shape to the fallback.
int64_t operand_alignment(const Operands& o) {
  uintptr_t bits = 16;
  for (const void* ptr : {o.x, static_cast<const void*>(o.dx), o.dy, static_cast<const void*>(o.y), o.w,
                          static_cast<const void*>(o.dw), static_cast<const void*>(o.bias), o.z})
    bits |= reinterpret_cast<uintptr_t>(ptr);
  return int64_t(bits & (~bits + 1));  // the lowest set bit
}

PlanKey plan_key(Pass pass, const Problem& p, const Operands& o, int device) {
  const Conv2dGeometry& g = p.g;
  return {int64_t(pass), device,     g.batch,      g.in_h,      g.in_w,         g.in_c,
          g.out_c,       g.kernel_h, g.kernel_w,   g.stride_h,  g.stride_w,     g.pad_top,
          g.pad_bottom,  g.pad_left, g.pad_right,  p.ldx,       p.ldy,          int64_t(allow_tf32()),
          int64_t(deterministic()), int64_t(conv_workspace_limit()), int64_t(p.dtype),
          int64_t(conv_algo_search()), operand_alignment(o)};
}

std::mutex g_conv_mutex;                 // serialises every convolution call
std::map<PlanKey, Plan> g_plans;         // guarded by g_conv_mutex

cudnnHandle_t handle() { return static_cast<cudnnHandle_t>(cudnn_handle()); }

cudnnStatus_t workspace_size(Pass pass, const Descriptors& d, int algo, size_t* bytes) {
  switch (pass) {
    case Pass::forward:
    case Pass::forward_bias_relu:
    case Pass::forward_residual:
      return cudnnGetConvolutionForwardWorkspaceSize(handle(), d.x.get(), d.w.get(), d.conv.get(),
                                                     d.y.get(), cudnnConvolutionFwdAlgo_t(algo), bytes);
    case Pass::backward_data:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(handle(), d.w.get(), d.y.get(), d.conv.get(),
                                                          d.x.get(), cudnnConvolutionBwdDataAlgo_t(algo),
                                                          bytes);
    case Pass::backward_filter:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(
          handle(), d.x.get(), d.y.get(), d.conv.get(), d.w.get(),
          cudnnConvolutionBwdFilterAlgo_t(algo), bytes);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// What cuDNN's heuristics say about one algorithm.
struct Heuristic {
  int algo;
  cudnnStatus_t status;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
};

template <typename Perf>
std::vector<Heuristic> to_heuristics(const std::vector<Perf>& perf, int returned) {
  std::vector<Heuristic> out;
  for (int i = 0; i < returned; ++i)
    out.push_back({int(perf[i].algo), perf[i].status, perf[i].determinism, perf[i].mathType});
  return out;
}

std::vector<Heuristic> query_heuristics(Pass pass, const Descriptors& d) {
  int max_count = 0, returned = 0;
  switch (pass) {
    case Pass::forward:
    case Pass::forward_bias_relu:
    case Pass::forward_residual: {
      CHECK_CUDNN(cudnnGetConvolutionForwardAlgorithmMaxCount(handle(), &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
      CHECK_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(handle(), d.x.get(), d.w.get(), d.conv.get(),
                                                         d.y.get(), max_count, &returned, perf.data()));
      return to_heuristics(perf, returned);
    }
    case Pass::backward_data: {
      CHECK_CUDNN(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle(), &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
      CHECK_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle(), d.w.get(), d.y.get(),
                                                              d.conv.get(), d.x.get(), max_count,
                                                              &returned, perf.data()));
      return to_heuristics(perf, returned);
    }
    case Pass::backward_filter: {
      CHECK_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle(), &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
      CHECK_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle(), d.x.get(), d.y.get(),
                                                                d.conv.get(), d.w.get(), max_count,
                                                                &returned, perf.data()));
      return to_heuristics(perf, returned);
    }
  }
  return {};
}

// The plan's candidates from the heuristics, filtered (see the file comment).
void find_candidates(Pass pass, DType dtype, Plan& plan) {
  const Descriptors& d = *plan.descriptors;
  // bf16 data: tensor cores multiply bf16 exactly and accumulate in f32, which is the contract, so
  // they are allowed as TF32 would be (TF32 itself does not apply).
  const bool tf32 = allow_tf32() || dtype == DType::bf16;
  const bool want_deterministic = deterministic();
  const size_t limit = conv_workspace_limit();
  // Ask with the math type we want: tensor cores for bf16 data, TF32 tensor cores allowed (DEFAULT) or
  // FMA only for f32.
  const cudnnMathType_t wanted_math =
      dtype == DType::bf16 ? CUDNN_TENSOR_OP_MATH : (tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
  CHECK_CUDNN(cudnnSetConvolutionMathType(d.conv.get(), wanted_math));
  for (const Heuristic& h : query_heuristics(pass, d)) {
    const std::string name = "algorithm " + std::to_string(h.algo);
    if (h.status != CUDNN_STATUS_SUCCESS) continue;  // not applicable to these descriptors
    if (want_deterministic && h.determinism != CUDNN_DETERMINISTIC) {
      plan.rejected += name + ": not deterministic; ";
      continue;
    }
    // Without TF32 every algorithm runs with FMA math; with it, as the heuristics say, but never with
    // down-conversion to half precision.
    cudnnMathType_t math = wanted_math;
    if (tf32) math = h.math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ? CUDNN_DEFAULT_MATH : h.math;
    bool duplicate = false;
    for (const Candidate& c : plan.candidates) duplicate |= c.algo == h.algo && c.math == math;
    if (duplicate) continue;
    CHECK_CUDNN(cudnnSetConvolutionMathType(d.conv.get(), math));
    size_t bytes = 0;
    const cudnnStatus_t status = workspace_size(pass, d, h.algo, &bytes);
    if (status != CUDNN_STATUS_SUCCESS) {
      plan.rejected += name + ": " + cudnnGetErrorString(status) + "; ";
      continue;
    }
    if (bytes > limit) {
      plan.rejected += name + ": workspace " + std::to_string(bytes) + " bytes over the limit " +
                       std::to_string(limit) + "; ";
      continue;
    }
    plan.candidates.push_back({h.algo, math, bytes});
  }
}

// --- Running --------------------------------------------------------------------------------------

// dst = src, [rows, cols] matrices of one element type (a same-type convert is a copy).
void copy_rows(DType dtype, const void* src, int64_t rows, int64_t cols, int64_t ld_src, void* dst, int64_t ld_dst) {
  convert({src, rows, cols, ld_src, dtype}, {dst, rows, cols, ld_dst, dtype});
}

cudnnStatus_t launch(Pass pass, const Descriptors& d, const Candidate& c, void* workspace,
                     const Operands& o) {
  const float alpha = 1.0f;
  switch (pass) {
    case Pass::forward:
      return cudnnConvolutionForward(handle(), &alpha, d.x.get(), o.x, d.w.get(), o.w, d.conv.get(),
                                     cudnnConvolutionFwdAlgo_t(c.algo), workspace, c.workspace,
                                     &o.beta, d.y.get(), o.y);
    case Pass::backward_data:
      return cudnnConvolutionBackwardData(handle(), &alpha, d.w.get(), o.w, d.y.get(), o.dy,
                                          d.conv.get(), cudnnConvolutionBwdDataAlgo_t(c.algo),
                                          workspace, c.workspace, &o.beta, d.x.get(), o.dx);
    case Pass::backward_filter:
      return cudnnConvolutionBackwardFilter(handle(), &alpha, d.x.get(), o.x, d.y.get(), o.dy,
                                            d.conv.get(), cudnnConvolutionBwdFilterAlgo_t(c.algo),
                                            workspace, c.workspace, &o.beta, d.w.get(), o.dw);
    case Pass::forward_bias_relu: {
      // y = relu(conv(x, w) + bias); z is y with weight alpha2 = 0, which cuDNN does not read.
      const float alpha2 = 0.0f;
      return cudnnConvolutionBiasActivationForward(
          handle(), &alpha, d.x.get(), o.x, d.w.get(), o.w, d.conv.get(), cudnnConvolutionFwdAlgo_t(c.algo),
          workspace, c.workspace, &alpha2, d.y.get(), o.y, d.bias.get(), o.bias, d.relu.get(), d.y.get(), o.y);
    }
    case Pass::forward_residual: {
      // y = relu(scale * conv(x, w) + 1 * z + bias), z the residual with y's descriptor.
      const float alpha2 = 1.0f;
      return cudnnConvolutionBiasActivationForward(
          handle(), &o.alpha, d.x.get(), o.x, d.w.get(), o.w, d.conv.get(), cudnnConvolutionFwdAlgo_t(c.algo),
          workspace, c.workspace, &alpha2, d.y.get(), o.z, d.bias.get(), o.bias, d.relu.get(), d.y.get(), o.y);
    }
  }
  return CUDNN_STATUS_BAD_PARAM;
}

// Statuses after which the next candidate is tried: the algorithm does not support these descriptors.
bool try_next_after(cudnnStatus_t status) {
  const int category = int(CUDNN_STATUS_CATEGORY(int(status)));
  return category == int(CUDNN_STATUS_NOT_SUPPORTED) || category == int(CUDNN_STATUS_BAD_PARAM);
}

// Runs the pass with the plan's candidates (the last good one first) until one succeeds.
bool run_candidates(Pass pass, const Problem& p, Plan& plan, const Operands& o,
                    std::string* failures) {
  plan.out_of_memory = false;
  if (plan.candidates.empty()) return false;
  const Descriptors& d = *plan.descriptors;
  std::vector<size_t> order{plan.preferred};
  for (size_t i = 0; i < plan.candidates.size(); ++i)
    if (i != plan.preferred) order.push_back(i);
  for (const size_t index : order) {
    const Candidate& c = plan.candidates[index];
    const std::string name = "algorithm " + std::to_string(c.algo) + " (math " +
                             std::to_string(int(c.math)) + ")";
    CHECK_CUDNN(cudnnSetConvolutionMathType(d.conv.get(), c.math));
    void* workspace = nullptr;
    if (c.workspace > 0) {
      try {
        workspace = allocate(c.workspace, "cuDNN convolution workspace");
      } catch (const OutOfMemory&) {
        *failures += name + ": its workspace of " + std::to_string(c.workspace) +
                     " bytes could not be allocated; ";
        plan.out_of_memory = true;
        continue;
      }
    }
    const cudnnStatus_t status = launch(pass, d, c, workspace, o);
    release(workspace);  // stream-ordered: safe right after the launch (see context.h)
    if (status == CUDNN_STATUS_SUCCESS) {
      // The next call starts here. (Keeping a faster candidate that lacked memory first would retry its
      // allocation, and the allocator's cache flush behind a failed one, on every call while memory stays
      // short.)
      plan.preferred = index;
      if (sync_after_every_launch()) stream_synchronize();
      return true;
    }
    if (!try_next_after(status)) {
      const std::string message = std::string("cuDNN error ") + cudnnGetErrorString(status) +
                                  " in the convolution " + pass_name(pass) + " with " + name +
                                  " (" + geometry_text(p.g) + ", ldx " + std::to_string(p.ldx) +
                                  ", ldy " + std::to_string(p.ldy) + ")";
      detail::throw_error(message.c_str(), __FILE__, __LINE__);
    }
    *failures += name + ": " + cudnnGetErrorString(status) + "; ";
  }
  return false;
}

// --- Timed algorithm search ------------------------------------------------------------------------

constexpr int kTimedRuns = 3;  // timed runs per candidate, after one warm-up run

class Event {
 public:
  Event() { CHECK_CUDA(cudaEventCreate(&event_)); }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

bool stream_is_capturing() {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CHECK_CUDA(cudaStreamIsCapturing(detail::stream(), &status));
  return status != cudaStreamCaptureStatusNone;
}

// Bytes of the pass's output: y (forward), dx (backward data) with their row strides, dw (backward filter).
size_t output_bytes(Pass pass, const Problem& p) {
  const Conv2dGeometry& g = p.g;
  const int64_t elements = pass == Pass::backward_data     ? g.batch * g.in_h * g.in_w * p.ldx
                           : pass == Pass::backward_filter ? g.out_c * g.kernel_h * g.kernel_w * g.in_c
                                                           : g.batch * g.out_h() * g.out_w() * p.ldy;
  return dtype_size(p.dtype) * size_t(elements);
}

// Milliseconds per run of candidate c on the operands o, or infinity when its workspace cannot be had or
// cuDNN rejects it.
float time_candidate(Pass pass, const Descriptors& d, const Candidate& c, const Operands& o,
                     const Event& start, const Event& stop) {
  constexpr float kFailed = std::numeric_limits<float>::infinity();
  CHECK_CUDNN(cudnnSetConvolutionMathType(d.conv.get(), c.math));
  void* workspace = nullptr;
  if (c.workspace > 0) {
    try {
      workspace = allocate(c.workspace, "cuDNN convolution workspace (algorithm timing)");
    } catch (const OutOfMemory&) {
      return kFailed;
    }
  }
  float milliseconds = kFailed;
  if (launch(pass, d, c, workspace, o) == CUDNN_STATUS_SUCCESS) {  // warm-up
    CHECK_CUDA(cudaEventRecord(start.get(), detail::stream()));
    cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
    for (int run = 0; run < kTimedRuns && status == CUDNN_STATUS_SUCCESS; ++run)
      status = launch(pass, d, c, workspace, o);
    CHECK_CUDA(cudaEventRecord(stop.get(), detail::stream()));
    CHECK_CUDA(cudaEventSynchronize(stop.get()));
    if (status == CUDNN_STATUS_SUCCESS) {
      CHECK_CUDA(cudaEventElapsedTime(&milliseconds, start.get(), stop.get()));
      milliseconds /= float(kTimedRuns);
    }
  }
  release(workspace);
  return milliseconds;
}

// Orders the plan's candidates by their time on this call's inputs, fastest first (those that failed
// last, in the heuristics' order). The candidates write the call's own output when the call overwrites it
// and reads nothing the output may share memory with (the call itself then writes it again), else a
// scratch output (an accumulating call must add once; the residual pass's y may be its z); with no memory
// for that scratch, the heuristics' order stays.
void time_candidates(Pass pass, const Problem& p, Plan& plan, const Operands& o) {
  plan.timed = true;
  if (plan.candidates.size() < 2) return;
  std::optional<detail::ScopedBuffer> output;
  Operands scratch = o;
  if (o.beta != 0.0f || pass == Pass::forward_residual) {
    try {
      output.emplace(output_bytes(pass, p), "convolution output (algorithm timing)");
    } catch (const OutOfMemory&) {
      return;
    }
    scratch.beta = 0.0f;
    if (pass == Pass::backward_data)
      scratch.dx = output->as<void>();
    else if (pass == Pass::backward_filter)
      scratch.dw = output->as<void>();
    else
      scratch.y = output->as<void>();
  }
  const Event start, stop;
  for (Candidate& c : plan.candidates)
    c.milliseconds = time_candidate(pass, *plan.descriptors, c, scratch, start, stop);
  std::stable_sort(plan.candidates.begin(), plan.candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.milliseconds < b.milliseconds; });
  plan.preferred = 0;
}

// The plan of the problem (made on first use), timed first where the search mode asks for it.
Plan& plan_for(Pass pass, const Problem& p, const Operands& o) {
  const int device = [] {
    int d = 0;
    CHECK_CUDA(cudaGetDevice(&d));
    return d;
  }();
  const PlanKey key = plan_key(pass, p, o, device);
  auto it = g_plans.find(key);
  if (it == g_plans.end()) {
    Plan plan;
    plan.descriptors = std::make_unique<Descriptors>(p);
    find_candidates(pass, p.dtype, plan);
    it = g_plans.emplace(key, std::move(plan)).first;
  }
  Plan& plan = it->second;
  if (!plan.timed && conv_algo_search() == ConvAlgoSearch::timed && !deterministic() && !stream_is_capturing())
    time_candidates(pass, p, plan, o);
  return plan;
}

// Runs the pass on the problem: strided descriptors first, dense temporaries if every algorithm
// rejects them (x is the input-side tensor, ld p.ldx; y the output-side one, ld p.ldy). Returns false,
// with the reasons in *why, when no cuDNN algorithm could run it (a caller with another way, such as the
// bf16 passes' widened f32 path, takes it; `run` throws).
bool try_run(Pass pass, const Problem& p, const Operands& o, std::string* why) {
  const Conv2dGeometry& g = p.g;
  std::string failures;
  Plan& plan = plan_for(pass, p, o);
  if (plan.unsupported) {
    *why = plan.unsupported_why;
    return false;
  }
  if (!plan.dense_fallback && run_candidates(pass, p, plan, o, &failures)) return true;
  bool out_of_memory = !plan.dense_fallback && plan.out_of_memory;  // this call's

  const bool strided = p.ldx != g.in_c || p.ldy != g.out_c;
  if (strided) {
    plan.dense_fallback = true;
    Problem dense = p;
    dense.ldx = g.in_c;
    dense.ldy = g.out_c;
    const int64_t x_rows = g.batch * g.in_h * g.in_w, y_rows = g.batch * g.out_h() * g.out_w();
    const bool copy_x = p.ldx != g.in_c, copy_y = p.ldy != g.out_c;
    const size_t element = dtype_size(p.dtype);
    detail::ScopedBuffer x_dense(copy_x ? element * size_t(x_rows * g.in_c) : 0,
                                 "dense convolution input (strided fallback)");
    detail::ScopedBuffer y_dense(copy_y ? element * size_t(y_rows * g.out_c) : 0,
                                 "dense convolution output (strided fallback)");
    Operands od = o;
    if (copy_x) {
      void* xd = x_dense.as<void>();
      if (o.x) {
        copy_rows(p.dtype, o.x, x_rows, g.in_c, p.ldx, xd, g.in_c);
        od.x = xd;
      }
      if (o.dx) {
        if (o.beta != 0.0f) copy_rows(p.dtype, o.dx, x_rows, g.in_c, p.ldx, xd, g.in_c);
        od.dx = xd;
      }
    }
    if (copy_y) {
      void* yd = y_dense.as<void>();
      if (o.dy) {
        copy_rows(p.dtype, o.dy, y_rows, g.out_c, p.ldy, yd, g.out_c);
        od.dy = yd;
      }
      if (o.y) {
        if (o.beta != 0.0f) copy_rows(p.dtype, o.y, y_rows, g.out_c, p.ldy, yd, g.out_c);
        od.y = yd;
      }
    }
    std::string dense_failures;
    Plan& dense_plan = plan_for(pass, dense, od);
    if (run_candidates(pass, dense, dense_plan, od, &dense_failures)) {
      if (copy_x && o.dx) copy_rows(p.dtype, od.dx, x_rows, g.in_c, g.in_c, o.dx, p.ldx);
      if (copy_y && o.y) copy_rows(p.dtype, od.y, y_rows, g.out_c, g.out_c, o.y, p.ldy);
      return true;
    }
    failures += "dense fallback: " + dense_failures + dense_plan.rejected;
    out_of_memory = out_of_memory || dense_plan.out_of_memory;
  }
  *why = std::string("no cuDNN algorithm could run the convolution ") + pass_name(pass) + " (" +
         geometry_text(g) + ", " + (p.dtype == DType::bf16 ? "bf16" : "f32") + ", ldx " + std::to_string(p.ldx) +
         ", ldy " + std::to_string(p.ldy) + ", operands aligned to " + std::to_string(operand_alignment(o)) +
         " bytes, TF32 " + (allow_tf32() ? "on" : "off") + ", deterministic " +
         (deterministic() ? "on" : "off") + ", workspace limit " + std::to_string(conv_workspace_limit()) +
         " bytes): " + failures + plan.rejected +
         " Try a larger workspace limit (set_conv_workspace_limit) or a smaller batch.";
  if (!out_of_memory) {  // memory may be there next time; a rejection stays
    plan.unsupported = true;
    plan.unsupported_why = *why;
  }
  return false;
}

void run(Pass pass, const Problem& p, const Operands& o) {
  std::string why;
  if (!try_run(pass, p, o, &why)) detail::throw_error(why.c_str(), __FILE__, __LINE__);
}

void validate(const Conv2dGeometry& g) {
  const bool ok = g.batch >= 0 && g.in_h >= 0 && g.in_w >= 0 && g.in_c > 0 && g.out_c >= 0 &&
                  g.kernel_h > 0 && g.kernel_w > 0 && g.stride_h > 0 && g.stride_w > 0 &&
                  g.pad_top >= 0 && g.pad_bottom >= 0 && g.pad_left >= 0 && g.pad_right >= 0;
  if (!ok) {
    const std::string message = "conv2d: invalid geometry (" + geometry_text(g) +
                                "): sizes must be non-negative, kernel, stride and in_c positive";
    detail::throw_error(message.c_str(), __FILE__, __LINE__);
  }
}

bool symmetric(const Conv2dGeometry& g) {
  return g.pad_top == g.pad_bottom && g.pad_left == g.pad_right;
}

// The geometry of the explicitly padded input: padding folded into the input size, none left.
Conv2dGeometry padded_geometry(const Conv2dGeometry& g) {
  Conv2dGeometry p = g;
  p.in_h = g.in_h + g.pad_top + g.pad_bottom;
  p.in_w = g.in_w + g.pad_left + g.pad_right;
  p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 0;
  return p;
}

// The interior of a padded NHWC buffer [N, Hp, Wp, C] (dense) as strides and an offset, for
// detail::strided_copy over the shape [N, H, W, C].
struct PaddedView {
  int64_t shape[4];
  int64_t padded_strides[4];
  int64_t offset;
  int64_t strides[4];  // of the unpadded tensor with row stride ld
};

PaddedView padded_view(const Conv2dGeometry& g, int64_t ld) {
  const int64_t hp = g.in_h + g.pad_top + g.pad_bottom, wp = g.in_w + g.pad_left + g.pad_right;
  const int64_t c = g.in_c;
  return {{g.batch, g.in_h, g.in_w, c},
          {hp * wp * c, wp * c, c, 1},
          (g.pad_top * wp + g.pad_left) * c,
          {g.in_h * g.in_w * ld, g.in_w * ld, ld, 1}};
}

size_t padded_bytes(const Conv2dGeometry& g, DType dtype) {
  return dtype_size(dtype) * size_t(g.batch * (g.in_h + g.pad_top + g.pad_bottom) *
                                    (g.in_w + g.pad_left + g.pad_right) * g.in_c);
}

// x_padded = zeros [N, Hp, Wp, C] with x (element type dtype, row stride ldx) copied into the interior.
void pad_input(const Conv2dGeometry& g, DType dtype, const void* x, int64_t ldx, void* x_padded) {
  CHECK_CUDA(cudaMemsetAsync(x_padded, 0, padded_bytes(g, dtype), detail::stream()));
  const PaddedView v = padded_view(g, ldx);
  if (dtype == DType::bf16)
    detail::strided_copy(4, v.shape, static_cast<const BFloat16*>(x), v.strides,
                         static_cast<BFloat16*>(x_padded) + v.offset, v.padded_strides);
  else
    detail::strided_copy(4, v.shape, static_cast<const float*>(x), v.strides,
                         static_cast<float*>(x_padded) + v.offset, v.padded_strides, false);
}

// Runs a pass that reads x (forward, fused forward, backward filter; g's input of element type dtype,
// row stride ldx) with the other operands o: directly when the padding is symmetric, else on a
// zero-padded copy of x with the padding folded into the geometry. False as try_run.
bool try_run_on_input(Pass pass, const Conv2dGeometry& g, DType dtype, const void* x, int64_t ldx, int64_t ldy,
                      Operands o, std::string* why) {
  if (symmetric(g)) {
    o.x = x;
    return try_run(pass, Problem{g, ldx, ldy, dtype}, o, why);
  }
  detail::ScopedBuffer x_padded(padded_bytes(g, dtype), "zero-padded convolution input");
  pad_input(g, dtype, x, ldx, x_padded.as<void>());
  o.x = x_padded.as<void>();
  return try_run(pass, Problem{padded_geometry(g), g.in_c, ldy, dtype}, o, why);
}

void run_on_input(Pass pass, const Conv2dGeometry& g, DType dtype, const void* x, int64_t ldx, int64_t ldy,
                  Operands o) {
  std::string why;
  if (!try_run_on_input(pass, g, dtype, x, ldx, ldy, o, &why)) detail::throw_error(why.c_str(), __FILE__, __LINE__);
}

// A pass that cuDNN could not run natively and that runs another way (bf16 widened to f32, or the fused
// conv + bias + ReLU as its parts): counted (conv_fallback_count) and said on stderr, the first three per
// way it runs instead, since it costs speed, never results.
std::mutex g_fallback_mutex;
int64_t g_fallbacks = 0;
std::map<std::string, int> g_fallback_notes;  // notes printed, by what ran instead

void note_fallback(const std::string& why, const char* instead) {
  std::lock_guard<std::mutex> lock(g_fallback_mutex);
  ++g_fallbacks;
  if (g_fallback_notes[instead]++ < 3) std::fprintf(stderr, "note: %s; running %s instead\n", why.c_str(), instead);
}

// y += bias on every row, in f32 (a bf16 y widened and rounded again: kernels/bf16_emulation.h).
void add_bias(MatrixView y, const float* bias) { detail::add_row_vector(y.rows, y.cols, bias, y.f32(), y.ld); }

// The f32 backward data with the weight as a dense view: what conv2d_backward_data_mixed runs on
// widened operands.
void backward_data_view_weight(const Conv2dGeometry& g, ConstMatrixView dy, ConstMatrixView w, MatrixView dx,
                               bool accumulate) {
  conv2d_backward_data(g, dy, w.f32(), dx, accumulate);
}

}  // namespace
}  // namespace detail

// This file's helpers and the backend's shared ones (kernels/cuda/internal.h).
using namespace detail;  // NOLINT(google-build-using-namespace)

void conv2d_forward(const Conv2dGeometry& g, ConstMatrixView x_view, const float* w,
                    const float* bias, MatrixView y_view) {
  if (any_bf16(x_view, y_view)) return run_widened(&conv2d_forward, g, x_view, w, bias, y_view);
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  if (pixels <= 0 || g.out_c <= 0) return;
  const auto [x, ldx, y, ldy] = window_forward_operands("conv2d_forward", g, x_view, y_view);
  validate(g);
  std::lock_guard<std::mutex> lock(g_conv_mutex);
  Operands o;
  o.w = w;
  o.y = y;
  o.beta = 0.0f;
  run_on_input(Pass::forward, g, DType::f32, x, ldx, ldy, o);
  if (bias) detail::add_row_vector(pixels, g.out_c, bias, y, ldy);
}

void conv2d_bias_relu_forward(const Conv2dGeometry& g, ConstMatrixView x_view, const float* w, const float* bias,
                              MatrixView y_view) {
  if (any_bf16(x_view, y_view)) return run_widened(&conv2d_bias_relu_forward, g, x_view, w, bias, y_view);
  conv_bias_relu_check("conv2d_bias_relu_forward", bias);
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  if (pixels <= 0 || g.out_c <= 0) return;
  const auto [x, ldx, y, ldy] = window_forward_operands("conv2d_bias_relu_forward", g, x_view, y_view);
  validate(g);
  std::string why;
  {
    std::lock_guard<std::mutex> lock(g_conv_mutex);
    Operands o;
    o.w = w;
    o.y = y;
    o.bias = bias;
    o.beta = 0.0f;
    if (try_run_on_input(Pass::forward_bias_relu, g, DType::f32, x, ldx, ldy, o, &why)) return;
  }
  // cuDNN has fused kernels for some algorithms and shapes only: the same maths as its parts.
  note_fallback(why, "the convolution, then the bias and ReLU");
  conv2d_forward(g, x_view, w, bias, y_view);
  relu_forward(ConstMatrixView(y_view), y_view);
}

void conv2d_scaled_residual_forward(const Conv2dGeometry& g, ConstMatrixView x_view, const float* w,
                                    const float* bias, float residual_scale, ConstMatrixView residual,
                                    MatrixView y_view, bool relu) {
  if (any_bf16(x_view, residual, y_view))
    return run_widened(&conv2d_scaled_residual_forward, g, x_view, w, bias, residual_scale, residual, y_view, relu);
  scaled_residual_check("conv2d_scaled_residual_forward", bias, residual, y_view);
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  if (pixels <= 0 || g.out_c <= 0) return;
  const auto [x, ldx, y, ldy] = window_forward_operands("conv2d_scaled_residual_forward", g, x_view, y_view);
  // The fused call reads z with y's descriptor: both dense (and apart). Without the ReLU (the net's last
  // Block8) cuDNN would want the identity activation, which only one algorithm takes: the pair then.
  std::string why;
  if (relu && ldy == g.out_c && residual.ld == g.out_c && residual.data != y_view.data) {
    validate(g);
    detail::ScopedBuffer scaled_bias(sizeof(float) * size_t(g.out_c), "scaled convolution bias");
    scale(residual_scale, ConstMatrixView(bias, 1, g.out_c, g.out_c),
          MatrixView(scaled_bias.as<float>(), 1, g.out_c, g.out_c), false);
    std::lock_guard<std::mutex> lock(g_conv_mutex);
    Operands o;
    o.w = w;
    o.y = y;
    o.bias = scaled_bias.as<float>();
    o.z = residual.data;
    o.alpha = residual_scale;
    o.beta = 0.0f;
    if (try_run_on_input(Pass::forward_residual, g, DType::f32, x, ldx, ldy, o, &why)) return;
  }
  if (!why.empty()) note_fallback(why, "the convolution, then the scaled residual");
  conv2d_forward(g, x_view, w, bias, y_view);
  scaled_residual_forward(residual_scale, residual, y_view, y_view, relu);
}

void conv2d_backward_data(const Conv2dGeometry& g, ConstMatrixView dy_view, const float* w,
                          MatrixView dx_view, bool accumulate) {
  if (any_bf16(dy_view, dx_view)) return run_widened(&conv2d_backward_data, g, dy_view, w, dx_view, accumulate);
  const int64_t input_rows = g.batch * g.in_h * g.in_w;
  if (input_rows <= 0 || g.in_c <= 0) return;
  const auto [dy, ldy, dx, ldx] =
      conv_backward_data_operands("conv2d_backward_data", g, dy_view, dx_view);
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  if (pixels <= 0 || g.out_c <= 0) {  // no output reads x: its gradient is zero
    if (!accumulate) fill(dx_view, 0.0f);
    return;
  }
  validate(g);
  std::lock_guard<std::mutex> lock(g_conv_mutex);
  Operands o;
  o.dy = dy;
  o.w = w;
  if (symmetric(g)) {
    o.dx = dx;
    o.beta = accumulate ? 1.0f : 0.0f;
    run(Pass::backward_data, Problem{g, ldx, ldy}, o);
    return;
  }
  // The padded input's gradient, then its interior into dx.
  detail::ScopedBuffer dx_padded(padded_bytes(g, DType::f32), "zero-padded convolution input gradient");
  o.dx = dx_padded.as<float>();
  o.beta = 0.0f;
  run(Pass::backward_data, Problem{padded_geometry(g), g.in_c, ldy}, o);
  const PaddedView v = padded_view(g, ldx);
  detail::strided_copy(4, v.shape, dx_padded.as<float>() + v.offset, v.padded_strides, dx,
                       v.strides, accumulate);
}

namespace detail {
namespace {

// conv2d_backward_filter on bf16 x or dy (conv.h): dW rounded once to bf16, then into the f32 dw. With
// both bf16, cuDNN's bf16 configuration (f32 sums) writes a bf16 scratch; otherwise, or where cuDNN has
// no bf16 algorithm for the shape, the f32 path on widened copies and one rounding into the scratch (the
// CPU's way). dbias: f32 column sums of dy (widened by the kernel's emulation).
void backward_filter_bf16(const Conv2dGeometry& g, ConstMatrixView x_view, ConstMatrixView dy_view, float* dw,
                          float* dbias, bool accumulate) {
  check_backward_filter_views("conv2d_backward_filter", g, x_view, dy_view);
  const int64_t cols = g.kernel_h * g.kernel_w * g.in_c;
  if (g.out_c <= 0 || cols <= 0) return;
  const int64_t pixels = g.output_rows();
  if (dbias) column_sums(ConstMatrixView(dy_view.data, pixels > 0 ? pixels : 0, g.out_c, dy_view.ld, dy_view.dtype),
                         dbias, accumulate);
  const MatrixView dw_view(dw, g.out_c, cols, cols);
  if (pixels <= 0) {
    if (!accumulate) fill(dw_view, 0.0f);
    return;
  }
  detail::ScopedBuffer rounded(sizeof(BFloat16) * size_t(g.out_c * cols), "bf16 weight gradient");
  const MatrixView rounded_view(rounded.as<void>(), g.out_c, cols, cols, DType::bf16);
  bool ran = false;
  std::string why;
  if (x_view.dtype == DType::bf16 && dy_view.dtype == DType::bf16) {
    validate(g);
    std::lock_guard<std::mutex> lock(g_conv_mutex);
    Operands o;
    o.dy = dy_view.data;
    o.dw = rounded.as<void>();
    o.beta = 0.0f;
    ran = try_run_on_input(Pass::backward_filter, g, DType::bf16, x_view.data, x_view.ld, dy_view.ld, o, &why);
  }
  if (!ran) {
    if (!why.empty()) note_fallback(why, "it in f32 on widened copies");
    detail::ScopedBuffer sums(sizeof(float) * size_t(g.out_c * cols), "f32 weight gradient");
    const MatrixView sums_view(sums.as<float>(), g.out_c, cols, cols);
    run_widened(&conv2d_backward_filter, g, x_view, dy_view, sums.as<float>(), nullptr, false);
    convert(sums_view, rounded_view);
  }
  if (accumulate)
    add(dw_view, rounded_view, dw_view);  // f32 + widened bf16, in f32
  else
    convert(rounded_view, dw_view);
}

}  // namespace
}  // namespace detail

void conv2d_backward_filter(const Conv2dGeometry& g, ConstMatrixView x_view,
                            ConstMatrixView dy_view, float* dw, float* dbias, bool accumulate) {
  if (any_bf16(x_view, dy_view)) return backward_filter_bf16(g, x_view, dy_view, dw, dbias, accumulate);
  const int64_t cols = g.kernel_h * g.kernel_w * g.in_c;
  if (g.out_c <= 0 || cols <= 0) return;
  const int64_t pixels = g.batch * g.out_h() * g.out_w();
  const auto [x, ldx, dy, ldy] =
      conv_backward_filter_operands("conv2d_backward_filter", g, x_view, dy_view);
  if (dbias)
    column_sums(ConstMatrixView(dy, pixels > 0 ? pixels : 0, g.out_c, ldy), dbias, accumulate);
  if (pixels <= 0) {
    if (!accumulate)
      CHECK_CUDA(cudaMemsetAsync(dw, 0, sizeof(float) * size_t(g.out_c * cols), detail::stream()));
    return;
  }
  validate(g);
  std::lock_guard<std::mutex> lock(g_conv_mutex);
  Operands o;
  o.dy = dy;
  o.dw = dw;
  o.beta = accumulate ? 1.0f : 0.0f;
  run_on_input(Pass::backward_filter, g, DType::f32, x, ldx, ldy, o);
}

void conv2d_forward_mixed(const Conv2dGeometry& g, ConstMatrixView x_view, ConstMatrixView w_view,
                          const float* bias, MatrixView y_view) {
  const MixedConvOperands m = conv_forward_mixed_operands("conv2d_forward_mixed", g, x_view, w_view, y_view);
  const int64_t pixels = g.output_rows();
  if (pixels <= 0 || g.out_c <= 0) return;
  if (m.inputs == DType::bf16 && m.output == DType::bf16) {
    // bf16 x, w and y: cuDNN on the bf16 data, f32 compute, y rounded once; a bias is then added in f32
    // and y rounded a second time (cuDNN's bf16 configuration has no f32 output to add it to first).
    validate(g);
    std::string why;
    bool ran = false;
    {
      std::lock_guard<std::mutex> lock(g_conv_mutex);
      Operands o;
      o.w = w_view.data;
      o.y = y_view.data;
      o.beta = 0.0f;
      ran = try_run_on_input(Pass::forward, g, DType::bf16, x_view.data, x_view.ld, y_view.ld, o, &why);
    }
    if (ran) {
      if (bias) run_widened(&add_bias, y_view, bias);
      return;
    }
    // No bf16 kernel for this shape (e.g. tensor cores want channels in multiples of 8; the RGB stem
    // has 3): the f32 path below gives the same y, rounded once.
    note_fallback(why, "it in f32 on widened copies");
  }
  {
    // f32 compute on f32 copies (bf16 values are exact in f32, and in TF32), y rounded once if bf16.
    const int64_t x_rows = g.input_rows(), w_cols = g.kernel_h * g.kernel_w * g.in_c;
    const bool widen = m.inputs == DType::bf16;
    detail::ScopedBuffer x32(widen ? sizeof(float) * size_t(x_rows * g.in_c) : 0, "widened convolution input");
    detail::ScopedBuffer w32(widen ? sizeof(float) * size_t(g.out_c * w_cols) : 0, "widened convolution filter");
    detail::ScopedBuffer y32(m.output == DType::bf16 ? sizeof(float) * size_t(pixels * g.out_c) : 0,
                             "f32 convolution output");
    ConstMatrixView x = x_view, w = w_view;
    if (widen) {
      x = MatrixView(x32.as<float>(), x_rows, g.in_c, g.in_c);
      w = MatrixView(w32.as<float>(), g.out_c, w_cols, w_cols);
      convert(x_view, MatrixView(x32.as<float>(), x_rows, g.in_c, g.in_c));
      convert(w_view, MatrixView(w32.as<float>(), g.out_c, w_cols, w_cols));
    }
    const MatrixView y = m.output == DType::bf16 ? MatrixView(y32.as<float>(), pixels, g.out_c, g.out_c) : y_view;
    conv2d_forward(g, x, w.f32(), bias, y);
    if (m.output == DType::bf16) convert(y, y_view);
  }
}

void conv2d_backward_data_mixed(const Conv2dGeometry& g, ConstMatrixView dy_view, ConstMatrixView w_view,
                                MatrixView dx_view, bool accumulate) {
  conv_backward_data_mixed_operands("conv2d_backward_data_mixed", g, dy_view, w_view, dx_view);
  if (g.input_rows() <= 0 || g.in_c <= 0) return;
  // cuDNN on bf16 data needs dy, w and dx all bf16; with asymmetric padding it computes the padded
  // input's gradient (rounded) whose interior is then copied, so accumulating there would round twice.
  const bool native = dy_view.dtype == DType::bf16 && w_view.dtype == DType::bf16 && dx_view.dtype == DType::bf16 &&
                      (symmetric(g) || !accumulate);
  if (!native) return run_widened(&backward_data_view_weight, g, dy_view, w_view, dx_view, accumulate);
  if (g.output_rows() <= 0 || g.out_c <= 0) {  // no output reads x: its gradient is zero
    if (!accumulate) fill(dx_view, 0.0f);
    return;
  }
  validate(g);
  std::string why;
  {
    std::lock_guard<std::mutex> lock(g_conv_mutex);
    Operands o;
    o.dy = dy_view.data;
    o.w = w_view.data;
    if (symmetric(g)) {
      o.dx = dx_view.data;
      o.beta = accumulate ? 1.0f : 0.0f;
      if (try_run(Pass::backward_data, Problem{g, dx_view.ld, dy_view.ld, DType::bf16}, o, &why)) return;
    } else {
      detail::ScopedBuffer dx_padded(padded_bytes(g, DType::bf16), "zero-padded convolution input gradient");
      o.dx = dx_padded.as<void>();
      o.beta = 0.0f;
      if (try_run(Pass::backward_data, Problem{padded_geometry(g), g.in_c, dy_view.ld, DType::bf16}, o, &why)) {
        const PaddedView v = padded_view(g, dx_view.ld);
        detail::strided_copy(4, v.shape, dx_padded.as<BFloat16>() + v.offset, v.padded_strides, dx_view.bf16(),
                             v.strides);
        return;
      }
    }
  }
  // No bf16 kernel for this shape: the f32 path on widened copies (a failed try wrote nothing to dx).
  note_fallback(why, "it in f32 on widened copies");
  run_widened(&backward_data_view_weight, g, dy_view, w_view, dx_view, accumulate);
}

int64_t conv_fallback_count() {
  std::lock_guard<std::mutex> lock(g_fallback_mutex);
  return g_fallbacks;
}

}  // namespace kernels::cuda
