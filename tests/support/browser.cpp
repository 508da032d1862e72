// Headless chromium for the report tests (see browser.h).
#include "support/browser.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace test_support {
namespace {

namespace fs = std::filesystem;

std::string find_browser() {
  if (const char* env = std::getenv("ENGINE_CHROMIUM"); env && *env) return env;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
      const fs::path candidate = fs::path(dir) / name;
      std::error_code ec;
      if (fs::is_regular_file(candidate, ec)) return candidate.string();
    }
  return "";
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs the browser with `mode_args` on the page; stdout to `out`, stderr to `err`. Throws on failure.
void run_browser(const std::string& browser, const fs::path& profile, const std::string& mode_args,
                 const std::string& url, const fs::path& out, const fs::path& err) {
  // --no-sandbox: tests may run as root; --disable-gpu: no display. The timeout keeps a hung browser
  // from hanging the test suite.
  const std::string command = "timeout 120 " + shell_quote(browser) +
                              " --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars"
                              " --user-data-dir=" + shell_quote(profile.string()) + " " + mode_args + " " +
                              shell_quote(url) + " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string());
  const int rc = std::system(command.c_str());
  if (rc != 0)
    throw std::runtime_error("browser failed (status " + std::to_string(rc) + "): " + command + "\n" +
                             read_text(err));
}

}  // namespace

BrowserPage render_in_browser(const std::string& html_path, const std::string& work_dir, int width, int height) {
  BrowserPage page;
  const std::string browser = find_browser();
  if (browser.empty()) {
    page.skip_reason = "no headless browser: apt-get install chromium (or set ENGINE_CHROMIUM)";
    return page;
  }
  page.available = true;
  const fs::path dir = fs::absolute(work_dir);
  fs::create_directories(dir);
  const std::string url = "file://" + fs::absolute(html_path).string();
  const std::string window = "--window-size=" + std::to_string(width) + "," + std::to_string(height);
  run_browser(browser, dir / "profile", window + " --dump-dom", url, dir / "dom.html", dir / "dump-dom.log");
  page.dom = read_text(dir / "dom.html");
  page.screenshot_png = (dir / "screenshot.png").string();
  run_browser(browser, dir / "profile",
              window + " --screenshot=" + shell_quote(page.screenshot_png),
              url, dir / "screenshot.log", dir / "screenshot.err");
  if (!fs::exists(page.screenshot_png))
    throw std::runtime_error("the browser wrote no screenshot: " + read_text(dir / "screenshot.err"));
  return page;
}

}  // namespace test_support
