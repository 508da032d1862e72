// The apps' flag parser: FlagParser over CLI11 (see flags.h).
#include "experiment/flags.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "engine/check.h"

namespace experiment {

namespace {
std::string format_double(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}
}  // namespace

namespace {
// A user's mistake: a plain message, no source location.
[[noreturn]] void bad_value(const std::string& message) { throw engine::UserError(message + " (see --help)"); }

// An optional sign, then one or more decimal digits, and nothing else.
bool is_decimal_integer(const std::string& v) {
  size_t i = (!v.empty() && (v[0] == '-' || v[0] == '+')) ? 1 : 0;
  if (i == v.size()) return false;
  for (; i < v.size(); ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  return true;
}
}  // namespace

int64_t parse_int(const std::string& flag, const std::string& value, int64_t min, int64_t max) {
  if (!is_decimal_integer(value)) bad_value(flag + ": '" + value + "' is not an integer");
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (errno == ERANGE || v < min || v > max) {
    if (min == INT64_MIN && max == INT64_MAX) bad_value(flag + ": '" + value + "' is out of range");
    bad_value(flag + " must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + value);
  }
  return v;
}

uint64_t parse_uint64(const std::string& flag, const std::string& value) {
  if (!is_decimal_integer(value) || value[0] == '-')
    bad_value(flag + ": '" + value + "' is not a non-negative integer");
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
  if (errno == ERANGE) bad_value(flag + ": '" + value + "' is out of range (at most 18446744073709551615)");
  return v;
}

double parse_double(const std::string& flag, const std::string& value, double min, double max) {
  // Decimal digits, sign, point and exponent only: no "nan", "inf", hexadecimal or leading space.
  bool digits = false;
  for (char c : value) {
    digits = digits || (c >= '0' && c <= '9');
    if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E'))
      bad_value(flag + ": '" + value + "' is not a finite number");
  }
  errno = 0;
  char* end = nullptr;
  const double v = digits ? std::strtod(value.c_str(), &end) : 0.0;
  if (!digits || end == nullptr || *end != '\0') bad_value(flag + ": '" + value + "' is not a number");
  if (!std::isfinite(v)) bad_value(flag + ": '" + value + "' is not a finite number");
  if (v < min || v > max) {
    if (min == -DBL_MAX && max == DBL_MAX) bad_value(flag + ": '" + value + "' is out of range");
    bad_value(flag + " must be between " + format_double(min) + " and " + format_double(max) + ", got " + value);
  }
  return v;
}

bool parse_bool(const std::string& flag, const std::string& value) {
  if (value == "true" || value == "1" || value == "yes" || value == "on") return true;
  if (value == "false" || value == "0" || value == "no" || value == "off") return false;
  ENGINE_USER_FAIL() << flag << " expects true or false, got '" << value << "'";
}

namespace {

// --help's layout: each flag's value name without CLI11's "=default", the default after the description
// ("[default: 10]"), descriptions wrapped under their column.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() { column_width(kColumn); }
  // usage, description, positional arguments, flags, epilog.
  std::string make_help(const CLI::App* app, std::string name, CLI::AppFormatMode) const override {
    std::string text = make_usage(app, name) + "\n" + app->get_description() + "\n" + make_positionals(app) +
                       make_groups(app, CLI::AppFormatMode::Normal);
    if (!app->get_footer().empty()) text += app->get_footer() + "\n";  // the flags end with a blank line
    return text;
  }
  std::string make_option_opts(const CLI::Option* opt) const override {
    return opt->get_type_size() != 0 && !opt->get_type_name().empty() ? " " + opt->get_type_name() : "";
  }
  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string text = opt->get_description();
    if (!opt->get_default_str().empty()) text += " [default: " + opt->get_default_str() + "]";
    return wrap(text, kWidth - kColumn);
  }

 private:
  static constexpr size_t kColumn = 30, kWidth = 110;
  static std::string wrap(const std::string& text, size_t width) {
    std::string out, line;
    std::istringstream words(text);
    for (std::string word; words >> word;) {
      if (!line.empty() && line.size() + 1 + word.size() > width) {
        out += line + "\n";
        line.clear();
      }
      line += (line.empty() ? "" : " ") + word;
    }
    return out + line;
  }
};

// Edit distance (insert, delete, substitute one character) for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// "-e,--epochs" -> "--epochs" (the long form; the short one when there is no long one).
std::string long_name(const std::string& names) {
  std::string result;
  std::stringstream in(names);
  for (std::string n; std::getline(in, n, ',');)
    if (result.empty() || n.rfind("--", 0) == 0) result = n;
  return result;
}

constexpr const char* kCheckArgs = "--check-args";

}  // namespace

FlagParser::FlagParser(std::string program, std::string description)
    : app_(std::make_unique<CLI::App>(std::move(description), program)), program_(std::move(program)) {
  app_->formatter(std::make_shared<HelpFormatter>());
  app_->set_help_flag("-h,--help", "this text");
  app_->allow_extras(true);  // unknown flags and stray arguments: reported by parse() in our words
  app_->add_flag(kCheckArgs, check_args_)
      ->description("parse and check the command line, then exit without running")
      ->group("");  // hidden: for scripts and the test of the documented usages
}

FlagParser::~FlagParser() = default;

void FlagParser::add_flag(const std::string& names, Flag flag) {
  flag.name = long_name(names);
  if (left_out_.count(flag.name)) return;
  CLI::Option* opt = flag.is_switch ? app_->add_flag(names) : app_->add_option(names);
  opt->description(flag.help);
  opt->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);  // every occurrence reaches our parsers
  if (!flag.is_switch) {
    opt->type_name(flag.value_name);
    opt->default_str(flag.default_text);
    std::stringstream in(names);
    for (std::string n; std::getline(in, n, ',');) value_flags_[n] = flags_.size();
  }
  flag.option = opt;
  flags_.push_back(std::move(flag));
}

