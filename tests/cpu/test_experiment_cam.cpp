// Class activation maps (experiment/cam.h): Grad-CAM's gradient against finite differences of the head
// and against the analytic gradients of the gap, imagenet and flatten heads; CAM = h w x Grad-CAM before
// its ReLU for a gap head; upsampling, the box rule, IoU, the tolerance box and the chance levels on
// hand-made maps; the batch on a small synthetic set (the gallery rendered in headless chromium); and
// bad inputs failing clearly before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "data/image.h"
#include "data/io_util.h"
#include "data/synth_mura.h"
#include "engine/serialize.h"
#include "experiment/cam.h"
#include "experiment/trainer.h"
#include "support/browser.h"
#include "support/gradcheck.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;
using engine::Shape;
using engine::Tensor;
using namespace experiment;

std::string temp_dir(const std::string& name) { return test_support::fresh_temp_path("experiment_cam", name); }

// Eval-mode features of random images for a freshly initialised net.
Tensor random_features(nets::Net& net, int64_t batch, int64_t size, uint64_t seed) {
  net.eval();
  engine::Generator gen(seed);
  const Tensor images = test_support::random_tensor({batch, size, size, 3}, gen, 0.0f, 1.0f);
  engine::NoGradGuard no_grad;
  return net.features(images);
}

Tensor head_weight(const nets::Net& net) {
  for (const auto& [name, t] : net.named_parameters())
    if (name == net.head_prefix() + "weight") return t;
  return Tensor();
}

// y_c of every image for features `a` (host values), through the head alone.
std::vector<double> head_logits(const nets::Net& net, const Shape& shape, const std::vector<float>& a, int64_t c) {
  engine::NoGradGuard no_grad;
  const std::vector<float> y = net.run_head(Tensor::from_vector(shape, a)).to_vector();
  const int64_t classes = net.num_classes();
  std::vector<double> out(static_cast<size_t>(shape[0]));
  for (int64_t i = 0; i < shape[0]; ++i) out[static_cast<size_t>(i)] = y[static_cast<size_t>(i * classes + c)];
  return out;
}

TEST(GradCam, GradientAndMapMatchFiniteDifferencesOfTheHead) {
  for (const char* head : {"gap", "flatten"}) {
    auto net = build_net("densenet_tiny", nets::parse_head(head), nets::Flavor::torch, 96, 3);
    const Tensor a = random_features(*net, 2, 96, 11);  // [2, 3, 3, C]
    const Shape shape = a.shape();
    const int64_t n = shape[0], hw = shape[1] * shape[2], c = shape[3];
    // The head's bias is zero at initialisation; give it a value so that it is seen to drop out.
    for (const auto& [name, t] : net->named_parameters())
      if (name == net->head_prefix() + "bias") t.fill_(0.3f);
    std::vector<double> logits;
    const Tensor g = logit_gradient(*net, a, 0, &logits);
    ASSERT_EQ(g.shape(), shape);
    // Central differences of y w.r.t. every element of A (the head is run on perturbed copies).
    const std::vector<float> base = a.to_vector();
    std::vector<float> fd(base.size());
    const float eps = 1e-2f;
    for (size_t p = 0; p < base.size(); ++p) {
      std::vector<float> plus = base, minus = base;
      plus[p] += eps;
      minus[p] -= eps;
      const size_t image = p / static_cast<size_t>(hw * c);
      fd[p] = static_cast<float>((head_logits(*net, shape, plus, 0)[image] - head_logits(*net, shape, minus, 0)[image]) /
                                 (2 * eps));
    }
    EXPECT_TRUE(test_support::all_close(g.to_vector(), fd, 1e-4f, 1e-2f)) << head;
    // Grad-CAM before its ReLU from the finite-difference gradient, by hand.
    std::vector<float> expected(static_cast<size_t>(n * hw));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t q = 0; q < hw; ++q) {
        double s = 0;
        for (int64_t k = 0; k < c; ++k) {
          double alpha = 0;
          for (int64_t r = 0; r < hw; ++r) alpha += fd[static_cast<size_t>((i * hw + r) * c + k)];
          s += alpha / hw * base[static_cast<size_t>((i * hw + q) * c + k)];
        }
        expected[static_cast<size_t>(i * hw + q)] = static_cast<float>(s);
      }
    const std::vector<float> raw = gradcam_raw(a, g);
    EXPECT_TRUE(test_support::all_close(raw, expected, 1e-4f, 1e-2f)) << head;
    // The logits agree with a forward pass of the head.
    const std::vector<double> y = head_logits(*net, shape, base, 0);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(logits[static_cast<size_t>(i)], y[static_cast<size_t>(i)], 1e-5);
  }
}

