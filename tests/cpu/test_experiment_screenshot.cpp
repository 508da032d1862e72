// Every page the apps write, rendered by a real headless browser (tests/support/browser.h) from a tiny
// run: the comparison's results.html, the Grad-CAM gallery of its run and the run's curves.svg. For each
// page: the screenshot is not blank, the page is no wider than the window (no sideways scrolling), and
// every image it references loaded.
//
// The page is checked through a copy beside it (same folder, so relative references resolve) with a
// probe script added: on load it writes the count of <img> elements, of those that failed (not complete
// or no natural width) and the document's scroll width against the window's into an attribute of
// <body>, which the browser's --dump-dom shows. Skipped, with the reason, where no browser is installed
// (CI installs chromium: scripts/lib/deps.sh).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <string>

#include "data/image.h"
#include "data/io_util.h"
#include "experiment/cam.h"
#include "experiment/compare.h"
#include "experiment/metrics.h"
#include "support/browser.h"
#include "support/temp_path.h"

namespace {

namespace fs = std::filesystem;
using namespace experiment;

constexpr int kWindowWidth = 1280, kWindowHeight = 1000;

// The tiny run: a comparison of one net on 60 synthetic images for two epochs, with Grad-CAM over its
// test split (as apps/compare.cpp localises), built once for all the tests here.
struct Pages {
  std::string folder, results_html, gallery_html, curves_svg;
};
const Pages& pages() {
  static const Pages p = [] {
    Pages x;
    x.folder = test_support::fresh_temp_path("experiment_screenshot", "compare");
    CompareOptions o;
    o.base.head = "gap";
    o.base.input_size = 48;
    o.base.lr = 1e-3;
    o.base.epochs = 2;
    o.base.batch_size = 16;
    o.base.synthetic_dir = x.folder + "_synth";
    o.base.flavor = "torch";
    o.base.quiet = true;
    o.out = x.folder;
    o.sizes = {60};
    o.archs = {"densenet_tiny"};
    o.localise = [](const std::string& run_dir, const TrainResult&) {
      CamInputs inputs;
      inputs.split = run_dir + "/split";
      CamOptions options;
      options.method = "gradcam";
      options.quiet = true;
      options.top = 6;
      options.random_draws = 2;
      const std::string checkpoint =
          run_dir + "/checkpoints/" +
          json_string_field(data::read_file_text(run_dir + "/args.json"), "test_checkpoint") + ".safetensors";
      run_cam_batch(checkpoint, inputs, run_dir + "/cam", options);
      RunLocalisation l;
      l.gallery = "cam/gallery.html";
      return l;
    };
    run_comparison(o);
    x.results_html = x.folder + "/results.html";
    x.gallery_html = x.folder + "/runs/seed/densenet_tiny-n60/cam/gallery.html";
    x.curves_svg = x.folder + "/runs/seed/densenet_tiny-n60/curves.svg";
    return x;
  }();
  return p;
}

class RemovePages : public ::testing::Environment {
 public:
  void TearDown() override {
    if (std::getenv("ENGINE_KEEP_SCREENSHOTS")) return;  // to look at them
    fs::remove_all(test_support::fresh_temp_path("experiment_screenshot", "compare"));
    fs::remove_all(test_support::fresh_temp_path("experiment_screenshot", "compare") + "_synth");
  }
};
const auto* const remove_pages = ::testing::AddGlobalTestEnvironment(new RemovePages);

const char* kProbe = R"(<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((i) => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute("data-probe", "images=" + images.length + " broken=" + broken + " scroll=" +
      document.documentElement.scrollWidth + " window=" + window.innerWidth);
});
</script>
)";

struct Probe {
  bool available = false;
  std::string skip_reason, dom, screenshot;
  int images = -1, broken = -1, scroll_width = -1, window_width = -1;
};

