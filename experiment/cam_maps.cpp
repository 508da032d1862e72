// Class activation maps, the maths (see cam_maps.h): Grad-CAM and CAM on the feature grid, upsampling,
// localisation, the pointing game and IoU, and the chance levels.
#include "experiment/cam_maps.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "data/image.h"

namespace experiment {

using engine::Tensor;

// ---------------------------------------------------------------------------------------------------
// Methods

std::string cam_method_name(CamMethod method) { return method == CamMethod::cam ? "cam" : "gradcam"; }

bool head_supports_cam(nets::Head head) { return head == nets::Head::gap || head == nets::Head::imagenet; }

std::vector<CamMethod> parse_cam_methods(const std::string& text, nets::Head head) {
  const bool cam_ok = head_supports_cam(head);
  if (text == "gradcam") return {CamMethod::gradcam};
  if (text == "auto") return cam_ok ? std::vector<CamMethod>{CamMethod::gradcam, CamMethod::cam}
                                    : std::vector<CamMethod>{CamMethod::gradcam};
  if (text == "cam" || text == "both") {
    ENGINE_USER_CHECK(cam_ok) << "--method " << text << ": CAM needs a head that pools the feature maps before its Dense "
                              << "layer (gap), but this net has the " << nets::head_name(head)
                              << " head, whose Dense weights are per position; use --method gradcam (Grad-CAM works "
                                 "for every head)";
    if (text == "cam") return {CamMethod::cam};
    return {CamMethod::gradcam, CamMethod::cam};
  }
  ENGINE_USER_FAIL() << "unknown --method '" << text << "': use gradcam, cam (gap head only), both or auto "
                     << "(both where the head allows CAM, else gradcam)";
}

// ---------------------------------------------------------------------------------------------------
// Maps on the feature grid

Tensor logit_gradient(const nets::Net& net, const Tensor& features, int64_t class_index, std::vector<double>* logits) {
  ENGINE_CHECK(features.defined() && features.ndim() == 4)
      << "logit_gradient: features must be [N, h, w, C], got " << (features.defined() ? features.str() : "none");
  ENGINE_CHECK(class_index >= 0 && class_index < net.num_classes())
      << "class index " << class_index << " is out of range: this net has " << net.num_classes() << " logit(s)";
  ENGINE_CHECK(engine::grad_enabled()) << "logit_gradient needs grad mode (it was called inside a NoGradGuard)";
  Tensor leaf = features.detach();
  leaf.set_requires_grad(true);
  const Tensor y = net.run_head(leaf);  // [N, classes]
  const int64_t n = y.size(0), classes = y.size(1);
  std::vector<float> seed(static_cast<size_t>(n * classes), 0.0f);
  for (int64_t i = 0; i < n; ++i) seed[static_cast<size_t>(i * classes + class_index)] = 1.0f;
  if (logits) {
    const std::vector<float> values = y.to_vector();
    logits->assign(static_cast<size_t>(n), 0.0);
    for (int64_t i = 0; i < n; ++i) (*logits)[static_cast<size_t>(i)] = values[static_cast<size_t>(i * classes + class_index)];
  }
  // dL/dA with L = sum_n y[n, c]: each image's logit depends on its own features only (eval mode).
  y.backward(Tensor::from_vector({n, classes}, seed, y.device()));
  const Tensor gradient = leaf.grad();
  ENGINE_CHECK(gradient.defined()) << "logit_gradient: the head did not propagate a gradient to the features";
  return gradient;
}

std::vector<float> gradcam_raw(const Tensor& features, const Tensor& gradient) {
  ENGINE_CHECK(features.defined() && gradient.defined() && features.ndim() == 4 && features.shape() == gradient.shape())
      << "gradcam_raw: features and gradient must both be [N, h, w, C]";
  const int64_t n = features.size(0), hw = features.size(1) * features.size(2), c = features.size(3);
  const std::vector<float> a = features.to_vector(), g = gradient.to_vector();
  std::vector<float> out(static_cast<size_t>(n * hw));
  std::vector<double> alpha(static_cast<size_t>(c));
  for (int64_t i = 0; i < n; ++i) {
    const float* gi = g.data() + i * hw * c;
    const float* ai = a.data() + i * hw * c;
    std::fill(alpha.begin(), alpha.end(), 0.0);
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t k = 0; k < c; ++k) alpha[static_cast<size_t>(k)] += gi[p * c + k];
    for (double& v : alpha) v /= static_cast<double>(hw);
    for (int64_t p = 0; p < hw; ++p) {
      double s = 0;
      for (int64_t k = 0; k < c; ++k) s += alpha[static_cast<size_t>(k)] * ai[p * c + k];
      out[static_cast<size_t>(i * hw + p)] = static_cast<float>(s);
    }
  }
  return out;
}

