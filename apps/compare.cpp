// compare: the study's experiment. DenseNet-201 and Inception-ResNet-v2 trained at 100, 3,000 and 10,000
// images and on the whole set (0), under --protocols seed (and optionally patient), each a full training
// run in <out>/runs/<protocol>/<arch>-n<images>/; then results.md (the study's tables, test time and
// accuracy, beside Cohen's kappa and AUROC) and results.html (one self-contained page with the tables, the
// figures and every run's curves). The work is experiment/compare.h; this is its command line.
//
//   compare --data MURA-v1.1 --weights-densenet D.safetensors --weights-irv2 I.safetensors --out results/
//   compare --quick --out /tmp/cmp      (the synthetic set, small inputs, few epochs: minutes on a CPU)
//
// Its training flags are train_densenet's (add_train_flags), given to every run, less the ones it sets for
// each run (kPerRunFlags): `compare --help` lists what it takes.
#include <cstdio>
#include <sstream>

#include "data/io_util.h"

#include "experiment/cam.h"
#include "experiment/compare.h"
#include "experiment/flags.h"

namespace {

using namespace experiment;

template <typename T, typename Parse>
std::vector<T> parse_list(const std::string& text, Parse parse) {
  std::vector<T> items;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) items.push_back(parse(item));
  return items;
}

// The training flags that compare does not take: it sets them for each run (the run's net, protocol, size,
// weights and folder; an interrupted run resumes by itself).
const std::vector<std::string> kPerRunFlags = {"--arch", "--protocol", "--images", "--weights", "--out", "--resume",
                                               "RUN_DIR"};

std::string per_run_flags() {
  std::string text;
  const size_t n = kPerRunFlags.size() - 1;  // the last, RUN_DIR, is the positional argument
  for (size_t i = 0; i < n; ++i) text += (i == 0 ? "" : i + 1 == n ? " and " : ", ") + kPerRunFlags[i];
  return text;
}

