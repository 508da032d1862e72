// Class activation maps (Grad-CAM, CAM), their localisation scores against known boxes, the chance levels,
// the heatmap pictures and the gallery page (see cam.h for the maths and the rules).
#include "experiment/cam.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "data/csv.h"
#include "data/image.h"
#include "data/image_write.h"
#include "data/io_util.h"
#include "data/mura_index.h"
#include "data/splits.h"
#include "data/synth_mura.h"
#include "engine/serialize.h"
#include "experiment/metrics.h"
#include "experiment/svg.h"
#include "experiment/trainer.h"

namespace experiment {

namespace fs = std::filesystem;
using engine::Tensor;

namespace {

double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z)); }

std::string method_title(const std::string& method) { return method == "cam" ? "CAM" : "Grad-CAM"; }

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const std::string name = path.filename().string();
  return name.rfind("._", 0) != 0 && (ext == ".png" || ext == ".jpg" || ext == ".jpeg");
}

}  // namespace

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
    ENGINE_CHECK(cam_ok) << "--method " << text << ": CAM needs a head that pools the feature maps before its Dense "
                         << "layer (gap), but this net has the " << nets::head_name(head)
                         << " head, whose Dense weights are per position; use --method gradcam (Grad-CAM works "
                            "for every head)";
    if (text == "cam") return {CamMethod::cam};
    return {CamMethod::gradcam, CamMethod::cam};
  }
  ENGINE_FAIL() << "unknown --method '" << text << "': use gradcam, cam (gap head only), both or auto "
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

// ---------------------------------------------------------------------------------------------------
// Pictures

void colour_of(float v, uint8_t rgb[3]) {
  // Jet: piecewise linear through dark blue (0), blue (1/8), cyan (3/8), yellow (5/8), red (7/8), dark red (1).
  v = std::isfinite(v) ? std::clamp(v, 0.0f, 1.0f) : 0.0f;
  auto ramp = [](float t) { return std::clamp(t, 0.0f, 1.0f); };
  const float r = ramp(std::min(4.0f * v - 1.5f, -4.0f * v + 4.5f));
  const float g = ramp(std::min(4.0f * v - 0.5f, -4.0f * v + 3.5f));
  const float b = ramp(std::min(4.0f * v + 0.5f, -4.0f * v + 2.5f));
  rgb[0] = static_cast<uint8_t>(std::lround(255 * r));
  rgb[1] = static_cast<uint8_t>(std::lround(255 * g));
  rgb[2] = static_cast<uint8_t>(std::lround(255 * b));
}

namespace {

void set_pixel(Rgb8& im, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= im.width || y >= im.height) return;
  uint8_t* p = im.pixels.data() + (static_cast<size_t>(y) * im.width + x) * 3;
  p[0] = r, p[1] = g, p[2] = b;
}

// A rectangle outline `thickness` pixels wide, drawn inside the box.
void draw_box(Rgb8& im, const Box& box, int thickness, uint8_t r, uint8_t g, uint8_t b) {
  if (box.empty()) return;
  for (int t = 0; t < thickness; ++t) {
    for (int x = box.x0; x < box.x1; ++x) set_pixel(im, x, box.y0 + t, r, g, b), set_pixel(im, x, box.y1 - 1 - t, r, g, b);
    for (int y = box.y0; y < box.y1; ++y) set_pixel(im, box.x0 + t, y, r, g, b), set_pixel(im, box.x1 - 1 - t, y, r, g, b);
  }
}

void draw_cross(Rgb8& im, int cx, int cy, int arm) {
  for (int d = -arm - 1; d <= arm + 1; ++d)
    for (int t = -2; t <= 2; ++t) set_pixel(im, cx + d, cy + t, 0, 0, 0), set_pixel(im, cx + t, cy + d, 0, 0, 0);
  for (int d = -arm; d <= arm; ++d)
    for (int t = -1; t <= 1; ++t) set_pixel(im, cx + d, cy + t, 255, 255, 255), set_pixel(im, cx + t, cy + d, 255, 255, 255);
}

// Rgb8 scaled so that its longest side is at most max_side (area averaging); unchanged when smaller.
Rgb8 thumbnail(const Rgb8& im, int max_side) {
  const int longest = std::max(im.height, im.width);
  if (longest <= max_side) return im;
  data::Image f;
  f.height = im.height;
  f.width = im.width;
  f.channels = 3;
  f.pixels.assign(im.pixels.begin(), im.pixels.end());
  const double s = static_cast<double>(max_side) / longest;
  const int h = std::max(1, static_cast<int>(std::lround(im.height * s))), w = std::max(1, static_cast<int>(std::lround(im.width * s)));
  const data::ImageU8 small = data::quantize_u8(data::resize_image(f, h, w, data::ResizeMode::area));
  Rgb8 out;
  out.height = h;
  out.width = w;
  out.pixels = small.pixels;
  return out;
}

}  // namespace

