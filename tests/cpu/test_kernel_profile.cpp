// The kernel profile's bookkeeping (kernels/profile/kernel_profile.h), which the CUPTI injection library
// feeds on a GPU: per-name sums, the profiler ranges that select what counts, the span, the table and the
// demangled names.
#include <gtest/gtest.h>

#include <string>

#include "kernels/profile/kernel_profile.h"

namespace {

using kernels::profile::KernelProfile;
using kernels::profile::readable_kernel_name;

TEST(KernelProfile, SumsPerNameLongestFirst) {
  KernelProfile p;
  p.add("b", 100, 130);  // 30
  p.add("a", 200, 210);  // 10
  p.add("b", 300, 320);  // 20
  p.add("c", 400, 450);  // 50
  const std::vector<KernelProfile::Entry> e = p.entries();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].name, "b");  // 50, ties broken by name: b before c
  EXPECT_EQ(e[0].calls, 2);
  EXPECT_EQ(e[0].total_ns, 50u);
  EXPECT_EQ(e[0].min_ns, 20u);
  EXPECT_EQ(e[0].max_ns, 30u);
  EXPECT_EQ(e[1].name, "c");
  EXPECT_EQ(e[2].name, "a");
  EXPECT_EQ(p.total_ns(), 110u);
  EXPECT_EQ(p.span_ns(), 350u);  // 100 .. 450
}

TEST(KernelProfile, OnlyActivitiesStartingInsideTheRangesCount) {
  KernelProfile p;
  p.add("warm-up", 10, 20);
  p.add("timed", 110, 150);
  p.add("timed", 160, 260);  // starts inside, ends after the range: counted whole
  p.add("between", 300, 310);
  p.add("timed", 410, 420);
  p.add_window(100, 200);
  p.add_window(400, 500);
  const std::vector<KernelProfile::Entry> e = p.entries();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].name, "timed");
  EXPECT_EQ(e[0].calls, 3);
  EXPECT_EQ(e[0].total_ns, 150u);
  EXPECT_EQ(p.span_ns(), 310u);  // 110 .. 420
  p.add_dropped(7);
  const std::string table = p.markdown("t", 5);
  EXPECT_NE(table.find("Counted: the activities starting inside 2 profiler range(s)."), std::string::npos) << table;
  EXPECT_NE(table.find("**7 activities were dropped by the tracer"), std::string::npos) << table;
}

TEST(KernelProfile, TableHasTheTopRowsAndTheRestOnOneLine) {
  KernelProfile p;
  p.add("first|kernel", 0, 3000000);  // 3 ms
  p.add("second", 3000000, 4000000);   // 1 ms
  p.add("third", 4000000, 4500000);
  p.add("fourth", 4500000, 5000000);
  const std::string table = p.markdown("DenseNet-201 training", 2);
  EXPECT_NE(table.find("### DenseNet-201 training"), std::string::npos) << table;
  EXPECT_NE(table.find("4 activities, 4 names: busy 5.000 ms over a span of 5.000 ms (100% busy)"), std::string::npos)
      << table;
  EXPECT_NE(table.find("Counted: the whole process (no profiler range"), std::string::npos) << table;
  EXPECT_NE(table.find("| 1 | `first\\|kernel` | 1 | 3.000 | 60.0% | 3000.0 | 3000.0 | 3000.0 |"), std::string::npos)
      << table;
  EXPECT_NE(table.find("| 2 | `second` | 1 | 1.000 | 20.0% |"), std::string::npos) << table;
  EXPECT_EQ(table.find("dropped"), std::string::npos) << table;
  EXPECT_NE(table.find("| | (2 more names) | 2 | 1.000 | 20.0% | | | |"), std::string::npos) << table;
  EXPECT_EQ(table.find("third"), std::string::npos) << table;
}

TEST(KernelProfile, EmptyProfileSaysSo) {
  KernelProfile p;
  p.add("outside", 0, 10);
  p.add_window(100, 200);
  EXPECT_TRUE(p.entries().empty());
  EXPECT_EQ(p.span_ns(), 0u);
  EXPECT_NE(p.markdown("t", 5).find("No GPU activity was recorded"), std::string::npos);
}

TEST(KernelProfile, MangledNamesAreDemangledAndLongOnesCut) {
  EXPECT_EQ(readable_kernel_name("_Z11relu_kernelPKfPfl"), "relu_kernel(float const*, float*, long)");
  EXPECT_EQ(readable_kernel_name("[memset]"), "[memset]");
  EXPECT_EQ(readable_kernel_name("_Znot a symbol"), "_Znot a symbol");
  EXPECT_EQ(readable_kernel_name(std::string(200, 'k'), 20), std::string(17, 'k') + "...");
}

}  // namespace
