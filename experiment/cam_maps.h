// Class activation maps, the maths: the maps on the feature grid (Grad-CAM, CAM), one map in the image's
// frame (upsampling, peak, box, IoU, pointing game) and the chance levels (cam.h runs them on a batch).
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

}  // namespace experiment