Rgb8 blend_heatmap(const std::vector<float>& grey, const Heatmap& map, const Localisation& where, const Box& truth,
                   float opacity) {
  ENGINE_CHECK(grey.size() == map.values.size() && !grey.empty())
      << "blend_heatmap: the image (" << grey.size() << " pixels) and the map (" << map.height << "x" << map.width
      << ") differ in size";
  Rgb8 out;
  out.height = map.height;
  out.width = map.width;
  out.pixels.resize(grey.size() * 3);
  const float scale = where.valid && where.max > 0 ? 1.0f / where.max : 0.0f;
  for (size_t i = 0; i < grey.size(); ++i) {
    uint8_t c[3];
    colour_of(std::max(0.0f, map.values[i]) * scale, c);
    for (int k = 0; k < 3; ++k) {
      const float v = (1.0f - opacity) * grey[i] + opacity * c[k];
      out.pixels[i * 3 + k] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
    }
  }
  const int thickness = std::max(1, std::min(out.height, out.width) / 160);
  draw_box(out, truth, thickness + 1, 0, 230, 0);
  if (where.valid) {
    draw_box(out, where.box, thickness, 255, 255, 255);
    draw_cross(out, where.peak_x, where.peak_y, 3 + 2 * thickness);
  }
  return out;
}

std::vector<uint8_t> encode_png_rgb(const Rgb8& image) {
  data::PngImage png;
  png.width = image.width;
  png.height = image.height;
  png.color = data::PngColor::rgb;
  png.bit_depth = 8;
  png.samples.assign(image.pixels.begin(), image.pixels.end());
  return data::encode_png(png);
}

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t b0 = bytes[i], b1 = i + 1 < bytes.size() ? bytes[i + 1] : 0, b2 = i + 2 < bytes.size() ? bytes[i + 2] : 0;
    const uint32_t v = (b0 << 16) | (b1 << 8) | b2;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? table[v & 63] : '=';
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Inputs

namespace {

// The MURA label and root of an image path given as it is (…/<root>/<subset>/<part>/<patient>/<study>/<file>).
struct PathInfo {
  int label = -1;
  std::string root, relative;
};
PathInfo mura_path_info(const std::string& path) {
  PathInfo info;
  std::vector<std::string> parts;
  for (const auto& p : fs::path(path).lexically_normal()) parts.push_back(p.string());
  if (parts.size() < 5) return info;
  const std::string tail = parts[parts.size() - 5] + "/" + parts[parts.size() - 4] + "/" + parts[parts.size() - 3] + "/" +
                           parts[parts.size() - 2] + "/" + parts[parts.size() - 1];
  const std::optional<data::MuraPath> parsed = data::parse_mura_path(tail);
  if (!parsed || parsed->file.empty()) return info;
  if (parsed->folder_label) info.label = *parsed->folder_label;
  info.root = fs::path(path).lexically_normal().parent_path().parent_path().parent_path().parent_path().parent_path().string();
  info.relative = parsed->relative();
  return info;
}

std::string box_key(const std::string& relative_path) {
  const std::optional<data::MuraPath> parsed = data::parse_mura_path(relative_path);
  return parsed && !parsed->file.empty() ? parsed->relative() : relative_path;
}

bool exists_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

}  // namespace