TEST(GradCam, AnalyticGradientsOfTheHeads) {
  // flatten: dy/dA = the Dense weight reshaped to [h, w, C], the same for every image.
  {
    auto net = build_net("densenet_tiny", nets::Head::flatten, nets::Flavor::torch, 64, 5);
    const Tensor a = random_features(*net, 3, 64, 2);
    const std::vector<float> g = logit_gradient(*net, a, 0).to_vector(), w = head_weight(*net).to_vector();
    ASSERT_EQ(g.size(), 3 * w.size());
    for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], w[i % w.size()]) << i;
  }
  // gap: dy/dA_ij^k = w_k / (h w) everywhere; CAM = h w x Grad-CAM before its ReLU.
  {
    auto net = build_net("densenet_tiny", nets::Head::gap, nets::Flavor::torch, 96, 5);
    const Tensor a = random_features(*net, 2, 96, 4);
    const int64_t hw = a.size(1) * a.size(2), c = a.size(3);
    const Tensor g = logit_gradient(*net, a, 0);
    const std::vector<float> gv = g.to_vector(), w = head_weight(*net).to_vector();
    for (size_t i = 0; i < gv.size(); ++i) ASSERT_NEAR(gv[i], w[i % c] / hw, 1e-7) << i;
    std::vector<float> scaled = gradcam_raw(a, g);
    for (float& v : scaled) v *= static_cast<float>(hw);
    const std::vector<float> cam = cam_raw(*net, a, 0);
    EXPECT_TRUE(test_support::all_close(cam, scaled, 1e-5f, 1e-4f));
    // The maps are not trivially zero.
    float largest = 0;
    for (float v : cam) largest = std::max(largest, std::fabs(v));
    EXPECT_GT(largest, 1e-2f);
  }
  // imagenet (1000 logits): class 7's gradient is its Dense row / (h w).
  {
    auto net = build_net("densenet_tiny", nets::Head::imagenet, nets::Flavor::torch, 64, 5);
    const Tensor a = random_features(*net, 1, 64, 6);
    const int64_t hw = a.size(1) * a.size(2), c = a.size(3);
    const std::vector<float> g = logit_gradient(*net, a, 7).to_vector(), w = head_weight(*net).to_vector();
    for (size_t i = 0; i < g.size(); ++i) ASSERT_NEAR(g[i], w[static_cast<size_t>(7 * c) + i % c] / hw, 1e-7) << i;
    EXPECT_THROW(logit_gradient(*net, a, 1000), std::exception);
  }
}