// Grad-CAM over a finished run's test split with the checkpoint its test used: the maps and gallery in
// RUN/cam/, and the localisation scores where the true boxes are known (the synthetic set).
RunLocalisation localise_with_gradcam(const std::string& run_dir, const TrainResult& result) {
  (void)result;
  CamInputs inputs;
  inputs.split = run_dir + "/split";
  inputs.list = "test";
  CamOptions options;
  options.method = "gradcam";
  options.quiet = true;
  options.top = 12;
  const std::string ckpt = run_dir + "/checkpoints/" + json_string_field(data::read_file_text(run_dir + "/args.json"),
                                                                          "test_checkpoint") + ".safetensors";
  const CamSummary s = run_cam_batch(ckpt, inputs, run_dir + "/cam", options);
  RunLocalisation l;
  l.gallery = "cam/gallery.html";
  if (s.boxed == 0 || s.methods.empty()) {
    l.note = "no known boxes (maps only)";
    return l;
  }
  const MethodScore& m = s.methods.front();
  l.measured = true;
  l.images = m.boxed;
  l.pointing_game = m.pointing;
  l.pointing_tolerant = m.pointing_tolerant;
  l.mean_iou = m.mean_iou;
  l.random_pointing_tolerant = s.chance.pointing_random_tolerant;
  l.random_iou = s.chance.iou_random;
  l.centre_pointing_tolerant = s.chance.pointing_centre_tolerant;
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace experiment;
  CompareOptions options;
  TrainOptions& base = options.base;
  std::string sizes_text = "100,3000,10000,0", protocols_text = "seed", archs_text = "densenet201,inception_resnet_v2",
              weights_densenet, weights_irv2;
  bool quick = false, no_cam = false;
  base.checkpoint_hist = 0;  // last and best only by default: Inception-ResNet-v2 checkpoints are 0.66 GB
  FlagParser flags("compare",
                   "Runs the study's comparison: both nets at 100, 3,000 and 10,000 images and the whole set, then\n"
                   "writes results.md and results.html.");
  flags.add("-o,--out", &options.out, "output folder (an interrupted comparison resumes in it)", "DIR");
  flags.add("--sizes", &sizes_text, "image counts (0 = the whole set)", "LIST");
  flags.add("--protocols", &protocols_text, "seed and/or patient (e.g. seed,patient)", "LIST");
  flags.add("--archs", &archs_text, "the nets compared", "LIST");
  flags.add("--weights-densenet", &weights_densenet, "converted ImageNet weights for DenseNet", "FILE");
  flags.add("--weights-irv2", &weights_irv2, "converted ImageNet weights for Inception-ResNet-v2", "FILE");
  flags.add_switch("--quick", &quick,
                   "a small comparison on the synthetic set for the demo: sizes 100,0, 96x96 inputs (area "
                   "resizing), 3 epochs, batch 16, lr 1e-3, torch BN, gap head");
  flags.add_switch("--no-cam", &no_cam, "skip the Grad-CAM pass over each run's test split (maps, gallery and, on "
                                        "the synthetic set, the localisation scores; docs/cam.md)");
  // Every run's training flags: train_densenet's, less those the comparison sets for each run.
  flags.leave_out(kPerRunFlags, "the comparison sets it for each run (from --archs, --protocols, --sizes, "
                                "--weights-densenet, --weights-irv2, --out)");
  add_train_flags(flags, base, options.archs);
  flags.set_epilog(
      "The training flags are train_densenet's, given to every run, except\n" + per_run_flags() +
      ", which the comparison sets for each run (from --archs,\n"
      "--protocols, --sizes, --weights-densenet, --weights-irv2 and --out; an interrupted run resumes by itself).\n"
      "Their defaults are the study's: Adam (Keras convention) 1e-5, batch 32, 10 epochs, a flatten head,\n"
      "224x224 nearest-neighbour inputs, x/255; checkpoints: last and best (--checkpoint-hist 0).\n"
      "--recipe mura-paper sets every run's settings as train_densenet's does, except the net (--archs).");
  if (!parse_flags_or_exit(flags, argc, argv)) return 0;
  try {
    experiment::resolve_precision_flag(flags, base.precision, base.amp);  // --amp: --precision bf16
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare: error: %s\n", e.what());
    return 2;
  }
  if (quick && flags.given("--recipe")) {
    std::fprintf(stderr, "compare: error: --quick and --recipe both set the runs' settings; give one of them\n");
    return 2;
  }
  // A recipe's settings for the training flags not given, as train_densenet applies them; the net stays
  // each run's (--archs).
  if (flags.given("--recipe"))
    base = apply_recipe(base, base.arch, {base.arch}, [&](const std::string& flag) { return flags.given(flag); });
  if (quick) {
    auto set = [&](const char* flag, auto* field, auto value) {
      if (!flags.given(flag)) *field = value;
    };
    set("--sizes", &sizes_text, std::string("100,0"));
    set("--epochs", &base.epochs, int64_t{3});
    set("--batch-size", &base.batch_size, int64_t{16});
    set("--input-size", &base.input_size, int64_t{96});
    set("--resize", &base.resize, std::string("area"));
    set("--lr", &base.lr, 1e-3);
    set("--flavor", &base.flavor, std::string("torch"));
    set("--head", &base.head, std::string("gap"));
  }
  try {
    options.sizes = parse_list<int64_t>(sizes_text, [](const std::string& s) { return parse_int("--sizes", s); });
    options.protocols = parse_list<std::string>(protocols_text, [](const std::string& s) { return s; });
    options.archs = parse_list<std::string>(archs_text, [](const std::string& s) { return s; });
    for (const std::string& arch : options.archs)
      options.weights[arch] = arch.rfind("densenet", 0) == 0 ? weights_densenet : weights_irv2;
    if (!no_cam) options.localise = localise_with_gradcam;
    const Comparison cmp = run_comparison(options);
    std::fputs(comparison_markdown(cmp).c_str(), stdout);
    std::fprintf(stderr, "\nwrote %s/results.md and %s/results.html (runs in %s/runs/)\n", options.out.c_str(),
                 options.out.c_str(), options.out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare: error: %s\n", e.what());
    return 1;
  }
}