void FlagParser::add(const std::string& name, std::string* target, const std::string& help, const std::string& value_name) {
  add_flag(name, {"", value_name, help, *target, false, [target](const std::string& v) { *target = v; }});
}
void FlagParser::add(const std::string& name, int64_t* target, const std::string& help, const std::string& value_name) {
  add(name, target, help, INT64_MIN, INT64_MAX, value_name);
}
void FlagParser::add(const std::string& name, int64_t* target, const std::string& help, int64_t min, int64_t max,
                     const std::string& value_name) {
  const bool full = min == INT64_MIN && max == INT64_MAX;
  const std::string flag = long_name(name);
  add_flag(name, {"", value_name, full ? help : help + " (" + std::to_string(min) + ".." + std::to_string(max) + ")",
                  std::to_string(*target), false,
                  [target, flag, min, max](const std::string& v) { *target = parse_int(flag, v, min, max); }});
}
void FlagParser::add(const std::string& name, uint64_t* target, const std::string& help, const std::string& value_name) {
  const std::string flag = long_name(name);
  add_flag(name, {"", value_name, help, std::to_string(*target), false,
                  [target, flag](const std::string& v) { *target = parse_uint64(flag, v); }});
}
void FlagParser::add(const std::string& name, int* target, const std::string& help, const std::string& value_name) {
  add(name, target, help, INT_MIN, INT_MAX, value_name);
}
void FlagParser::add(const std::string& name, int* target, const std::string& help, int64_t min, int64_t max,
                     const std::string& value_name) {
  ENGINE_CHECK(min >= INT_MIN && max <= INT_MAX && min <= max) << name << ": bad range " << min << ".." << max;
  const bool full = min == INT_MIN && max == INT_MAX;
  const std::string flag = long_name(name);
  add_flag(name, {"", value_name, full ? help : help + " (" + std::to_string(min) + ".." + std::to_string(max) + ")",
                  std::to_string(*target), false, [target, flag, min, max](const std::string& v) {
                    *target = static_cast<int>(parse_int(flag, v, min, max));
                  }});
}
void FlagParser::add(const std::string& name, double* target, const std::string& help, const std::string& value_name) {
  add(name, target, help, -DBL_MAX, DBL_MAX, value_name);
}
void FlagParser::add(const std::string& name, double* target, const std::string& help, double min, double max,
                     const std::string& value_name) {
  const bool full = min == -DBL_MAX && max == DBL_MAX;
  const std::string flag = long_name(name);
  add_flag(name, {"", value_name, full ? help : help + " (" + format_double(min) + ".." + format_double(max) + ")",
                  format_double(*target), false,
                  [target, flag, min, max](const std::string& v) { *target = parse_double(flag, v, min, max); }});
}
void FlagParser::add_switch(const std::string& name, bool* target, const std::string& help) {
  const std::string flag = long_name(name);
  add_flag(name, {"", "", *target ? help + " [default: on]" : help, "", true,
                  [target, flag](const std::string& v) { *target = parse_bool(flag, v); }});
}
void FlagParser::add_list(const std::string& name, std::vector<std::string>* target, const std::string& help,
                          const std::string& value_name) {
  add_flag(name, {"", value_name, help, "", false, [target](const std::string& v) {
                    std::stringstream in(v);
                    for (std::string item; std::getline(in, item, ',');)
                      if (!item.empty()) target->push_back(item);
                  }});
}
void FlagParser::allow_positional(const std::string& name, const std::string& help) {
  if (left_out_.count(name)) return;
  positional_name_ = name;
  positional_option_ = app_->add_option(name)->description(help)->expected(-1);  // any number
  positional_option_->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  positional_option_->type_name("");
}
void FlagParser::set_epilog(const std::string& text) { app_->footer(text); }

