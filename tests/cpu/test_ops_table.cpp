// The op table (tests/support/op_table.h) on the CPU: every entry against its double-precision
// reference, and its backward against finite differences.
#include "support/op_table.h"

namespace {

using test_support::OpCase;

// One test per entry (each ctest test is a process, and starting one costs more than the checks).
class OpTable : public ::testing::TestWithParam<OpCase> {};
TEST_P(OpTable, CpuMatchesReferenceAndFiniteDifferences) {
  {
    SCOPED_TRACE("forward: the CPU op against the double reference");
    test_support::check_cpu_against_reference(GetParam());
  }
  SCOPED_TRACE("backward: against central finite differences");
  test_support::check_gradients(GetParam());
}

INSTANTIATE_OP_TABLE(OpTable);

// TF 'same' padding puts the odd cell at the end (the table's 'same' entries rely on it).
TEST(Conv2dOptions, SameTfPaddingIsAsymmetricForEvenKernels) {
  const engine::Conv2dOptions o = engine::Conv2dOptions::same(6, 6, 2, 2, 2);  // out 3: total pad 0
  EXPECT_EQ(o.pad_top + o.pad_bottom, 0);
  const engine::Conv2dOptions p = engine::Conv2dOptions::same(5, 5, 2, 2, 1);  // out 5: total pad 1, at the end
  EXPECT_EQ(p.pad_top, 0);
  EXPECT_EQ(p.pad_bottom, 1);
  const engine::Conv2dOptions q = engine::Conv2dOptions::same(17, 17, 7, 1, 1);
  EXPECT_EQ(q.pad_top, 3);
  EXPECT_EQ(q.pad_left, 0);
}

}  // namespace