TEST(GradCam, CamNeedsAPoolingHead) {
  auto net = build_net("densenet_tiny", nets::Head::flatten, nets::Flavor::torch, 64, 5);
  const Tensor a = random_features(*net, 1, 64, 2);
  try {
    cam_raw(*net, a, 0);
    ADD_FAILURE() << "CAM on a flatten head did not throw";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("Grad-CAM"), std::string::npos) << e.what();
  }
  for (const char* m : {"cam", "both"}) {
    try {
      parse_cam_methods(m, nets::Head::flatten);
      ADD_FAILURE() << m;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("--method gradcam"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(parse_cam_methods("auto", nets::Head::flatten).size(), 1u);
  EXPECT_EQ(parse_cam_methods("auto", nets::Head::gap).size(), 2u);
  EXPECT_THROW(parse_cam_methods("gradcam++", nets::Head::gap), std::exception);
}

TEST(Localisation, UpsamplingIsBilinearWithHalfPixelCentres) {
  const float grid[4] = {0, 1, 2, 3};  // [[0, 1], [2, 3]]
  const Heatmap m = upsample_map(grid, 2, 2, 4, 4);
  // Source coordinates of 4 outputs from 2 inputs: -0.25, 0.25, 0.75, 1.25, clamped to [0, 1].
  const float axis[4] = {0, 0.25f, 0.75f, 1};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) EXPECT_NEAR(m.at(y, x), axis[x] + 2 * axis[y], 1e-6) << x << "," << y;
  const float flat[6] = {2, 2, 2, 2, 2, 2};
  for (float v : upsample_map(flat, 2, 3, 7, 5).values) EXPECT_FLOAT_EQ(v, 2.0f);
}

TEST(Localisation, PeakBoxIouAndTolerance) {
  Heatmap m;
  m.height = 12;
  m.width = 16;
  m.values.assign(12 * 16, 0.1f);
  m.values[2 * 16 + 3] = 1.0f;  // the peak: a lone pixel at (3, 2)
  for (int y = 6; y < 10; ++y)
    for (int x = 8; x < 14; ++x) m.values[static_cast<size_t>(y) * 16 + x] = 0.7f;  // the larger region
  const Localisation l = localise(m, 0.5);
  ASSERT_TRUE(l.valid);
  EXPECT_EQ(l.peak_x, 3);
  EXPECT_EQ(l.peak_y, 2);
  EXPECT_FLOAT_EQ(l.max, 1.0f);
  EXPECT_EQ(l.box.x0, 8);  // the largest component, not the peak's
  EXPECT_EQ(l.box.y0, 6);
  EXPECT_EQ(l.box.x1, 14);
  EXPECT_EQ(l.box.y1, 10);
  // At 0.75 only the peak is left.
  const Localisation high = localise(m, 0.75);
  EXPECT_EQ(high.box.area(), 1);
  // Diagonal neighbours are separate components (4-connectivity).
  Heatmap d;
  d.height = d.width = 3;
  d.values = {1, 0, 0, 0, 1, 0, 0, 0, 0};
  EXPECT_EQ(localise(d, 0.5).box.area(), 1);
  // A map without a positive value localises nothing.
  Heatmap zero;
  zero.height = zero.width = 4;
  zero.values.assign(16, 0.0f);
  const Localisation none = localise(zero, 0.5);
  EXPECT_FALSE(none.valid);
  EXPECT_TRUE(none.box.empty());
  EXPECT_THROW(localise(m, 0.0), std::exception);
  EXPECT_THROW(localise(m, 1.5), std::exception);

  EXPECT_NEAR(box_iou({0, 0, 10, 10}, {5, 5, 15, 15}), 25.0 / 175.0, 1e-12);
  EXPECT_EQ(box_iou({0, 0, 10, 10}, {10, 0, 20, 10}), 0.0);
  EXPECT_EQ(box_iou({2, 3, 7, 9}, {2, 3, 7, 9}), 1.0);
  EXPECT_EQ(box_iou({}, {}), 0.0);
  // Half a cell of a 5 x 5 grid on 100 x 100 pixels is 10 px: pixel x counts when x + 0.5 is in [0, 30].
  const Box t = half_cell_box({10, 10, 20, 20}, 5, 5, 100, 100);
  EXPECT_EQ(t.x0, 0);
  EXPECT_EQ(t.y0, 0);
  EXPECT_EQ(t.x1, 30);
  EXPECT_EQ(t.y1, 30);
  const Box clipped = grow_box({90, 40, 100, 50}, 4.0, 0.0, 100, 100);
  EXPECT_EQ(clipped.x0, 86);
  EXPECT_EQ(clipped.x1, 100);
  EXPECT_EQ(clipped.y0, 40);
  EXPECT_EQ(clipped.y1, 50);
}

TEST(Localisation, ChanceLevels) {
  // The left half of the image: a random peak hits half of the time.
  const std::vector<BoxedImage> half = {{80, 120, {0, 0, 60, 80}}, {100, 100, {0, 0, 50, 100}}};
  const ChanceLevels c = chance_levels(half, 4, 4, 0.5, 200, 9);
  EXPECT_DOUBLE_EQ(c.pointing_exact, 0.5);
  EXPECT_NEAR(c.pointing_random, 0.5, 0.07);
  EXPECT_GT(c.iou_random, 0.05);
  EXPECT_LT(c.iou_random, 0.6);
  EXPECT_GE(c.pointing_exact_tolerant, c.pointing_exact);
  // Reproducible with its seed.
  const ChanceLevels again = chance_levels(half, 4, 4, 0.5, 200, 9);
  EXPECT_EQ(again.pointing_random, c.pointing_random);
  EXPECT_EQ(again.iou_random, c.iou_random);
  // A small central box: the centre map hits it, a random peak rarely does.
  const std::vector<BoxedImage> centre = {{100, 100, {40, 40, 60, 60}}};
  const ChanceLevels k = chance_levels(centre, 7, 7, 0.5, 100, 1);
  EXPECT_DOUBLE_EQ(k.pointing_exact, 0.04);
  EXPECT_EQ(k.pointing_centre, 1.0);
  // The centre map's box at 0.5: pixels within 0.5 / sqrt(2) of the centre (normalised): about 70 x 70.
  EXPECT_NEAR(k.iou_centre, 400.0 / (71 * 71), 0.01);
  EXPECT_LT(k.pointing_random, 0.25);
  EXPECT_TRUE(std::isnan(chance_levels({}, 4, 4, 0.5, 10, 0).pointing_exact));
}

TEST(Pictures, ColourMapBase64AndBlend) {
  uint8_t c[3];
  colour_of(0.0f, c);
  EXPECT_EQ(c[0], 0);
  EXPECT_EQ(c[1], 0);
  EXPECT_EQ(c[2], 128);
  colour_of(1.0f, c);
  EXPECT_EQ(c[0], 128);
  EXPECT_EQ(c[1], 0);
  EXPECT_EQ(c[2], 0);
  colour_of(0.5f, c);
  EXPECT_EQ(c[1], 255);
  colour_of(2.0f, c);  // clamped
  EXPECT_EQ(c[0], 128);
  auto b64 = [](const std::string& s) { return base64(std::vector<uint8_t>(s.begin(), s.end())); };
  EXPECT_EQ(b64("Man"), "TWFu");
  EXPECT_EQ(b64("Ma"), "TWE=");
  EXPECT_EQ(b64("M"), "TQ==");
  EXPECT_EQ(b64(""), "");
  // A hot corner over a mid-grey image: red there, blue far away; the PNG decodes to the same pixels.
  const float grid[4] = {1, 0, 0, 0};
  const Heatmap m = upsample_map(grid, 2, 2, 40, 60);
  const Localisation where = localise(m, 0.5);
  const Rgb8 im = blend_heatmap(std::vector<float>(40 * 60, 128.0f), m, where, {});
  const uint8_t* far = im.pixels.data() + (39 * 60 + 59) * 3;
  EXPECT_GT(far[2], far[0]);  // blue
  const uint8_t* hot = im.pixels.data() + (2 * 60 + 25) * 3;  // inside the map's region, off its box outline
  EXPECT_GT(hot[0], hot[2]);
  const std::vector<uint8_t> png = encode_png_rgb(im);
  const data::Image back = data::decode_image(png.data(), png.size(), "blend.png");
  ASSERT_EQ(back.height, 40);
  ASSERT_EQ(back.width, 60);
  ASSERT_EQ(back.channels, 3);
  for (size_t i = 0; i < im.pixels.size(); ++i) ASSERT_EQ(back.pixels[i], im.pixels[i]) << i;
}

// ---- The batch on a small synthetic set -------------------------------------------------------------

// One small synthetic set per test process (8 train patients, about 40 images, generated in about a
// second), removed when the process ends.
const std::string& synthetic_root() {
  static const std::string root = resolve_data_root("", temp_dir("synth"), 8);
  return root;
}
class RemoveSynthetic : public ::testing::Environment {
 public:
  void TearDown() override { fs::remove_all(temp_dir("synth")); }
};
const auto* const remove_synthetic = ::testing::AddGlobalTestEnvironment(new RemoveSynthetic);

// A checkpoint of a freshly initialised densenet_tiny, as the trainer writes them.
std::string write_checkpoint(const std::string& dir, const std::string& head, int64_t size) {
  fs::create_directories(dir);
  auto net = build_net("densenet_tiny", nets::parse_head(head), nets::Flavor::torch, size, 17);
  engine::NamedTensors tensors;
  for (const auto& [name, t] : net->state()) tensors.push_back({"model." + name, t});
  const std::string path = dir + "/" + head + ".safetensors";
  engine::save_tensors(path, tensors,
                       {{"format", "mura-engine-checkpoint-v1"}, {"arch", "densenet_tiny"}, {"head", head},
                        {"flavor", "torch"}, {"input_size", std::to_string(size)}, {"preprocess", "study"},
                        {"resize", "bilinear"}, {"epoch", "0"}});
  return path;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

TEST(CamBatch, MapsAGalleryAndScoresOnTheSyntheticSet) {
  const std::string work = temp_dir("batch");
  const std::string checkpoint = write_checkpoint(work, "gap", 64);
  CamInputs in;
  in.data_root = synthetic_root();
  in.subset = "all";
  CamOptions o;
  o.method = "both";
  o.top = 5;
  o.quiet = true;
  o.random_draws = 5;
  const std::string out = work + "/out";
  const CamSummary s = run_cam_batch(checkpoint, in, out, o);
  ASSERT_GT(s.images, 10);
  ASSERT_GT(s.boxed, 0);
  ASSERT_EQ(s.methods.size(), 2u);
  EXPECT_EQ(s.grid_h, 2);
  EXPECT_EQ(s.methods[0].boxed, s.boxed);
  EXPECT_GT(s.chance.pointing_exact, 0.0);
  EXPECT_LT(s.chance.pointing_exact, 0.2);
  // For a gap head CAM = h w x Grad-CAM before its ReLU, so both localise identically, image by image.
  for (const CamImage& im : s.per_image) {
    ASSERT_EQ(im.results.size(), 2u);
    EXPECT_EQ(im.results[0].where.valid, im.results[1].where.valid) << im.path;
    EXPECT_EQ(im.results[0].where.peak_x, im.results[1].where.peak_x) << im.path;
    EXPECT_EQ(im.results[0].where.peak_y, im.results[1].where.peak_y) << im.path;
    EXPECT_EQ(im.results[0].where.box.x0, im.results[1].where.box.x0) << im.path;
    EXPECT_EQ(im.results[0].where.box.y1, im.results[1].where.box.y1) << im.path;
    if (im.has_box) {
      EXPECT_EQ(im.results[0].hit, im.results[1].hit) << im.path;
    }
  }
  EXPECT_EQ(s.methods[0].hits, s.methods[1].hits);
  // The files: a CSV row per image, the pictures and maps of the gallery's images, the tables.
  const std::string csv = data::read_file_text(out + "/cam.csv");
  EXPECT_EQ(count(csv, "\n"), s.images + 1);
  int pngs = 0, maps = 0;
  for (const auto& f : fs::directory_iterator(out + "/images")) {
    pngs += f.path().extension() == ".png";
    maps += f.path().extension() == ".safetensors";
  }
  EXPECT_EQ(pngs, 10);
  EXPECT_EQ(maps, 5);
  const auto feature_maps = engine::load_tensors(out + "/feature_maps.safetensors");
  EXPECT_EQ(feature_maps.at("gradcam").shape(), (engine::Shape{s.images, 2, 2}));
  EXPECT_NE(data::read_file_text(out + "/report.md").find("pointing game"), std::string::npos);
  EXPECT_NE(data::read_file_text(out + "/summary.json").find("\"pointing_game_exact\""), std::string::npos);
  ASSERT_EQ(s.gallery_path, out + "/gallery.html");

  // The gallery in a real browser: one entry per top image with its probability and data: PNGs.
  const test_support::BrowserPage page = test_support::render_in_browser(s.gallery_path, work + "/browser");
  if (!page.available) GTEST_SKIP() << page.skip_reason;
  EXPECT_EQ(count(page.dom, "<figure class=\"entry\""), 5);
  EXPECT_EQ(count(page.dom, "src=\"data:image/png;base64,"), 10);
  std::vector<double> top;
  for (const CamImage& im : s.per_image) top.push_back(im.probability);
  std::sort(top.rbegin(), top.rend());
  const std::regex probability("p\\(abnormal\\) = ([0-9.]+)");
  std::vector<double> shown;
  for (std::sregex_iterator it(page.dom.begin(), page.dom.end(), probability), end; it != end; ++it)
    shown.push_back(std::stod((*it)[1].str()));
  ASSERT_EQ(shown.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(shown[i], top[i], 1e-4) << i;
  // The screenshot is a picture, not a blank page: many colours, visible contrast.
  const data::Image shot = data::decode_image_file(page.screenshot_png);
  ASSERT_GT(shot.height, 100);
  double mean = 0, var = 0;
  for (float v : shot.pixels) mean += v;
  mean /= static_cast<double>(shot.pixels.size());
  for (float v : shot.pixels) var += (v - mean) * (v - mean);
  var /= static_cast<double>(shot.pixels.size());
  EXPECT_GT(std::sqrt(var), 10.0);
  std::set<uint32_t> colours;
  for (size_t i = 0; i + 2 < shot.pixels.size() && shot.channels == 3; i += 3)
    colours.insert((uint32_t(shot.pixels[i]) << 16) | (uint32_t(shot.pixels[i + 1]) << 8) | uint32_t(shot.pixels[i + 2]));
  EXPECT_GT(colours.size(), 200u);
  fs::remove_all(work);
}

TEST(CamBatch, ExplicitImagesFindTheirBoxesAndAreAllWritten) {
  const std::string work = temp_dir("explicit");
  const std::string checkpoint = write_checkpoint(work, "flatten", 64);
  // A study folder of abnormal images from the synthetic tree.
  const auto boxes = data::read_defect_boxes(synthetic_root());
  ASSERT_FALSE(boxes.empty());
  const std::string study = synthetic_root() + "/" + fs::path(boxes.begin()->first).parent_path().string();
  CamInputs in;
  in.images = {study};
  CamOptions o;
  o.quiet = true;
  o.top = 2;
  const CamSummary s = run_cam_batch(checkpoint, in, work + "/out", o);
  ASSERT_EQ(s.methods.size(), 1u);  // auto on a flatten head: Grad-CAM
  EXPECT_EQ(s.methods[0].method, "gradcam");
  EXPECT_GT(s.boxed, 0);
  for (const CamImage& im : s.per_image) {
    EXPECT_EQ(im.label, 1) << im.path;
    EXPECT_FALSE(im.files.empty()) << im.path;
    EXPECT_TRUE(fs::is_regular_file(work + "/out/images/" + im.files + ".gradcam.png")) << im.files;
    const auto maps = engine::load_tensors(work + "/out/images/" + im.files + ".safetensors");
    EXPECT_EQ(maps.at("gradcam.image").shape(), (engine::Shape{im.height, im.width}));
    EXPECT_EQ(maps.at("gradcam.feature").shape(), (engine::Shape{2, 2}));
  }
  fs::remove_all(work);
}

// A checkpoint whose weights went NaN: every logit is NaN. cam once scored such maps as misses and printed
// "n/a" with exit 0; it now stops naming the images, before any report is written.
TEST(CamBatch, NonFiniteWeightsAreAnErrorNamingTheImages) {
  const std::string work = temp_dir("nan");
  fs::create_directories(work);
  auto net = build_net("densenet_tiny", nets::Head::gap, nets::Flavor::torch, 64, 17);
  engine::NamedTensors tensors;
  for (const auto& [name, t] : net->state()) {
    engine::Tensor copy = t.clone();
    if (name.find("weight") != std::string::npos) copy.fill_(NAN);
    tensors.push_back({"model." + name, copy});
  }
  const std::string checkpoint = work + "/nan.safetensors";
  engine::save_tensors(checkpoint, tensors,
                       {{"format", "mura-engine-checkpoint-v1"}, {"arch", "densenet_tiny"}, {"head", "gap"},
                        {"flavor", "torch"}, {"input_size", "64"}, {"preprocess", "study"},
                        {"resize", "bilinear"}, {"epoch", "0"}});
  const auto boxes = data::read_defect_boxes(synthetic_root());
  ASSERT_FALSE(boxes.empty());
  CamInputs in;
  in.images = {synthetic_root() + "/" + boxes.begin()->first};
  CamOptions o;
  o.quiet = true;
  try {
    run_cam_batch(checkpoint, in, work + "/out", o);
    ADD_FAILURE() << "a NaN checkpoint was scored";
  } catch (const engine::UserError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("non-finite score (NaN)"), std::string::npos) << message;
    EXPECT_NE(message.find(boxes.begin()->first), std::string::npos) << message;
  }
  EXPECT_FALSE(fs::exists(work + "/out/summary.json"));
  fs::remove_all(work);
}

TEST(CamBatch, BadInputsFailClearlyAndWriteNothing) {
  const std::string work = temp_dir("bad");
  const std::string gap = write_checkpoint(work, "gap", 64), flatten = write_checkpoint(work, "flatten", 64);
  std::ofstream(work + "/junk.png") << "this is not a PNG file";
  std::ofstream(work + "/empty.csv") << "path,label,patient,study,body_part\n";
  const std::string image = synthetic_root() + "/" + data::read_defect_boxes(synthetic_root()).begin()->first;
  struct Case {
    std::string name, checkpoint, method;
    CamInputs inputs;
    std::string expect;
  };
  CamInputs junk, empty_list, good, nothing;
  junk.images = {work + "/junk.png"};
  empty_list.split = work + "/empty.csv";
  empty_list.data_root = synthetic_root();
  good.images = {image};
  const std::vector<Case> cases = {
      {"missing checkpoint", work + "/missing.safetensors", "auto", good, "does not exist"},
      {"undecodable image", gap, "auto", junk, "junk.png"},
      {"CAM on a flatten head", flatten, "cam", good, "--method gradcam"},
      {"unknown method", gap, "scorecam", good, "unknown --method"},
      {"empty split list", gap, "auto", empty_list, "lists no images"},
      {"no inputs", gap, "auto", nothing, "nothing to map"},
  };
  for (const Case& c : cases) {
    const std::string out = work + "/out";
    CamOptions o;
    o.method = c.method;
    o.quiet = true;
    try {
      run_cam_batch(c.checkpoint, c.inputs, out, o);
      ADD_FAILURE() << c.name << ": no error";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << c.name << ": " << e.what();
    }
    EXPECT_FALSE(fs::exists(out)) << c.name << " left " << out << " behind";
  }
  fs::remove_all(work);
}

}  // namespace
