// Recomputing parts of the graph in backward instead of keeping them (elsewhere called "gradient
// checkpointing"; in this project a checkpoint is only a run's saved state), two ways:
//
// 1. recompute_in_backward: a region whose intermediates are recomputed.
//
//      y = recompute_in_backward(fn, inputs, state)
//
//    Forward runs y = fn(inputs) with recording off: fn's intermediates are freed as soon as fn returns,
//    and the one node recorded on y keeps only the inputs (handles: an input that is a view of a wider
//    buffer costs nothing). Backward, given dL/dy, runs fn again on detached aliases of the inputs with
//    recording on, back-propagates dL/dy through that local graph, hands the inputs their gradients
//    through the enclosing backward walk and lets the parameters fn reads (leaves) accumulate theirs as
//    usual. The local graph is freed before the walk goes on.
//
// 2. with_recomputed: a region's output that its consumers keep, recomputed in place for them.
//
//      y = with_recomputed(fn, inputs, consumer, state)      // y = consumer(z), z = fn(inputs)
//
//    A convolution keeps its input for the weight gradient, so recomputing a whole BN - ReLU - conv region
//    would recompute the convolution in backward. Here z = fn(inputs) is computed with recording off and
//    handed to consumer (ordinary recorded ops, e.g. a convolution, which save z's handle); as soon as
//    consumer returns, z's memory is given back. In backward, when the gradient of y arrives (before any
//    of the consumer's nodes: they are upstream of y), fn is recomputed with recording on and z's handle
//    is pointed at the result, so the consumer's nodes find the values they saved; the gradient of z then
//    flows through that recomputed graph to the inputs and parameters. z's memory exists while consumer
//    runs, and again from the recompute to the end of z's backward. This is the shared-storage idea of
//    memory-efficient DenseNets (Pleiss et al. 2017). consumer must not let z escape (only y may).
//
// Both recompute exactly what the forward computed, so the gradients are those of the plain graph, bit
// for bit, when fn is deterministic. Batch norm in training mode is the case that needs thought:
//  - its batch statistics are recomputed from the same input by the same kernels, whose reductions have
//    a fixed order on both backends (kernels/cpu/batchnorm.cpp, kernels/cuda/reduce.cuh): the same
//    mean and 1/std to the last bit, hence the same output and the same backward;
//  - it also updates the running statistics in place. Pass them as `state`: the recompute snapshots
//    them and puts them back afterwards, so a step updates them once, as without recomputation.
//
// Rules for fn (both):
//  - deterministic, and the inputs must hold the same values in backward as in forward (true of every
//    tensor the engine saves; DenseNet's block buffer is only ever written beyond the views it hands out);
//  - it reads tensors with autograd history only through `inputs` (a region must not reach into the
//    graph around it; backward checks this and names the op). Leaves it reads directly (module
//    parameters) are fine: they receive their gradients from the recompute;
//  - it must not write into its inputs, and must return a new tensor (not an input).
// When grad mode is off or no input requires a gradient, recompute_in_backward is just fn(inputs) and
// with_recomputed consumer(fn(inputs)) (parameters read directly then get their gradients from the
// ordinary graph).
#pragma once
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace engine {

using RegionFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// fn(inputs), recomputed in backward instead of kept (see above). `state`: tensors fn updates in place
// (batch norm's running statistics), left by the recompute as the forward left them.
Tensor recompute_in_backward(const RegionFn& fn, const std::vector<Tensor>& inputs,
                             const std::vector<Tensor>& state = {});

using ConsumerFn = std::function<Tensor(const Tensor& z)>;

// consumer(fn(inputs)), fn's output recomputed for the consumer's backward instead of kept (see above).
Tensor with_recomputed(const RegionFn& fn, const std::vector<Tensor>& inputs, const ConsumerFn& consumer,
                       const std::vector<Tensor>& state = {});

}  // namespace engine