CamEntries resolve_cam_entries(const CamInputs& in) {
  const int sources = !in.images.empty() + !in.split.empty() + (in.split.empty() && !in.data_root.empty());
  ENGINE_CHECK(sources > 0) << "nothing to map: give images or study folders, --split (a run's split folder or "
                               "list file) or --data (a MURA root)";
  ENGINE_CHECK(in.images.empty() || (in.split.empty() && in.data_root.empty()))
      << "give either images/study folders or --split/--data, not both";
  CamEntries e;
  std::error_code ec;
  if (!in.images.empty()) {
    std::map<std::string, std::map<std::string, data::DefectBox>> boxes_by_root;
    for (const std::string& arg : in.images) {
      std::vector<std::string> files;
      if (fs::is_directory(arg, ec)) {
        for (const auto& f : fs::directory_iterator(arg))
          if (f.is_regular_file() && is_image_file(f.path())) files.push_back(f.path().string());
        std::sort(files.begin(), files.end());
        ENGINE_CHECK(!files.empty()) << arg << ": no .png or .jpg images in this folder";
      } else {
        ENGINE_CHECK(fs::is_regular_file(arg, ec)) << arg << ": no such file or folder";
        files.push_back(arg);
      }
      for (const std::string& f : files) {
        const PathInfo info = mura_path_info(f);
        e.paths.push_back(f);
        e.labels.push_back(info.label);
        bool has = false;
        Box box;
        // An image inside a synthetic tree: its root's defect_boxes.csv gives the true box.
        if (!info.root.empty() && exists_file(info.root + "/defect_boxes.csv")) {
          auto it = boxes_by_root.find(info.root);
          if (it == boxes_by_root.end()) it = boxes_by_root.emplace(info.root, data::read_defect_boxes(info.root)).first;
          const auto b = it->second.find(info.relative);
          if (b != it->second.end()) has = true, box = {b->second.x0, b->second.y0, b->second.x1, b->second.y1};
        }
        e.has_box.push_back(has);
        e.boxes.push_back(box);
      }
    }
    return e;
  }
  std::vector<data::SplitEntry> entries;
  std::string root = in.data_root;
  if (!in.split.empty()) {
    const bool is_folder = fs::is_directory(in.split, ec);
    const std::string file = is_folder ? in.split + "/" + in.list + ".csv" : in.split;
    ENGINE_CHECK(fs::is_regular_file(file, ec))
        << file << " does not exist" << (is_folder ? " (--list is train, validation or test)" : "")
        << "; --split takes a run's split folder or one list file";
    entries = data::parse_split_list(data::read_file_text(file), file);
    ENGINE_CHECK(!entries.empty()) << file << " lists no images: nothing to map";
    if (root.empty()) {
      // The run's data root, from args.json next to the split folder.
      const fs::path split_folder = is_folder ? fs::path(in.split) : fs::path(in.split).parent_path();
      const std::string args = split_folder.parent_path().string() + "/args.json";
      ENGINE_CHECK(fs::is_regular_file(args, ec))
          << "no --data given and no " << args << " to take the run's data root from; pass --data MURA_ROOT";
      root = json_string_field(data::read_file_text(args), "data_root");
      ENGINE_CHECK(!root.empty()) << args << " has no data_root; pass --data MURA_ROOT";
    }
  } else {
    ENGINE_CHECK(in.subset == "valid" || in.subset == "train" || in.subset == "all")
        << "--subset must be valid, train or all, got '" << in.subset << "'";
    const data::MuraIndex index = data::load_mura_index(root);
    root = index.root;
    for (const data::MuraStudy& s : index.studies) {
      if (in.subset != "all" && data::subset_name(s.subset) != in.subset) continue;
      for (int64_t i : s.images) {
        data::SplitEntry x;
        x.path = index.images[static_cast<size_t>(i)].path;
        x.label = s.label;
        entries.push_back(x);
      }
    }
    ENGINE_CHECK(!entries.empty()) << root << ": no images in the " << in.subset << " subset: nothing to map";
  }
  ENGINE_CHECK(fs::is_directory(root, ec)) << "data root " << root << " does not exist; pass --data MURA_ROOT";
  std::map<std::string, data::DefectBox> boxes;
  if (exists_file(root + "/defect_boxes.csv")) boxes = data::read_defect_boxes(root);
  e.root = root;
  for (const data::SplitEntry& x : entries) {
    e.paths.push_back(x.path);
    e.labels.push_back(x.label);
    const auto b = boxes.find(box_key(x.path));
    e.has_box.push_back(b != boxes.end());
    e.boxes.push_back(b != boxes.end() ? Box{b->second.x0, b->second.y0, b->second.x1, b->second.y1} : Box{});
  }
  return e;
}

// ---------------------------------------------------------------------------------------------------
// Reports

namespace {

std::string score(double v) { return std::isfinite(v) ? fmt(v, 3) : "n/a"; }

struct TableRow {
  std::string name, boxed, pointing, pointing_tolerant, iou;
};

std::vector<TableRow> summary_rows(const CamSummary& s) {
  std::vector<TableRow> rows;
  for (const MethodScore& m : s.methods) {
    rows.push_back({method_title(m.method), std::to_string(m.boxed), score(m.pointing), score(m.pointing_tolerant),
                    score(m.mean_iou)});
    rows.push_back({method_title(m.method) + ", images predicted abnormal", std::to_string(m.boxed_predicted),
                    score(m.pointing_predicted), score(m.pointing_tolerant_predicted), score(m.mean_iou_predicted)});
  }
  const ChanceLevels& c = s.chance;
  const std::string n = std::to_string(c.images);
  rows.push_back({"chance: uniformly random peak (exact)", n, score(c.pointing_exact), score(c.pointing_exact_tolerant), ""});
  rows.push_back({"chance: random " + std::to_string(s.grid_h) + "x" + std::to_string(s.grid_w) + " map (" +
                      std::to_string(c.draws) + " draws, seed " + std::to_string(c.seed) + ")",
                  n, score(c.pointing_random), score(c.pointing_random_tolerant), score(c.iou_random)});
  rows.push_back({"centre map", n, score(c.pointing_centre), score(c.pointing_centre_tolerant), score(c.iou_centre)});
  return rows;
}

const char* kScoreNote =
    "Pointing game: the map's peak inside the true box; within half a cell: inside the box grown by half a "
    "feature cell each way (the map's own resolution). IoU: the thresholded map's box against the true box. "
    "Chance levels: a uniformly random peak pixel hits with probability box area / image area; the random "
    "map is i.i.d. uniform on the feature grid, through the same upsampling and box rule; the centre map "
    "always points at the middle.";

const char* kTableHeader[5] = {"map", "images with a box", "pointing game", "pointing game within half a cell",
                               "mean IoU"};

std::vector<std::pair<std::string, std::string>> summary_context(const CamSummary& s) {
  std::string empty;
  for (const MethodScore& m : s.methods)
    empty += (empty.empty() ? "" : ", ") + method_title(m.method) + " " + std::to_string(m.empty) + " of " +
             std::to_string(s.images);
  return {{"checkpoint", s.checkpoint},
          {"net", s.arch + ", " + s.head + " head, " + std::to_string(s.input_size) + " px input, " +
                      std::to_string(s.grid_h) + "x" + std::to_string(s.grid_w) + " feature grid"},
          {"images", std::to_string(s.images) + " (" + std::to_string(s.boxed) + " with a known defect box)"},
          {"box rule", "largest 4-connected component of the map >= " + fmt(s.threshold, 2) +
                           " x its maximum, in the image's own pixels"},
          {"maps with no positive value (nothing to point at; a miss where there is a box)", empty},
          {"device", s.device},
          {"seconds", fmt(s.seconds, 1)}};
}

}  // namespace

