// cam: class activation maps of a trained checkpoint: where in the radiograph the net sees the abnormality
// (Grad-CAM for every head, CAM for the gap head), and, on the synthetic set's known defect boxes, how
// well the maps localise it (pointing game, IoU) next to what a random map scores. experiment/cam.h has
// the maths and the rules; docs/cam.md the outputs.
//
//   cam --checkpoint C image1.png study_folder/ --out DIR          (every image written)
//   cam --checkpoint C --split RUN/split [--list test] --out DIR    (a run's split; gallery of the top N)
//   cam --checkpoint C --data MURA_ROOT [--subset valid] --out DIR
#include <cstdio>

#include "engine/engine.h"
#include "experiment/cam.h"
#include "experiment/flags.h"
#include "experiment/metrics.h"
#include "experiment/run_files.h"

int main(int argc, char** argv) {
  std::string checkpoint, out;
  experiment::CamInputs inputs;
  experiment::CamOptions options;
  bool amp = false;
  experiment::FlagParser flags(
      "cam",
      "Class activation maps of a checkpoint (Grad-CAM on the last convolutional block; CAM for the gap head):\n"
      "per image the heatmap over the radiograph (PNG), the raw maps, the probability, the peak and a box around\n"
      "the hottest region; a gallery page of the top abnormal predictions; and, where defect boxes are known\n"
      "(the synthetic set), the pointing-game hit rate and mean IoU next to the chance levels.");
  flags.add("--checkpoint", &checkpoint, "a checkpoint written by train_densenet / train_irv2", "FILE");
  flags.add("--split", &inputs.split, "a run's split folder (train.csv, validation.csv, test.csv) or one list file", "PATH");
  flags.add("--list", &inputs.list, "which list of --split: train | validation | test", "L");
  flags.add("--data", &inputs.data_root, "the MURA root the split's paths are relative to (default: the run's "
                                         "data_root from args.json next to the split); without --split, every "
                                         "image of --subset", "DIR");
  flags.add("--subset", &inputs.subset, "with --data and no --split: valid | train | all", "S");
  flags.add("-o,--out", &out, "output folder (created once the inputs check out)", "DIR");
  flags.add("--method", &options.method, "gradcam | cam (gap head only) | both | auto (both where the head allows CAM)", "M");
  flags.add("--top", &options.top, "gallery entries: the N highest probabilities of abnormality (0 = no gallery)");
  flags.add("--threshold", &options.threshold, "the map's box: pixels >= this fraction of the maximum (largest "
                                               "connected component)");
  flags.add("--random-draws", &options.random_draws, "random maps per boxed image for the chance level");
  flags.add("--seed", &options.seed, "seed of the random maps");
  flags.add_switch("--save-all", &options.save_all, "write every image's PNG and maps (default: the gallery's; "
                                                   "always all for explicit images)");
  flags.add("--device", &options.device, "auto | cpu | cuda | cuda:N", "D");
  flags.add("-b,--batch-size", &options.batch_size, "images per forward/backward pass");
  experiment::add_precision_flags(flags, &options.precision, &amp);
  flags.add_switch("--quiet", &options.quiet, "no progress display");
  flags.allow_positional("IMAGE|STUDY_FOLDER", "PNG/JPEG files, or folders of them");
  try {
    if (!flags.parse(argc, argv)) return 0;
    experiment::resolve_precision_flag(flags, options.precision, amp);
    ENGINE_USER_CHECK(!checkpoint.empty()) << "--checkpoint is required (see --help)";
    ENGINE_USER_CHECK(!out.empty()) << "--out is required (see --help)";
    inputs.images = flags.positional();
    ENGINE_USER_CHECK(!inputs.images.empty() || !inputs.split.empty() || !inputs.data_root.empty())
        << "give images or study folders, --split (a run's split) or --data (a MURA root); see --help";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  try {
    const experiment::CamSummary s = experiment::run_cam_batch(checkpoint, inputs, out, options);
    if (!inputs.images.empty())
      for (const experiment::CamImage& im : s.per_image) {
        std::printf("%-60s p(abnormal) = %.4f", im.path.c_str(), im.probability);
        for (size_t m = 0; m < s.methods.size(); ++m) {
          const experiment::Localisation& w = im.results[m].where;
          if (w.valid)
            std::printf("  %s peak (%d, %d) box [%d, %d, %d, %d]", s.methods[m].method.c_str(), w.peak_x, w.peak_y,
                        w.box.x0, w.box.y0, w.box.x1, w.box.y1);
          else
            std::printf("  %s: no positive evidence", s.methods[m].method.c_str());
          if (im.has_box) std::printf(" %s IoU %.3f", im.results[m].hit ? "hit" : "miss", im.results[m].iou);
        }
        std::printf("\n");
      }
    std::fputs(experiment::cam_summary_markdown(s).c_str(), stdout);
    std::fprintf(stderr, "wrote %s/{cam.csv,summary.json,report.md,feature_maps.safetensors,images/%s}\n", out.c_str(),
                 s.gallery_path.empty() ? "" : ",gallery.html");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cam: error: %s\n", e.what());
    return 1;
  }
}