std::string FlagParser::unknown_flag_message(const std::string& arg) const {
  const std::string name = arg.substr(0, arg.find('='));
  if (auto it = left_out_.find(name); it != left_out_.end() && !it->second.empty())
    return program_ + ": " + name + " is not taken here: " + it->second + " (see " + program_ + " --help)";
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const Flag& f : flags_) {
    const size_t d = edit_distance(name, f.name);
    if (d < best_distance) best_distance = d, best = f.name;
  }
  // Close enough to be a slip ("--epoch", "--bach-size"), or the start of exactly one name ("--batch").
  std::string guess = best_distance <= std::max<size_t>(2, name.size() / 4) ? best : "";
  if (guess.empty() && name.size() >= 4) {
    for (const Flag& f : flags_)
      if (f.name.rfind(name, 0) == 0) {
        if (!guess.empty()) return program_ + ": unknown flag " + name + " (see " + program_ + " --help)";
        guess = f.name;
      }
  }
  return program_ + ": unknown flag " + name + (guess.empty() ? "" : "; did you mean " + guess + "?") + " (see " +
         program_ + " --help)";
}

bool FlagParser::parse(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return parse(args);
}

bool FlagParser::parse(const std::vector<std::string>& args) {
  // A flag's value is the next argument verbatim (CLI11 takes the arguments a flag needs before it looks
  // at them): `--seed -1` and `--lr --` reach our parsers as written.
  // `--name=` is an empty value (CLI11 would take the next argument): handed on as `--name ""`. After `--`,
  // the end of the flags, every argument is positional.
  const size_t end_of_flags = static_cast<size_t>(std::find(args.begin(), args.end(), "--") - args.begin());
  std::vector<std::string> reversed;  // CLI11 takes the arguments last first
  for (size_t i = args.size(); i-- > 0;) {
    const std::string& arg = args[i];
    const bool empty_value = i < end_of_flags && arg.size() > 1 && arg.back() == '=' &&
                             value_flags_.count(arg.substr(0, arg.size() - 1));
    if (empty_value) reversed.emplace_back();
    reversed.push_back(empty_value ? arg.substr(0, arg.size() - 1) : arg);
  }
  if (!args.empty() && end_of_flags == args.size()) {
    auto last = value_flags_.find(args.back());
    ENGINE_USER_CHECK(last == value_flags_.end())
        << program_ << ": " << flags_[last->second].name << " needs a value (see " << program_ << " --help)";
  }
  check_args_ = false;
  try {
    app_->parse(std::move(reversed));
  } catch (const CLI::CallForHelp&) {
    std::fputs(help().c_str(), stdout);
    return false;
  } catch (const CLI::ParseError& e) {
    ENGINE_USER_FAIL() << program_ << ": " << e.what() << " (see " << program_ << " --help)";
  }
  for (const std::string& arg : app_->remaining()) {
    if (arg == "--") continue;  // the end of the flags: what follows is positional
    ENGINE_USER_CHECK(arg.size() < 2 || arg[0] != '-') << unknown_flag_message(arg);
    ENGINE_USER_CHECK(!positional_name_.empty())
        << program_ << ": unexpected argument '" << arg << "' (flags start with -; see " << program_ << " --help)";
  }
  // Our strict conversions, each occurrence in turn (the last wins; a list appends).
  for (const Flag& f : flags_) {
    for (const std::string& value : f.option->results()) f.set(value);
    if (f.option->count() > 0) given_.insert(f.name);
  }
  if (positional_option_)
    for (const std::string& value : positional_option_->results()) positional_.push_back(value);
  if (check_args_) {
    std::printf("%s: the command line is good (--check-args: nothing run)\n", program_.c_str());
    return false;
  }
  return true;
}

std::string FlagParser::help() const { return app_->help(); }

bool parse_flags_or_exit(FlagParser& flags, const std::vector<std::string>& args) {
  try {
    return flags.parse(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::exit(2);
  }
}

bool parse_flags_or_exit(FlagParser& flags, int argc, char** argv) {
  return parse_flags_or_exit(flags, std::vector<std::string>(argv + 1, argv + argc));
}

std::string take_positional_or_flag(const FlagParser& flags, const std::string& flag, const std::string& what,
                                    const std::string& usage, std::string& value) {
  const std::vector<std::string>& positional = flags.positional();
  if (positional.size() > 1 || (!positional.empty() && !value.empty()))
    return "give one " + what + ", as " + flags.positional_name() + " or " + flag + " (see --help)";
  if (!positional.empty()) value = positional[0];
  if (value.empty()) return "the " + what + " is required: " + usage + " (see --help)";
  return "";
}

}  // namespace experiment
