// The one rule for image paths read from files (split lists, the MURA CSVs, defect_boxes.csv): such a
// path is joined to a data root and opened, so it must name a file under that root and nothing else.
//
// A relative image path is accepted when it
//   - is non-empty and at most kMaxImagePathLength bytes;
//   - is relative: no leading '/', no "X:" drive prefix;
//   - has no component that is empty ("a//b", a trailing '/'), "." or "..";
//   - contains no NUL, no backslash (a second separator on some systems) and no control character;
//   - ends in a known image extension: .png, .jpg or .jpeg (any case).
// Readers call check_relative_image_path and name the file and line in `where`; code that only wants
// to know uses relative_image_path_problem.
#pragma once
#include <cstddef>
#include <string>

namespace data {

constexpr size_t kMaxImagePathLength = 4096;

// True when `name` ends in .png, .jpg or .jpeg (any case).
bool has_image_extension(const std::string& name);
// "" when `path` follows the rule above; otherwise what is wrong, in a few words.
std::string relative_image_path_problem(const std::string& path);
// Throws engine::Error "<where>: image path '<path>' <problem> (paths must be relative to the data root,
// without '..', ending in .png/.jpg/.jpeg)" when the rule is broken. The path is printed escaped.
void check_relative_image_path(const std::string& path, const std::string& where);

}  // namespace data