std::string cam_summary_markdown(const CamSummary& s) {
  std::string md = "## Localisation: " + s.arch + " (" + s.head + " head)\n\n";
  for (const auto& [k, v] : summary_context(s)) md += "- " + k + ": " + v + "\n";
  md += "\n|";
  for (const char* h : kTableHeader) md += std::string(" ") + h + " |";
  md += "\n|---|---:|---:|---:|---:|\n";
  for (const TableRow& r : summary_rows(s))
    md += "| " + r.name + " | " + r.boxed + " | " + r.pointing + " | " + r.pointing_tolerant + " | " + r.iou + " |\n";
  md += "\n" + std::string(kScoreNote) + "\n";
  if (!s.gallery_path.empty()) md += "\nGallery of the top abnormal predictions: [" + s.gallery_path + "](" + s.gallery_path + ")\n";
  return md;
}

std::string cam_summary_json(const CamSummary& s) {
  std::string j = "{\n";
  j += "  \"checkpoint\": " + json_string(s.checkpoint) + ",\n";
  j += "  \"arch\": " + json_string(s.arch) + ",\n  \"head\": " + json_string(s.head) + ",\n";
  j += "  \"input_size\": " + std::to_string(s.input_size) + ",\n";
  j += "  \"grid\": [" + std::to_string(s.grid_h) + ", " + std::to_string(s.grid_w) + "],\n";
  j += "  \"device\": " + json_string(s.device) + ",\n";
  j += "  \"images\": " + std::to_string(s.images) + ",\n  \"boxed_images\": " + std::to_string(s.boxed) + ",\n";
  j += "  \"threshold\": " + json_number(s.threshold) + ",\n  \"seconds\": " + json_number(s.seconds) + ",\n";
  j += "  \"gallery\": " + json_string(s.gallery_path) + ",\n";
  j += "  \"methods\": [";
  for (size_t i = 0; i < s.methods.size(); ++i) {
    const MethodScore& m = s.methods[i];
    j += std::string(i ? ", " : "") + "{\"method\": " + json_string(m.method) + ", \"boxed\": " + std::to_string(m.boxed) +
         ", \"empty_maps\": " + std::to_string(m.empty) + ", \"hits\": " + std::to_string(m.hits) +
         ", \"pointing_game\": " + json_number(m.pointing) +
         ", \"hits_half_cell\": " + std::to_string(m.hits_tolerant) + ", \"pointing_game_half_cell\": " +
         json_number(m.pointing_tolerant) +
         ", \"mean_iou\": " + json_number(m.mean_iou) + ", \"boxed_predicted_abnormal\": " +
         std::to_string(m.boxed_predicted) + ", \"pointing_game_predicted_abnormal\": " + json_number(m.pointing_predicted) +
         ", \"pointing_game_half_cell_predicted_abnormal\": " + json_number(m.pointing_tolerant_predicted) +
         ", \"mean_iou_predicted_abnormal\": " + json_number(m.mean_iou_predicted) + "}";
  }
  j += "],\n";
  const ChanceLevels& c = s.chance;
  j += "  \"chance\": {\"images\": " + std::to_string(c.images) + ", \"pointing_game_exact\": " + json_number(c.pointing_exact) +
       ", \"pointing_game_random_map\": " + json_number(c.pointing_random) + ", \"mean_iou_random_map\": " +
       json_number(c.iou_random) + ", \"pointing_game_centre_map\": " + json_number(c.pointing_centre) +
       ", \"mean_iou_centre_map\": " + json_number(c.iou_centre) + ", \"pointing_game_half_cell_exact\": " +
       json_number(c.pointing_exact_tolerant) + ", \"pointing_game_half_cell_random_map\": " +
       json_number(c.pointing_random_tolerant) + ", \"pointing_game_half_cell_centre_map\": " +
       json_number(c.pointing_centre_tolerant) + ", \"draws\": " + std::to_string(c.draws) +
       ", \"seed\": " + std::to_string(c.seed) + "}\n}\n";
  return j;
}