// `html` (the page's text, standing in the page's folder) with the probe, rendered.
Probe render_probed(const std::string& folder, const std::string& html, const std::string& name) {
  const std::string probed = folder + "/" + name + ".probe.html";
  std::string text = html;
  const size_t end = text.rfind("</body>");
  text.insert(end == std::string::npos ? text.size() : end, kProbe);
  data::write_file_atomic(probed, text);
  const test_support::BrowserPage page =
      test_support::render_in_browser(probed, folder + "/" + name + ".browser", kWindowWidth, kWindowHeight);
  fs::remove(probed);
  Probe p;
  p.available = page.available;
  p.skip_reason = page.skip_reason;
  if (!page.available) return p;
  p.dom = page.dom;
  p.screenshot = page.screenshot_png;
  std::smatch m;
  if (std::regex_search(p.dom, m, std::regex("data-probe=\"images=(\\d+) broken=(\\d+) scroll=(\\d+) window=(\\d+)\""))) {
    p.images = std::stoi(m[1]);
    p.broken = std::stoi(m[2]);
    p.scroll_width = std::stoi(m[3]);
    p.window_width = std::stoi(m[4]);
  }
  return p;
}

// The fraction of a screenshot's pixels that differ from its most common colour (0 = a blank page), and
// the number of distinct colours.
void ink(const std::string& png, double& fraction, size_t& colours) {
  const data::Image im = data::decode_image_file(png);
  std::map<uint32_t, int64_t> counts;
  const size_t pixels = static_cast<size_t>(im.width) * static_cast<size_t>(im.height);
  for (size_t i = 0; i < pixels; ++i) {
    uint32_t key = 0;
    for (int c = 0; c < std::min(im.channels, 3); ++c)
      key = key << 8 | static_cast<uint32_t>(im.pixels[i * static_cast<size_t>(im.channels) + static_cast<size_t>(c)]);
    ++counts[key];
  }
  int64_t most = 0;
  for (const auto& [v, n] : counts) most = std::max(most, n);
  fraction = 1.0 - static_cast<double>(most) / static_cast<double>(pixels);
  colours = counts.size();
}

void expect_a_good_page(const Probe& p, const std::string& what, double min_ink, size_t min_colours,
                        int min_images) {
  ASSERT_GE(p.images, 0) << what << ": the probe did not run (no data-probe on <body>)";
  EXPECT_GE(p.images, min_images) << what;
  EXPECT_EQ(p.broken, 0) << what << ": " << p.broken << " of " << p.images << " images did not load";
  EXPECT_LE(p.scroll_width, p.window_width) << what << " is wider than the window: it scrolls sideways";
  EXPECT_EQ(p.window_width, kWindowWidth) << what;
  double fraction = 0;
  size_t colours = 0;
  ink(p.screenshot, fraction, colours);
  EXPECT_GT(fraction, min_ink) << what << ": the screenshot is (nearly) blank: " << p.screenshot;
  EXPECT_GT(colours, min_colours) << what << ": too few colours in " << p.screenshot;
}

TEST(Screenshot, ResultsPage) {
  const Pages& x = pages();
  const Probe p = render_probed(x.folder, data::read_file_text(x.results_html), "results");
  if (!p.available) GTEST_SKIP() << p.skip_reason;
  expect_a_good_page(p, "results.html", 0.02, 50, 0);
  EXPECT_NE(p.dom.find("class=\"legend\""), std::string::npos) << "the figures have their legends";
}

TEST(Screenshot, GradCamGallery) {
  const Pages& x = pages();
  const std::string folder = fs::path(x.gallery_html).parent_path().string();
  const Probe p = render_probed(folder, data::read_file_text(x.gallery_html), "gallery");
  if (!p.available) GTEST_SKIP() << p.skip_reason;
  expect_a_good_page(p, "gallery.html", 0.05, 200, 6);
  EXPECT_NE(p.dom.find("class=\"colour-bar\""), std::string::npos) << "the colour map's key";
  EXPECT_NE(p.dom.find("<h1>Where densenet_tiny looks"), std::string::npos) << "a title that says what it shows";
}

TEST(Screenshot, TrainingCurves) {
  // curves.svg as a browser shows it: an <img> of it in a page beside it.
  const Pages& x = pages();
  const std::string folder = fs::path(x.curves_svg).parent_path().string();
  const Probe p = render_probed(
      folder, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body style=\"margin:0;background:#ccc\">"
              "<img src=\"curves.svg\" alt=\"training curves\"></body></html>\n",
      "curves");
  if (!p.available) GTEST_SKIP() << p.skip_reason;
  expect_a_good_page(p, "curves.svg", 0.15, 30, 1);  // the chart, white on the grey page
}

}  // namespace
