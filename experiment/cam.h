// Class activation maps: where in a radiograph the net sees the abnormality, and how well that agrees with
// known fracture boxes.
//
// Notation: A [h, w, C] is the last convolutional feature map of one image (Net::features: after the final
// BN + ReLU), y the logit of class c (c = 0: "abnormal" for the study's one-logit heads).
//
//   Grad-CAM (Selvaraju et al. 2017), any head:
//     alpha_k = (1 / hw) sum_ij dy / dA_ij^k,     map_ij = ReLU(sum_k alpha_k A_ij^k)
//   The gradient comes from the engine's autograd: the head is run on a leaf copy of A and y is
//   back-propagated (Net::run_head), on whichever device A lives.
//   CAM (Zhou et al. 2016), heads that pool first (gap, imagenet): y = sum_k w_k (1 / hw) sum_ij A_ij^k + b,
//     map_ij = sum_k w_k A_ij^k                     (w = the Dense weights of class c)
//   so dy / dA_ij^k = w_k / hw for every ij, alpha_k = w_k / hw, and Grad-CAM before its ReLU equals
//   CAM / (h w) exactly. For the flatten head (y = sum_ijk W_ijk A_ij^k + b, W the Dense weight reshaped
//   to [h, w, C], NHWC order) the gradient is W itself and alpha_k = mean_ij W_ijk; CAM is not defined
//   there (the head does not pool), and asking for it is an error that points at Grad-CAM.
//
// One coordinate frame: the image's own pixels (the frame of the synthetic set's defect boxes). The net
// sees the whole image resized (squashed) to S x S, so feature cell (i, j) covers the image's rectangle
// [j W / w, (j + 1) W / w) x [i H / h, (i + 1) H / h). The map is upsampled from h x w straight to H x W
// bilinearly with half-pixel centres and clamped edges (data::resize_image's bilinear mode):
//   source coordinate of output pixel o = (o + 0.5) h / H - 0.5.
//
// Localisation of one map M [H, W] (its positive part: Grad-CAM is >= 0 already, CAM may be negative):
//   peak   - the pixel of M's maximum (the first in raster order on ties);
//   box    - threshold at `threshold` (default 0.5) times the maximum: pixels with M >= t max; the bounding
//            box of the largest 4-connected component of those pixels (ties: the first found in raster
//            order). A map with no positive value localises nothing (no peak, an empty box: a miss).
//   pointing game - a hit when the peak lies inside the true box;  IoU - |P n T| / |P u T| of the boxes.
//   pointing game within half a cell - a hit when the peak pixel's centre lies within half a feature cell
//            (W / 2w across, H / 2h down) of the true box: a map on an h x w grid cannot place its peak more
//            finely than a cell, and the synthetic cracks' boxes (about 20 px) are smaller than a cell (45-50
//            px of a 300 px image on a 7 x 7 grid), so the strict game is capped well below 1 even for a
//            perfect map. (Zhang et al.'s pointing game has a 15 px tolerance in the same spirit.)
// Chance levels, so that the numbers mean something:
//   exact     - a uniformly random peak pixel hits with probability area(T) / (H W): the pointing-game
//               chance is the mean of that over the images (with the tolerance: the grown box's area);
//   random    - Monte Carlo: `random_draws` maps per image of i.i.d. uniform values on the h x w grid,
//               through the same upsampling and localisation (fixed seed): pointing game and mean IoU;
//   centre    - a map at image resolution that falls off linearly with the distance from the image
//               centre, through the same peak and box rule (the "always point at the middle" prior).
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

#include "engine/engine.h"
#include "nets/net.h"

