// --sync-bn's batch norm on the GPU as two identical processes (tests/support/batch_norm_sync_check.h): the
// all-reduced sums (here doubled through the host) give the one-process results bit for bit, and the
// parameter gradients stay this process's, so the device-side order "parameter gradients, then the
// in-place all-reduce" holds.
#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "support/batch_norm_sync_check.h"

namespace {

TEST(BatchNormSyncGpu, TwoIdenticalProcessesGiveOneProcessBitForBit) {
  SKIP_WITHOUT_CUDA();
  test_support::expect_two_identical_processes_give_one_process(engine::Device::cuda(0), false);
}

TEST(BatchNormSyncGpu, TwoIdenticalProcessesWithTheGlobalBatchSetGiveOneProcessBitForBit) {
  SKIP_WITHOUT_CUDA();
  test_support::expect_two_identical_processes_give_one_process(engine::Device::cuda(0), true);
}

}  // namespace
