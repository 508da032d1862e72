// summary: prints a net's layers (output shape, parameters, BN buffers, multiply-accumulates) and totals.
//
//   summary --arch densenet201|densenet121|densenet169|inception_resnet_v2 [--head flatten|gap|imagenet]
//           [--input-size S] [--flavor keras|torch] [--depth D]
//
// One observed forward pass (batch 1) gives the rows. --depth D merges consecutive rows that share the first
// D components of their names ("features.denseblock1" at depth 2; "repeat" at depth 1); 0 shows every unit.
// The "Keras total" counts BN running statistics as parameters, as Keras's model.summary() does.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "experiment/flags.h"
#include "nets/registry.h"

namespace {

struct Args {
  std::string arch;
  std::string head = "imagenet";
  std::string flavor = "keras";
  int64_t input_size = 0;  // 0: the arch's default
  int depth = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  experiment::FlagParser flags("summary",
                               "Prints each layer's output shape, parameters, BN buffers and MACs per image, and the "
                               "totals.");
  flags.add("--arch", &a.arch, "densenet121 | densenet169 | densenet201 | inception_resnet_v2 (required)", "A");
  flags.add("--head", &a.head, "flatten | gap | imagenet", "H");
  flags.add("--input-size", &a.input_size, "input side; 0: 224 (DenseNet) or 299 (Inception-ResNet-v2)", "S");
  flags.add("--flavor", &a.flavor, "BN convention: keras | torch", "F");
  flags.add("--depth", &a.depth, "merge rows by the first D components of their names (0: every unit)", "D");
  if (!experiment::parse_flags_or_exit(flags, argc, argv)) std::exit(0);
  if (a.arch.empty()) {
    std::fprintf(stderr, "error: --arch is required (see --help)\n");
    std::exit(2);
  }
  return a;
}

std::string prefix(const std::string& name, int depth) {
  if (depth <= 0) return name;
  size_t pos = 0;
  for (int d = 0; d < depth; ++d) {
    pos = name.find('.', pos);
    if (pos == std::string::npos) return name;
    if (d + 1 < depth) ++pos;
  }
  return name.substr(0, pos);
}

std::string with_commas(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  try {
    const int64_t size = args.input_size > 0 ? args.input_size : nets::default_input_size(args.arch);
    engine::Generator gen(0);
    auto net = nets::make_net(args.arch, nets::parse_head(args.head), nets::parse_flavor(args.flavor), size, gen);
    std::vector<nets::SummaryRow> rows = net->summary(size);

    // Merge rows by name prefix.
    std::vector<nets::SummaryRow> shown;
    std::vector<int> merged;
    for (const auto& r : rows) {
      const std::string key = prefix(r.name, args.depth);
      if (!shown.empty() && shown.back().name == key && args.depth > 0) {
        auto& s = shown.back();
        s.output = r.output;
        s.parameters += r.parameters;
        s.buffers += r.buffers;
        s.macs += r.macs;
        ++merged.back();
        continue;
      }
      nets::SummaryRow s = r;
      s.name = key;
      shown.push_back(s);
      merged.push_back(1);
    }

    std::printf("%s, %s head, %s batch norm, input %lldx%lldx3\n\n", net->arch().c_str(), args.head.c_str(),
                args.flavor.c_str(), static_cast<long long>(size), static_cast<long long>(size));
    std::printf("%-42s %-20s %14s %10s %14s  %s\n", "layer", "output", "parameters", "BN stats", "MACs", "what");
    int64_t params = 0, buffers = 0, macs = 0;
    for (size_t i = 0; i < shown.size(); ++i) {
      const auto& s = shown[i];
      const std::string what = merged[i] > 1 ? std::to_string(merged[i]) + " units" : s.kind;
      std::printf("%-42s %-20s %14s %10s %14s  %s\n", s.name.c_str(), engine::shape_str(s.output).c_str(),
                  with_commas(s.parameters).c_str(), with_commas(s.buffers).c_str(), with_commas(s.macs).c_str(),
                  what.c_str());
      params += s.parameters;
      buffers += s.buffers;
      macs += s.macs;
    }
    std::printf("\ntrainable parameters      %14s\n", with_commas(params).c_str());
    std::printf("BN running statistics     %14s\n", with_commas(buffers).c_str());
    std::printf("Keras total (both)        %14s\n", with_commas(params + buffers).c_str());
    std::printf("MACs per image            %14s  (%.3f GMAC; training ~ 3x, %.1f GFLOP)\n", with_commas(macs).c_str(),
                static_cast<double>(macs) * 1e-9, 6.0 * static_cast<double>(macs) * 1e-9);
    if (params != net->num_parameters())
      std::printf("warning: rows count %lld parameters, the net has %lld\n", static_cast<long long>(params),
                  static_cast<long long>(net->num_parameters()));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
