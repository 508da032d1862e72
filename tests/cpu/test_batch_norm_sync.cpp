// --sync-bn's batch norm on the CPU as two identical processes (tests/support/batch_norm_sync_check.h): the
// all-reduced sums give the one-process results bit for bit, and the parameter gradients stay this
// process's.
#include <gtest/gtest.h>

#include "support/batch_norm_sync_check.h"

namespace {

TEST(BatchNormSync, TwoIdenticalProcessesGiveOneProcessBitForBit) {
  test_support::expect_two_identical_processes_give_one_process(engine::Device::cpu(), false);
}

TEST(BatchNormSync, TwoIdenticalProcessesWithTheGlobalBatchSetGiveOneProcessBitForBit) {
  test_support::expect_two_identical_processes_give_one_process(engine::Device::cpu(), true);
}

}  // namespace
