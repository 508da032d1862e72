// Rendering a page in a real headless browser (Debian's chromium), for the tests of the HTML reports
// (results.html, the CAM gallery): the DOM after load (--dump-dom) and a screenshot, both at the same window size.
//
// The browser is found as $ENGINE_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH.
// Each call uses its own profile folder inside work_dir, so tests may render in parallel.
#pragma once
#include <string>

namespace test_support {

struct BrowserPage {
  bool available = false;   // false: no browser (skip_reason says what to install)
  std::string skip_reason;
  std::string dom;             // the serialised DOM after the page loaded
  std::string screenshot_png;  // path of the screenshot (work_dir/screenshot.png)
};

// Renders `html_path` (a local file) at width x height pixels. Throws std::runtime_error when a browser
// is present but fails (its stderr is in the message).
BrowserPage render_in_browser(const std::string& html_path, const std::string& work_dir, int width = 1200,
                              int height = 900);

}  // namespace test_support
