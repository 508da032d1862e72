// GradientBuckets (engine/grad_buckets.h) in one process, where the sums themselves are no-ops and the
// bookkeeping is what is tested: buckets cut from the last parameter back; a parameter used twice and one
// read inside a recomputed region (engine/recompute.h, whose graph exists only during backward) are final
// only after all their contributions; from the second step every bucket starts during backward; the
// gradients are untouched; a graph that grows after its bucket started is an error naming the remedy.
// The sums over processes are tested under mpirun (tests/cpu/test_experiment_distributed.cpp: bucketed
// and unbucketed runs bit-equal) and on a GPU (tests/gpu/test_distributed.cpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/distributed.h"
#include "engine/grad_buckets.h"
#include "engine/ops.h"
#include "engine/recompute.h"

namespace {

using namespace engine;

struct Params {
  Tensor p0 = Tensor::full({4}, 0.5f).set_requires_grad(true);
  Tensor p1 = Tensor::full({4}, 1.5f).set_requires_grad(true);
  Tensor p2 = Tensor::full({4}, -2.0f).set_requires_grad(true);
  NamedTensors named() const { return {{"p0", p0}, {"p1", p1}, {"p2", p2}}; }
};

// sum(2 p0 + p1) (p1 read directly inside a recomputed region) + sum(p2) + sum(3 p2); `extra_p2_first`
// adds sum(5 p2) recorded before everything else, so that backward reaches it last.
Tensor loss_of(const Params& p, bool extra_p2_first = false) {
  const Tensor extra = extra_p2_first ? sum(scale(p.p2, 5.0f)) : Tensor();
  const Tensor y = recompute_in_backward([&p](const std::vector<Tensor>& in) { return add(in[0], p.p1); },
                                         {scale(p.p0, 2.0f)});
  Tensor loss = add(add(sum(y), sum(p.p2)), sum(scale(p.p2, 3.0f)));
  return extra_p2_first ? add(loss, extra) : loss;
}

void step(ParameterArena& arena, GradientBuckets& buckets, const Tensor& loss) {
  arena.zero_grad();
  buckets.begin_backward();
  loss.backward();
  buckets.finish_backward();
}

TEST(GradientBuckets, CutFromTheLastParameterBack) {
  Params p;
  ParameterArena arena(p.named());
  GradientBuckets buckets(arena, Distributed::world(), 5 * sizeof(float));  // closes at 5 floats or more
  ASSERT_EQ(buckets.bucket_count(), 2);
  EXPECT_EQ(buckets.bucket_range(0), (std::pair<int64_t, int64_t>{4, 12}));  // p2, p1
  EXPECT_EQ(buckets.bucket_range(1), (std::pair<int64_t, int64_t>{0, 4}));   // p0
  GradientBuckets one(arena, Distributed::world(), 0);
  EXPECT_EQ(one.bucket_count(), 1);
  EXPECT_EQ(one.bucket_range(0), (std::pair<int64_t, int64_t>{0, 12}));
}

TEST(GradientBuckets, StartDuringBackwardFromTheSecondStepWithTheGradientsUntouched) {
  Params p;
  ParameterArena arena(p.named());
  GradientBuckets buckets(arena, Distributed::world(), 5 * sizeof(float));
  const std::vector<float> expected = {2, 2, 2, 2, 1, 1, 1, 1, 4, 4, 4, 4};
  step(arena, buckets, loss_of(p));
  EXPECT_EQ(buckets.started_during_backward(), 0);  // the first step learns the contribution counts
  EXPECT_EQ(arena.grads().to_vector(), expected);
  for (int k = 0; k < 2; ++k) {
    step(arena, buckets, loss_of(p));
    EXPECT_EQ(buckets.started_during_backward(), 2);
    EXPECT_EQ(arena.grads().to_vector(), expected);
  }
}

TEST(GradientBuckets, FinishWithoutBeginStartsEverythingAndLearnsNothing) {
  Params p;
  ParameterArena arena(p.named());
  GradientBuckets buckets(arena, Distributed::world(), 5 * sizeof(float));
  arena.zero_grad();
  loss_of(p).backward();
  buckets.finish_backward();  // no begin_backward: nothing watched
  EXPECT_EQ(buckets.started_during_backward(), 0);
  step(arena, buckets, loss_of(p));  // so this step still learns: nothing starts early
  EXPECT_EQ(buckets.started_during_backward(), 0);
  EXPECT_EQ(arena.grads().to_vector(), (std::vector<float>{2, 2, 2, 2, 1, 1, 1, 1, 4, 4, 4, 4}));
  step(arena, buckets, loss_of(p));
  EXPECT_EQ(buckets.started_during_backward(), 2);
}

TEST(GradientBuckets, AContributionAfterItsBucketStartedIsAnError) {
  Params p;
  ParameterArena arena(p.named());
  GradientBuckets buckets(arena, Distributed::world(), 5 * sizeof(float));
  step(arena, buckets, loss_of(p));
  try {
    step(arena, buckets, loss_of(p, /*extra_p2_first=*/true));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter 'p2'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--bucket-mb 0"), std::string::npos) << e.what();
  }
}

}  // namespace