std::string cam_gallery_html(const CamSummary& s, const std::vector<size_t>& entries,
                             const std::vector<std::vector<std::vector<uint8_t>>>& pngs) {
  ENGINE_CHECK(pngs.size() == entries.size()) << "cam_gallery_html: one PNG list per entry";
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>Class activation maps: " +
      xml_escape(s.arch) + "</title>\n<style>\n"
      "body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}\n"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}\n"
      "td:first-child,th:first-child{text-align:left}\n"
      ".gallery{display:flex;flex-wrap:wrap;gap:1em}\n"
      ".entry{margin:0;background:#fff;border:1px solid #ccc;padding:.5em;max-width:540px}\n"
      ".maps{display:flex;gap:.4em}.map{text-align:center;font-size:.85em}.map img{display:block;max-width:260px}\n"
      "figcaption{font-size:.85em;margin-top:.4em}figcaption code{word-break:break-all}.p{font-weight:bold}\n"
      "</style></head><body>\n";
  h += "<h1>Class activation maps: " + xml_escape(s.arch) + " (" + xml_escape(s.head) + " head)</h1>\n<ul>\n";
  for (const auto& [k, v] : summary_context(s)) h += "<li>" + xml_escape(k) + ": " + xml_escape(v) + "</li>\n";
  h += "</ul>\n<table>\n<tr>";
  for (const char* t : kTableHeader) h += std::string("<th>") + t + "</th>";
  h += "</tr>\n";
  for (const TableRow& r : summary_rows(s))
    h += "<tr><td>" + xml_escape(r.name) + "</td><td>" + r.boxed + "</td><td>" + r.pointing + "</td><td>" +
         r.pointing_tolerant + "</td><td>" + r.iou + "</td></tr>\n";
  h += "</table>\n<p>" + xml_escape(kScoreNote) + "</p>\n<p>Colours: the map scaled to its maximum (blue low, red high) over the radiograph; green: the "
       "true defect box; white: the map's box and its peak (cross).</p>\n";
  h += "<h2>Top " + std::to_string(entries.size()) + " abnormal predictions</h2>\n<div class=\"gallery\">\n";
  for (size_t e = 0; e < entries.size(); ++e) {
    const CamImage& im = s.per_image.at(entries[e]);
    h += "<figure class=\"entry\" data-probability=\"" + fmt(im.probability, 4) + "\">\n<div class=\"maps\">";
    ENGINE_CHECK(pngs[e].size() == s.methods.size()) << "cam_gallery_html: one PNG per method";
    for (size_t m = 0; m < s.methods.size(); ++m)
      h += "<div class=\"map\"><img alt=\"" + method_title(s.methods[m].method) + "\" src=\"data:image/png;base64," +
           base64(pngs[e][m]) + "\"><span>" + method_title(s.methods[m].method) + "</span></div>";
    h += "</div>\n<figcaption><span class=\"p\">p(abnormal) = " + fmt(im.probability, 4) + "</span>";
    h += std::string(" &middot; label: ") + (im.label < 0 ? "unknown" : im.label ? "abnormal" : "normal");
    if (im.has_box)
      for (size_t m = 0; m < s.methods.size(); ++m)
        h += " &middot; " + method_title(s.methods[m].method) + ": " +
             (im.results[m].hit ? "hit" : im.results[m].hit_tolerant ? "hit within half a cell" : "miss") + ", IoU " +
             fmt(im.results[m].iou, 2);
    h += "<br><code>" + xml_escape(im.path) + "</code></figcaption>\n</figure>\n";
  }
  h += "</div>\n</body></html>\n";
  return h;
}

// ---------------------------------------------------------------------------------------------------
// The batch

namespace {

// The grey image (0..255) of a decoded image: the mean of its channels.
std::vector<float> grey_of(const data::Image& im) {
  std::vector<float> g(static_cast<size_t>(im.height) * im.width);
  for (size_t i = 0; i < g.size(); ++i) {
    float s = 0;
    for (int c = 0; c < im.channels; ++c) s += im.pixels[i * im.channels + c];
    g[i] = s / im.channels;
  }
  return g;
}

// "0007_XR_HAND_patient00003_study1_positive_image2": the index and the path's last components.
std::string file_stem(size_t index, const std::string& path) {
  std::vector<std::string> parts;
  for (const auto& p : fs::path(path)) parts.push_back(p.string());
  std::string tail;
  const size_t first = parts.size() > 4 ? parts.size() - 4 : 0;
  for (size_t i = first; i < parts.size(); ++i) {
    std::string p = i + 1 == parts.size() ? fs::path(parts[i]).stem().string() : parts[i];
    for (char& c : p)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
    if (p.empty() || p == "_") continue;
    tail += (tail.empty() ? "" : "_") + p;
  }
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "%04zu", index);
  return std::string(prefix) + (tail.empty() ? "" : "_" + tail);
}

