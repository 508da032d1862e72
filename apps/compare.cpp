// compare: the study's experiment. DenseNet-201 and Inception-ResNet-v2 trained at 100, 3,000 and 10,000
// images and on the whole set (0), under --protocols seed (and optionally patient), each a full training
// run in <out>/runs/<protocol>/<arch>-n<images>/; then results.md (the study's tables, test time and
// accuracy, beside Cohen's kappa and AUROC) and results.html (one self-contained page with the tables, the
// figures and every run's curves). The work is experiment/compare.h; this is its command line.
//
//   compare --data MURA-v1.1 --weights-densenet D.safetensors --weights-irv2 I.safetensors --out results/
//   compare --quick --out /tmp/cmp      (the synthetic set, small inputs, few epochs: minutes on a CPU)
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
  FlagParser flags("compare",
                   "Runs the study's comparison: both nets at 100, 3,000 and 10,000 images and the whole set, then\n"
                   "writes results.md and results.html. Training flags are those of train_densenet (defaults: the\n"
                   "study's: Adam 1e-5, batch 32, 10 epochs, flatten head, 224x224, x/255).");
  flags.add("--out", &options.out, "output folder (an interrupted comparison resumes in it)", "DIR");
  flags.add("--sizes", &sizes_text, "image counts (0 = the whole set)", "LIST");
  flags.add("--protocols", &protocols_text, "seed and/or patient (e.g. seed,patient)", "LIST");
  flags.add("--archs", &archs_text, "the nets compared", "LIST");
  flags.add("--weights-densenet", &weights_densenet, "converted ImageNet weights for DenseNet", "FILE");
  flags.add("--weights-irv2", &weights_irv2, "converted ImageNet weights for Inception-ResNet-v2", "FILE");
  flags.add_switch("--quick", &quick,
                   "a small comparison on the synthetic set for the demo: sizes 100,0, 96x96 inputs (area "
                   "resizing), 3 epochs, batch 16, lr 1e-3, torch BN, gap head");
  flags.add("--data", &base.data, "a MURA-v1.1 root; absent = the synthetic set", "DIR");
  flags.add("--synthetic-dir", &base.synthetic_dir, "where the synthetic set is cached", "DIR");
  flags.add("--synthetic-patients", &base.synthetic_patients, "train patients of the synthetic set");
  flags.add("--epochs", &base.epochs, "training epochs");
  flags.add("--batch-size", &base.batch_size, "batch size");
  flags.add("--lr", &base.lr, "learning rate");
  flags.add("--head", &base.head, "flatten | gap", "H");
  flags.add("--flavor", &base.flavor, "batch-norm convention: keras | torch", "F");
  flags.add("--input-size", &base.input_size, "input size");
  flags.add("--resize", &base.resize, "nearest | bilinear | area", "R");
  flags.add("--device", &base.device, "auto | cpu | cuda", "D");
  flags.add("--seed", &base.seed, "seed");
  flags.add("--workers", &base.workers, "data loader threads");
  flags.add_switch("--quiet", &base.quiet, "no progress display");
  flags.add_switch("--no-cam", &no_cam, "skip the Grad-CAM pass over each run's test split (maps, gallery and, on "
                                        "the synthetic set, the localisation scores; docs/cam.md)");
  try {
    if (!flags.parse(argc, argv)) return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare: %s\n", e.what());
    return 2;
  }
  base.checkpoint_hist = 0;  // last and best only: Inception-ResNet-v2 checkpoints are 0.66 GB
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
