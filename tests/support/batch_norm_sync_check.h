// --sync-bn as two processes that hold the same data: a synchronised batch norm whose all-reduce doubles
// every sum it is given. Doubling is exact, so every mean (2S / 2M) is the one-process value bit for bit:
// y, dx and the saved and running statistics must equal a one-process synchronised batch norm's exactly,
// and dgamma, dbeta (this process's own sums, never all-reduced) must not come out doubled. Run with the
// row count left to the all-reduce, and with the global batch set (2N images, no collective for M).
// Keras's conventions (biased running variance: M/(M-1) would differ between M and 2M rows).
// `doubling`: the all-reduce to run, which must double what it is given (by default the sums go through the
// host and are doubled there; a one-rank NCCL communicator with a test scale of 2 doubles them on the
// device, but not a row count in host memory: pass it with set_global_images only).
#pragma once
#include "engine/batch_norm_sync.h"
#include "engine/tensor.h"

namespace test_support {

void expect_two_identical_processes_give_one_process(engine::Device device, bool set_global_images,
                                                     const engine::ChannelSumAllReduce& doubling = {});

}  // namespace test_support
