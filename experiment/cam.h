// Class activation maps: where in a radiograph the net sees the abnormality, and how well that agrees with
// known fracture boxes. The maths (Grad-CAM, CAM, the image frame, localisation, chance levels) is in
// cam_maps.h, the pictures in cam_draw.h, the tables and the gallery in cam_report.h; this is the batch.
//
// The batch (run_cam_batch, the `cam` app, `compare`): a checkpoint and images -> per image the blended
// heatmap (PNG: the grey image under a jet-like colour map of M / max M at 45% opacity, the true box in
// green, the map's box in white, the peak as a cross), the raw maps (safetensors: feature and image
// resolution), the probability, peak and box; and a self-contained gallery page of the top abnormal
// predictions with their maps (PNGs as base64 data: URIs). Everything is computed before the output folder
// is created, so bad input (a missing checkpoint, an undecodable image, CAM on a flatten head, an empty
// list) fails with a clear error and writes nothing; every file is written atomically.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "experiment/cam_draw.h"
#include "experiment/cam_maps.h"
#include "experiment/cam_report.h"

namespace experiment {

// What to run on: explicit images and study folders, or a split list, or every image of a MURA root.
struct CamInputs {
  std::vector<std::string> images;  // image files and folders of images (predict's forms)
  std::string split;                // a run's split folder (train.csv, ...) or one list file
  std::string list = "test";        // which list of a split folder
  std::string data_root;            // the root the split's paths are relative to (default: the run's
                                    // args.json data_root); alone: every image of `subset`
  std::string subset = "valid";     // with data_root alone: valid | train | all
};

struct CamOptions {
  std::string method = "auto";  // gradcam | cam | both | auto
  int64_t top = 24;             // gallery entries: the highest probabilities of abnormality
  std::string device = "auto";
  int64_t batch_size = 16;
  double threshold = 0.5;       // the box's threshold, a fraction of the map's maximum
  int random_draws = 20;        // Monte Carlo random maps per boxed image
  uint64_t seed = 0;            // of the random maps
  bool save_all = false;        // write every image's PNG and maps (default: the gallery's; all for
                                // explicit images)
  int64_t class_index = 0;
  bool quiet = false;
  // bf16: the feature pass runs on bf16 activations (the batch converted before it); the features are
  // widened to f32 for the head, the gradient and the maps.
  std::string precision = "f32";
};

// The images of `inputs` with labels and (synthetic set) true boxes. Throws on an empty list, a missing
// file or folder, a split without a known root.
struct CamEntries {
  std::string root;  // "" for explicit images
  std::vector<std::string> paths;  // relative to root (or as given)
  std::vector<int> labels;         // -1 unknown
  std::vector<bool> has_box;
  std::vector<Box> boxes;
};
CamEntries resolve_cam_entries(const CamInputs& inputs);

// The whole batch into out_dir:
//   cam.csv                 per image: path, label, probability, per method the peak, box, true box, hit, IoU
//   summary.json, report.md the localisation scores per method next to the chance levels
//   feature_maps.safetensors  "<method>" [N, h, w]: every image's raw map (before Grad-CAM's ReLU)
//   images/<stem>.<method>.png, images/<stem>.safetensors (maps at feature and image resolution)
//   gallery.html            the top `top` abnormal predictions with their maps (self-contained)
CamSummary run_cam_batch(const std::string& checkpoint, const CamInputs& inputs, const std::string& out_dir,
                         const CamOptions& options);

}  // namespace experiment