namespace experiment {

// ---- Maps on the feature grid ---------------------------------------------------------------------

enum class CamMethod { gradcam, cam };
std::string cam_method_name(CamMethod method);  // "gradcam" | "cam"
// "gradcam" | "cam" | "both" | "auto" (both where the head allows CAM, else Grad-CAM) for a head; a
// clear error for CAM on a flatten head and for anything else.
std::vector<CamMethod> parse_cam_methods(const std::string& text, nets::Head head);
bool head_supports_cam(nets::Head head);  // gap and imagenet (they pool before the Dense layer)

// dy_c / dA for features A [N, h, w, C] (any device): the head runs on a leaf copy of A and the logit of
// class `class_index` is back-propagated. Returns the gradient [N, h, w, C] on A's device; `logits`, when
// given, receives y_c per image. The net should be in eval mode (then images do not interact); its
// parameters get gradients too where they require them (run_cam_batch freezes them).
engine::Tensor logit_gradient(const nets::Net& net, const engine::Tensor& features, int64_t class_index,
                              std::vector<double>* logits = nullptr);
// Grad-CAM before its ReLU, [N, h, w] row-major: sum_k alpha_k A^k with alpha_k = mean_ij G^k.
std::vector<float> gradcam_raw(const engine::Tensor& features, const engine::Tensor& gradient);
// CAM [N, h, w]: sum_k w_ck A^k. Throws for the flatten head (use Grad-CAM).
std::vector<float> cam_raw(const nets::Net& net, const engine::Tensor& features, int64_t class_index);

// ---- One map in the image frame -------------------------------------------------------------------

struct Box {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // pixels; x1, y1 exclusive
  bool empty() const { return x1 <= x0 || y1 <= y0; }
  int64_t area() const { return empty() ? 0 : int64_t(x1 - x0) * (y1 - y0); }
  bool contains(int x, int y) const { return x >= x0 && x < x1 && y >= y0 && y < y1; }
};
double box_iou(const Box& a, const Box& b);  // 0 when both are empty
// The pixels whose centre lies within dx across and dy down of `box` (the box grown by the pointing
// game's tolerance), clipped to width x height.
Box grow_box(const Box& box, double dx, double dy, int width, int height);
// The tolerance box of a true box for a grid_h x grid_w map: grown by half a cell each way.
Box half_cell_box(const Box& truth, int grid_h, int grid_w, int width, int height);

struct Heatmap {
  int height = 0, width = 0;
  std::vector<float> values;  // [height, width]
  float at(int y, int x) const { return values[static_cast<size_t>(y) * width + x]; }
};
// Bilinear upsampling of a [grid_h, grid_w] map to [height, width] (half-pixel centres, clamped edges).
Heatmap upsample_map(const float* grid, int grid_h, int grid_w, int height, int width);

struct Localisation {
  bool valid = false;   // the map has a positive value
  float max = 0;        // the map's maximum
  int peak_x = -1, peak_y = -1;
  Box box;              // the thresholded map's box (empty when !valid)
};
Localisation localise(const Heatmap& map, double threshold = 0.5);

// ---- Chance levels --------------------------------------------------------------------------------

struct BoxedImage {
  int height = 0, width = 0;
  Box truth;
};
struct ChanceLevels {
  int64_t images = 0;
  double pointing_exact = 0;                 // mean area(T) / (H W)
  double pointing_random = 0, iou_random = 0;  // Monte Carlo random grid maps
  double pointing_centre = 0, iou_centre = 0;  // the centre map
  // The same with the half-cell tolerance.
  double pointing_exact_tolerant = 0, pointing_random_tolerant = 0, pointing_centre_tolerant = 0;
  int draws = 0;
  uint64_t seed = 0;
};
ChanceLevels chance_levels(const std::vector<BoxedImage>& images, int grid_h, int grid_w, double threshold,
                           int draws, uint64_t seed);

// ---- Pictures ---------------------------------------------------------------------------------------

struct Rgb8 {
  int height = 0, width = 0;
  std::vector<uint8_t> pixels;  // [height, width, 3]
};
// The jet-like colour of v in [0, 1] (dark blue, blue, cyan, yellow, red, dark red); clamped.
void colour_of(float v, uint8_t rgb[3]);
// The grey image (values 0..255, [height, width]) under the colour of map / max(map, 0+) at `opacity`;
// the true box in green (when not empty), the map's box in white, the peak as a black-edged white cross.
Rgb8 blend_heatmap(const std::vector<float>& grey, const Heatmap& map, const Localisation& where, const Box& truth,
                   float opacity = 0.45f);
std::vector<uint8_t> encode_png_rgb(const Rgb8& image);
std::string base64(const std::vector<uint8_t>& bytes);

// ---- The batch --------------------------------------------------------------------------------------

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
};

struct MethodScore {
  std::string method;
  int64_t boxed = 0, hits = 0;   // images with a true box, and pointing-game hits among them
  double pointing = 0;           // hits / boxed (NaN without boxes)
  int64_t hits_tolerant = 0;     // hits within half a feature cell of the box
  int64_t empty = 0;             // images (all of them) whose map has no positive value: nothing to point at
  double pointing_tolerant = 0;
  double mean_iou = 0;           // NaN without boxes
  int64_t boxed_predicted = 0;   // boxed images predicted abnormal (p > 0.5) ...
  double pointing_predicted = 0, pointing_tolerant_predicted = 0, mean_iou_predicted = 0;  // ... their scores
};

struct CamImage {
  std::string path;  // as given (split paths: relative to the root)
  int label = -1;    // 0/1 from a split or root; -1 unknown
  int height = 0, width = 0;
  double logit = 0, probability = 0;
  bool has_box = false;
  Box truth;
  struct Result {
    Localisation where;
    bool hit = false, hit_tolerant = false;
    double iou = 0;
  };
  std::vector<Result> results;  // one per method, in CamSummary::methods order
  std::string files;            // the stem of its files under images/ ("" = not written)
};

struct CamSummary {
  std::string checkpoint, arch, head, device, out_dir, gallery_path;  // gallery: <out>/gallery.html
  int64_t input_size = 0, grid_h = 0, grid_w = 0;
  int64_t images = 0, boxed = 0;
  double threshold = 0.5, seconds = 0;
  std::vector<MethodScore> methods;
  ChanceLevels chance;
  std::vector<CamImage> per_image;
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

// The localisation table (markdown): methods against the chance levels; the comparison report embeds it.
std::string cam_summary_markdown(const CamSummary& summary);
std::string cam_summary_json(const CamSummary& summary);
// The gallery page: the summary table and one entry per image of `entries` (indices into per_image) with
// its probability, label, scores and one <img> per method (PNG data: URIs in `pngs[entry][method]`).
std::string cam_gallery_html(const CamSummary& summary, const std::vector<size_t>& entries,
                             const std::vector<std::vector<std::vector<uint8_t>>>& pngs);

}  // namespace experiment
