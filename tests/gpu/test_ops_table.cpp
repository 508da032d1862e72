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

#define OP_TABLE_FAMILY(Family, cases) \
  INSTANTIATE_TEST_SUITE_P(Family, OpGpu, ::testing::ValuesIn(test_support::cases()), test_support::op_case_name)

OP_TABLE_FAMILY(Conv, conv_cases);
OP_TABLE_FAMILY(BatchNorm, batch_norm_cases);
OP_TABLE_FAMILY(Elementwise, elementwise_cases);
OP_TABLE_FAMILY(Pool, pool_cases);
OP_TABLE_FAMILY(Linear, linear_cases);
OP_TABLE_FAMILY(Loss, loss_cases);
OP_TABLE_FAMILY(Shape, shape_cases);

}  // namespace
