// The relative image path rule (see paths.h).
#include "data/paths.h"

#include <cstdio>

#include "engine/check.h"

namespace data {
namespace {

bool ends_with_lower(const std::string& s, const char* suffix) {
  const std::string tail(suffix);
  if (s.size() < tail.size()) return false;
  for (size_t i = 0; i < tail.size(); ++i) {
    char c = s[s.size() - tail.size() + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != tail[i]) return false;
  }
  return true;
}

// The path with control characters and non-ASCII bytes as \xNN, cut to 200 bytes: safe to print.
std::string printable(const std::string& path) {
  std::string out;
  for (size_t i = 0; i < path.size() && out.size() < 200; ++i) {
    const unsigned char c = static_cast<unsigned char>(path[i]);
    if (c < 0x20 || c >= 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", c);
      out += buffer;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (out.size() >= 200) out += "...";
  return out;
}

}  // namespace

bool has_image_extension(const std::string& name) {
  return ends_with_lower(name, ".png") || ends_with_lower(name, ".jpg") || ends_with_lower(name, ".jpeg");
}

std::string relative_image_path_problem(const std::string& path) {
  if (path.empty()) return "is empty";
  if (path.size() > kMaxImagePathLength)
    return "is longer than " + std::to_string(kMaxImagePathLength) + " bytes";
  for (const char ch : path) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == 0) return "contains a NUL byte";
    if (c == '\\') return "contains a backslash";
    if (c < 0x20 || c == 0x7f) return "contains a control character";
  }
  if (path[0] == '/') return "is absolute";
  if (path.size() >= 2 && path[1] == ':') return "starts with a drive letter";
  size_t begin = 0;
  while (true) {
    const size_t slash = path.find('/', begin);
    const size_t end = slash == std::string::npos ? path.size() : slash;
    const std::string component = path.substr(begin, end - begin);
    if (component.empty()) return "has an empty component";
    if (component == "." || component == "..") return "has a '" + component + "' component";
    if (slash == std::string::npos) break;
    begin = slash + 1;
  }
  if (!has_image_extension(path)) return "does not end in .png, .jpg or .jpeg";
  return "";
}

void check_relative_image_path(const std::string& path, const std::string& where) {
  const std::string problem = relative_image_path_problem(path);
  if (problem.empty()) return;
  throw engine::Error(where + ": image path '" + printable(path) + "' " + problem +
                      " (paths must be relative to the data root, without '..', ending in .png/.jpg/.jpeg)");
}

}  // namespace data