std::vector<float> cam_raw(const nets::Net& net, const Tensor& features, int64_t class_index) {
  ENGINE_CHECK(head_supports_cam(net.head()))
      << "CAM is not defined for the " << nets::head_name(net.head())
      << " head (its Dense weights are per position, not per channel); use Grad-CAM (--method gradcam)";
  ENGINE_CHECK(features.defined() && features.ndim() == 4 && features.size(3) == net.feature_channels())
      << "cam_raw: features must be [N, h, w, " << net.feature_channels() << "]";
  ENGINE_CHECK(class_index >= 0 && class_index < net.num_classes())
      << "class index " << class_index << " is out of range: this net has " << net.num_classes() << " logit(s)";
  Tensor weight;
  for (const auto& [name, t] : net.named_parameters())
    if (name == net.head_prefix() + "weight") weight = t;
  ENGINE_CHECK(weight.defined()) << "cam_raw: the net has no " << net.head_prefix() << "weight";
  const int64_t c = features.size(3);
  const std::vector<float> w_all = weight.to_vector();  // [classes, C]
  const float* w = w_all.data() + class_index * c;
  const std::vector<float> a = features.to_vector();
  const int64_t cells = features.size(0) * features.size(1) * features.size(2);
  std::vector<float> out(static_cast<size_t>(cells));
  for (int64_t p = 0; p < cells; ++p) {
    double s = 0;
    for (int64_t k = 0; k < c; ++k) s += static_cast<double>(w[k]) * a[static_cast<size_t>(p * c + k)];
    out[static_cast<size_t>(p)] = static_cast<float>(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// One map in the image frame

double box_iou(const Box& a, const Box& b) {
  const Box inter{std::max(a.x0, b.x0), std::max(a.y0, b.y0), std::min(a.x1, b.x1), std::min(a.y1, b.y1)};
  const int64_t i = inter.area(), u = a.area() + b.area() - i;
  return u > 0 ? static_cast<double>(i) / static_cast<double>(u) : 0.0;
}

Box grow_box(const Box& box, double dx, double dy, int width, int height) {
  if (box.empty()) return box;
  // Pixel x counts when x + 0.5 is in [x0 - dx, x1 + dx].
  Box g;
  g.x0 = std::max(0, static_cast<int>(std::ceil(box.x0 - dx - 0.5)));
  g.y0 = std::max(0, static_cast<int>(std::ceil(box.y0 - dy - 0.5)));
  g.x1 = std::min(width, static_cast<int>(std::floor(box.x1 + dx - 0.5)) + 1);
  g.y1 = std::min(height, static_cast<int>(std::floor(box.y1 + dy - 0.5)) + 1);
  return g;
}

Box half_cell_box(const Box& truth, int grid_h, int grid_w, int width, int height) {
  return grow_box(truth, 0.5 * width / grid_w, 0.5 * height / grid_h, width, height);
}

Heatmap upsample_map(const float* grid, int grid_h, int grid_w, int height, int width) {
  ENGINE_CHECK(grid_h > 0 && grid_w > 0 && height > 0 && width > 0)
      << "upsample_map: bad sizes " << grid_h << "x" << grid_w << " -> " << height << "x" << width;
  data::Image g;
  g.height = grid_h;
  g.width = grid_w;
  g.channels = 1;
  g.pixels.assign(grid, grid + static_cast<size_t>(grid_h) * grid_w);
  data::Image up = data::resize_image(g, height, width, data::ResizeMode::bilinear);
  Heatmap map;
  map.height = height;
  map.width = width;
  map.values = std::move(up.pixels);
  return map;
}

Localisation localise(const Heatmap& map, double threshold) {
  ENGINE_CHECK(threshold > 0 && threshold <= 1) << "the box threshold must be in (0, 1] (a fraction of the map's "
                                                << "maximum), got " << threshold;
  ENGINE_CHECK(map.height > 0 && map.width > 0 && map.values.size() == static_cast<size_t>(map.height) * map.width)
      << "localise: malformed map";
  Localisation out;
  const auto best = std::max_element(map.values.begin(), map.values.end());  // the first maximum
  out.max = *best;
  if (!(out.max > 0) || !std::isfinite(out.max)) return out;
  out.valid = true;
  const size_t peak = static_cast<size_t>(best - map.values.begin());
  out.peak_x = static_cast<int>(peak % static_cast<size_t>(map.width));
  out.peak_y = static_cast<int>(peak / static_cast<size_t>(map.width));
  // Largest 4-connected component of {M >= t max}: a flood fill from every unvisited pixel above the level.
  const float level = static_cast<float>(threshold * out.max);
  const int w = map.width, h = map.height;
  std::vector<uint8_t> seen(map.values.size(), 0);
  std::vector<int> stack;
  int64_t best_size = 0;
  for (int start = 0; start < w * h; ++start) {
    if (seen[start] || map.values[start] < level) continue;
    Box box{w, h, 0, 0};
    int64_t size = 0;
    seen[start] = 1;
    stack.assign(1, start);
    while (!stack.empty()) {
      const int p = stack.back();
      stack.pop_back();
      const int x = p % w, y = p / w;
      ++size;
      box.x0 = std::min(box.x0, x), box.y0 = std::min(box.y0, y);
      box.x1 = std::max(box.x1, x + 1), box.y1 = std::max(box.y1, y + 1);
      const int neighbours[4][2] = {{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}};
      for (const auto& nb : neighbours) {
        if (nb[0] < 0 || nb[1] < 0 || nb[0] >= w || nb[1] >= h) continue;
        const int q = nb[1] * w + nb[0];
        if (!seen[q] && map.values[q] >= level) {
          seen[q] = 1;
          stack.push_back(q);
        }
      }
    }
    if (size > best_size) best_size = size, out.box = box;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Chance levels

ChanceLevels chance_levels(const std::vector<BoxedImage>& images, int grid_h, int grid_w, double threshold, int draws,
                           uint64_t seed) {
  ENGINE_CHECK(draws >= 0) << "random draws must be >= 0, got " << draws;
  ChanceLevels c;
  c.images = static_cast<int64_t>(images.size());
  c.draws = draws;
  c.seed = seed;
  if (images.empty()) {
    c.pointing_exact = c.pointing_random = c.iou_random = c.pointing_centre = c.iou_centre =
        c.pointing_exact_tolerant = c.pointing_random_tolerant = c.pointing_centre_tolerant =
            std::numeric_limits<double>::quiet_NaN();
    return c;
  }
  engine::Generator gen(seed, 0xCA11);
  std::vector<float> grid(static_cast<size_t>(grid_h) * grid_w);
  int64_t random_hits = 0, random_hits_tolerant = 0, random_count = 0;
  double random_iou = 0;
  for (const BoxedImage& im : images) {
    const double pixels = static_cast<double>(im.height) * im.width;
    const Box tolerant = half_cell_box(im.truth, grid_h, grid_w, im.width, im.height);
    c.pointing_exact += static_cast<double>(im.truth.area()) / pixels;
    c.pointing_exact_tolerant += static_cast<double>(tolerant.area()) / pixels;
    for (int d = 0; d < draws; ++d) {
      for (float& v : grid) v = gen.uniform();
      const Localisation where = localise(upsample_map(grid.data(), grid_h, grid_w, im.height, im.width), threshold);
      random_hits += where.valid && im.truth.contains(where.peak_x, where.peak_y);
      random_hits_tolerant += where.valid && tolerant.contains(where.peak_x, where.peak_y);
      random_iou += box_iou(where.box, im.truth);
      ++random_count;
    }
    // The centre map, at image resolution: 1 - (distance from the centre) / (half the diagonal), in
    // coordinates normalised by the image's sides.
    Heatmap centre;
    centre.height = im.height;
    centre.width = im.width;
    centre.values.resize(static_cast<size_t>(im.height) * im.width);
    for (int y = 0; y < im.height; ++y)
      for (int x = 0; x < im.width; ++x) {
        const double u = (x + 0.5) / im.width - 0.5, v = (y + 0.5) / im.height - 0.5;
        centre.values[static_cast<size_t>(y) * im.width + x] = static_cast<float>(1.0 - std::sqrt((u * u + v * v) * 2.0));
      }
    const Localisation where = localise(centre, threshold);
    c.pointing_centre += im.truth.contains(where.peak_x, where.peak_y);
    c.pointing_centre_tolerant += tolerant.contains(where.peak_x, where.peak_y);
    c.iou_centre += box_iou(where.box, im.truth);
  }
  const double n = static_cast<double>(images.size());
  c.pointing_exact /= n;
  c.pointing_exact_tolerant /= n;
  c.pointing_centre /= n;
  c.pointing_centre_tolerant /= n;
  c.iou_centre /= n;
  c.pointing_random = random_count ? static_cast<double>(random_hits) / random_count : std::numeric_limits<double>::quiet_NaN();
  c.pointing_random_tolerant =
      random_count ? static_cast<double>(random_hits_tolerant) / random_count : std::numeric_limits<double>::quiet_NaN();
  c.iou_random = random_count ? random_iou / random_count : std::numeric_limits<double>::quiet_NaN();
  return c;
}

}  // namespace experiment
