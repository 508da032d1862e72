// The op table (tests/support/op_table.h) on the GPU: every entry's CUDA forward and backward against
// the CPU op, in full float32 (TF32 off). Skips without a CUDA device.
#include "gpu_test_util.h"
#include "support/op_table.h"

namespace {

using test_support::OpCase;

class OpGpu : public ::testing::TestWithParam<OpCase> {};
TEST_P(OpGpu, ForwardAndBackwardMatchCpu) {
  SKIP_WITHOUT_CUDA();
  test_support::check_gpu_against_cpu(GetParam());
}

INSTANTIATE_OP_TABLE(OpGpu);

}  // namespace