// The positive part of a raw map (Grad-CAM's ReLU; CAM's evidence for the class).
std::vector<float> positive_part(const float* raw, size_t count) {
  std::vector<float> out(raw, raw + count);
  for (float& v : out) v = std::max(v, 0.0f);
  return out;
}

}  // namespace

CamSummary run_cam_batch(const std::string& checkpoint, const CamInputs& inputs, const std::string& out_dir,
                         const CamOptions& options) {
  const double start = now_seconds();
  // --- Every check before anything is written ---
  ENGINE_CHECK(!out_dir.empty()) << "an output folder is required (--out)";
  std::error_code ec;
  ENGINE_CHECK(!fs::exists(out_dir, ec) || fs::is_directory(out_dir, ec)) << "--out " << out_dir << " is a file, not a folder";
  ENGINE_CHECK(options.batch_size >= 1) << "--batch-size must be at least 1, got " << options.batch_size;
  ENGINE_CHECK(options.top >= 0) << "--top must be >= 0, got " << options.top;
  ENGINE_CHECK(options.threshold > 0 && options.threshold <= 1)
      << "--threshold must be in (0, 1] (a fraction of the map's maximum), got " << options.threshold;
  ENGINE_CHECK(options.random_draws >= 0) << "--random-draws must be >= 0, got " << options.random_draws;
  const CheckpointInfo ckpt = read_checkpoint(checkpoint);
  const std::shared_ptr<nets::Net> net = net_from_checkpoint(ckpt);
  const std::vector<CamMethod> methods = parse_cam_methods(options.method, net->head());
  ENGINE_CHECK(options.class_index >= 0 && options.class_index < net->num_classes())
      << "--class " << options.class_index << " is out of range: this net has " << net->num_classes() << " logit(s)";
  const CamEntries entries = resolve_cam_entries(inputs);
  const engine::Device device = engine::select_device(options.device);
  net->to(device);
  net->eval();
  for (auto& [name, t] : net->named_parameters()) t.set_requires_grad(false);  // gradients for the features only

  const data::LoaderOptions lo = eval_loader_options(ckpt.metadata, options.batch_size, 1);
  const data::Normalizer norm = data::Normalizer::make(lo.norm);
  const int size = lo.height;
  const auto [grid_h, grid_w] = net->feature_grid(size, size);

  CamSummary s;
  s.checkpoint = checkpoint;
  s.arch = net->arch();
  s.head = nets::head_name(net->head());
  s.device = device.str();
  s.out_dir = out_dir;
  s.input_size = size;
  s.grid_h = grid_h;
  s.grid_w = grid_w;
  s.threshold = options.threshold;
  const size_t n = entries.paths.size(), cells = static_cast<size_t>(grid_h * grid_w);
  s.images = static_cast<int64_t>(n);
  for (CamMethod m : methods) s.methods.push_back({cam_method_name(m)});
  std::vector<std::vector<float>> raw_maps(methods.size(), std::vector<float>(n * cells));
  auto file_of = [&](size_t i) { return entries.root.empty() ? entries.paths[i] : entries.root + "/" + entries.paths[i]; };

  // --- Pass 1: every image's maps, peak, box and scores (nothing written yet) ---
  Progress progress("cam", static_cast<int64_t>((n + options.batch_size - 1) / options.batch_size), options.quiet);
  std::vector<float> batch;
  for (size_t first = 0, done = 0; first < n; first += static_cast<size_t>(options.batch_size)) {
    const size_t b = std::min(n - first, static_cast<size_t>(options.batch_size));
    batch.assign(b * size * size * 3, 0.0f);
    for (size_t i = 0; i < b; ++i) {
      const size_t index = first + i;
      // Exactly the evaluation pipeline: decode, resize to the net's size, quantise, normalise.
      const data::Image decoded = data::decode_image_file(file_of(index), lo.limits);
      const data::ImageU8 resized = decoded.height == size && decoded.width == size
                                        ? data::quantize_u8(decoded)
                                        : data::quantize_u8(data::resize_image(decoded, size, size, lo.resize));
      data::render_image({resized.pixels.data(), resized.height, resized.width, resized.channels}, {}, norm,
                         batch.data() + i * size * size * 3);
      CamImage im;
      im.path = entries.paths[index];
      im.label = entries.labels[index];
      im.height = decoded.height;
      im.width = decoded.width;
      im.has_box = entries.has_box[index];
      im.truth = entries.boxes[index];
      s.per_image.push_back(std::move(im));
    }
    const Tensor images = Tensor::from_vector({static_cast<int64_t>(b), size, size, 3}, batch).to(device);
    Tensor features;
    {
      engine::NoGradGuard no_grad;
      features = net->features(images);
    }
    std::vector<double> logits;
    const Tensor gradient = logit_gradient(*net, features, options.class_index, &logits);
    for (size_t m = 0; m < methods.size(); ++m) {
      const std::vector<float> raw =
          methods[m] == CamMethod::gradcam ? gradcam_raw(features, gradient) : cam_raw(*net, features, options.class_index);
      std::copy(raw.begin(), raw.end(), raw_maps[m].begin() + static_cast<std::ptrdiff_t>(first * cells));
    }
    for (size_t i = 0; i < b; ++i) {
      CamImage& im = s.per_image[first + i];
      im.logit = logits[i];
      im.probability = sigmoid(im.logit);
      for (size_t m = 0; m < methods.size(); ++m) {
        const std::vector<float> grid = positive_part(raw_maps[m].data() + (first + i) * cells, cells);
        CamImage::Result r;
        r.where = localise(upsample_map(grid.data(), grid_h, grid_w, im.height, im.width), options.threshold);
        if (im.has_box) {
          r.hit = r.where.valid && im.truth.contains(r.where.peak_x, r.where.peak_y);
          r.hit_tolerant = r.where.valid && half_cell_box(im.truth, grid_h, grid_w, im.width, im.height)
                                                .contains(r.where.peak_x, r.where.peak_y);
          r.iou = box_iou(r.where.box, im.truth);
        }
        im.results.push_back(r);
      }
    }
    progress.update(static_cast<int64_t>(++done), static_cast<int64_t>(first + b), 0, 0);
  }

  // --- Scores and chance levels ---
  std::vector<BoxedImage> boxed;
  for (const CamImage& im : s.per_image)
    if (im.has_box) boxed.push_back({im.height, im.width, im.truth});
  s.boxed = static_cast<int64_t>(boxed.size());
  for (size_t m = 0; m < methods.size(); ++m) {
    MethodScore& ms = s.methods[m];
    double iou = 0, iou_predicted = 0;
    int64_t hits_predicted = 0, hits_tolerant_predicted = 0;
    for (const CamImage& im : s.per_image) {
      ms.empty += !im.results[m].where.valid;
      if (!im.has_box) continue;
      ++ms.boxed;
      ms.hits += im.results[m].hit;
      ms.hits_tolerant += im.results[m].hit_tolerant;
      iou += im.results[m].iou;
      if (im.probability > kThreshold) {
        ++ms.boxed_predicted;
        hits_predicted += im.results[m].hit;
        hits_tolerant_predicted += im.results[m].hit_tolerant;
        iou_predicted += im.results[m].iou;
      }
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    ms.pointing = ms.boxed ? static_cast<double>(ms.hits) / ms.boxed : nan;
    ms.pointing_tolerant = ms.boxed ? static_cast<double>(ms.hits_tolerant) / ms.boxed : nan;
    ms.pointing_tolerant_predicted =
        ms.boxed_predicted ? static_cast<double>(hits_tolerant_predicted) / ms.boxed_predicted : nan;
    ms.mean_iou = ms.boxed ? iou / ms.boxed : nan;
    ms.pointing_predicted = ms.boxed_predicted ? static_cast<double>(hits_predicted) / ms.boxed_predicted : nan;
    ms.mean_iou_predicted = ms.boxed_predicted ? iou_predicted / ms.boxed_predicted : nan;
  }
  s.chance = chance_levels(boxed, grid_h, grid_w, options.threshold, options.random_draws, options.seed);

  // --- The gallery's entries: the highest probabilities of abnormality ---
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return s.per_image[a].probability > s.per_image[b].probability; });
  order.resize(std::min(n, static_cast<size_t>(options.top)));
  std::set<size_t> save(order.begin(), order.end());
  if (options.save_all || !inputs.images.empty())
    for (size_t i = 0; i < n; ++i) save.insert(i);

  // --- Pass 2: the output folder, the pictures and raw maps, the tables ---
  data::make_directories(out_dir + "/images");
  s.gallery_path = options.top > 0 ? "gallery.html" : "";
  std::map<size_t, std::vector<std::vector<uint8_t>>> gallery_pngs;
  for (size_t index : save) {
    CamImage& im = s.per_image[index];
    const data::Image decoded = data::decode_image_file(file_of(index), lo.limits);
    const std::vector<float> grey = grey_of(decoded);
    im.files = file_stem(index, im.path);
    engine::NamedTensors tensors;
    std::map<std::string, std::string> meta = {{"path", im.path}, {"probability", fmt(im.probability, 6)},
                                               {"logit", fmt(im.logit, 6)}, {"arch", s.arch}, {"head", s.head}};
    for (size_t m = 0; m < methods.size(); ++m) {
      const std::string name = s.methods[m].method;
      const float* raw = raw_maps[m].data() + index * cells;
      const std::vector<float> grid = positive_part(raw, cells);
      const Heatmap map = upsample_map(grid.data(), grid_h, grid_w, im.height, im.width);
      const CamImage::Result& r = im.results[m];
      const Rgb8 picture = blend_heatmap(grey, map, r.where, im.has_box ? im.truth : Box{});
      data::write_bytes_file(out_dir + "/images/" + im.files + "." + name + ".png", encode_png_rgb(picture));
      if (std::find(order.begin(), order.end(), index) != order.end())
        gallery_pngs[index].push_back(encode_png_rgb(thumbnail(picture, 260)));
      // The raw map as computed (CAM keeps its sign; Grad-CAM after its ReLU), at both resolutions.
      const std::vector<float> stored = methods[m] == CamMethod::cam ? std::vector<float>(raw, raw + cells) : grid;
      const Heatmap stored_up = upsample_map(stored.data(), grid_h, grid_w, im.height, im.width);
      tensors.push_back({name + ".feature", Tensor::from_vector({grid_h, grid_w}, stored)});
      tensors.push_back({name + ".image", Tensor::from_vector({im.height, im.width}, stored_up.values)});
      meta[name + ".peak"] = std::to_string(r.where.peak_x) + "," + std::to_string(r.where.peak_y);
      meta[name + ".box"] = std::to_string(r.where.box.x0) + "," + std::to_string(r.where.box.y0) + "," +
                            std::to_string(r.where.box.x1) + "," + std::to_string(r.where.box.y1);
    }
    engine::save_tensors(out_dir + "/images/" + im.files + ".safetensors", tensors, meta);
  }

  // cam.csv
  std::vector<std::string> header = {"path", "label", "probability", "logit", "height", "width",
                                     "true_x0", "true_y0", "true_x1", "true_y1", "files"};
  for (const MethodScore& m : s.methods)
    for (const char* f : {"_peak_x", "_peak_y", "_x0", "_y0", "_x1", "_y1", "_hit", "_hit_half_cell", "_iou"})
      header.push_back(m.method + f);
  std::string csv = data::csv_line(header);
  for (const CamImage& im : s.per_image) {
    std::vector<std::string> row = {im.path, std::to_string(im.label), fmt(im.probability, 6), fmt(im.logit, 6),
                                    std::to_string(im.height), std::to_string(im.width)};
    for (int v : {im.truth.x0, im.truth.y0, im.truth.x1, im.truth.y1}) row.push_back(im.has_box ? std::to_string(v) : "");
    row.push_back(im.files);
    for (const CamImage::Result& r : im.results) {
      for (int v : {r.where.peak_x, r.where.peak_y, r.where.box.x0, r.where.box.y0, r.where.box.x1, r.where.box.y1})
        row.push_back(r.where.valid ? std::to_string(v) : "");
      row.push_back(im.has_box ? (r.hit ? "1" : "0") : "");
      row.push_back(im.has_box ? (r.hit_tolerant ? "1" : "0") : "");
      row.push_back(im.has_box ? fmt(r.iou, 4) : "");
    }
    csv += data::csv_line(row);
  }
  data::write_file_atomic(out_dir + "/cam.csv", csv);
  engine::NamedTensors all;
  for (size_t m = 0; m < methods.size(); ++m)
    all.push_back({s.methods[m].method, Tensor::from_vector({static_cast<int64_t>(n), grid_h, grid_w}, raw_maps[m])});
  engine::save_tensors(out_dir + "/feature_maps.safetensors", all,
                       {{"arch", s.arch}, {"head", s.head}, {"order", "the rows of cam.csv"},
                        {"note", "raw maps before Grad-CAM's ReLU"}});
  s.seconds = now_seconds() - start;
  if (!s.gallery_path.empty()) {
    std::vector<std::vector<std::vector<uint8_t>>> pngs;
    for (size_t index : order) pngs.push_back(gallery_pngs.at(index));
    data::write_file_atomic(out_dir + "/gallery.html", cam_gallery_html(s, order, pngs));
    s.gallery_path = out_dir + "/gallery.html";
  }
  CamSummary for_files = s;
  if (!s.gallery_path.empty()) for_files.gallery_path = "gallery.html";  // links relative to the folder
  data::write_file_atomic(out_dir + "/summary.json", cam_summary_json(for_files));
  data::write_file_atomic(out_dir + "/report.md", "# Class activation maps\n\n" + cam_summary_markdown(for_files));
  progress.finish(std::to_string(n) + " images, " + std::to_string(s.boxed) + " with a box");
  return s;
}

}  // namespace experiment
