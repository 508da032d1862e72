// The apps' flag parser (see flags.h).
#include "experiment/flags.h"

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

FlagParser::FlagParser(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}

void FlagParser::add(const std::string& name, std::string* target, const std::string& help, const std::string& value_name) {
  flags_.push_back({name, value_name, help, target->empty() ? "" : *target, false,
                    [target](const std::string& v) { *target = v; }});
}
void FlagParser::add(const std::string& name, int64_t* target, const std::string& help, const std::string& value_name) {
  add(name, target, help, INT64_MIN, INT64_MAX, value_name);
}
void FlagParser::add(const std::string& name, int64_t* target, const std::string& help, int64_t min, int64_t max,
                     const std::string& value_name) {
  const bool full = min == INT64_MIN && max == INT64_MAX;
  flags_.push_back({name, value_name, full ? help : help + " (" + std::to_string(min) + ".." + std::to_string(max) + ")",
                    std::to_string(*target), false,
                    [target, name, min, max](const std::string& v) { *target = parse_int(name, v, min, max); }});
}
void FlagParser::add(const std::string& name, uint64_t* target, const std::string& help, const std::string& value_name) {
  flags_.push_back({name, value_name, help, std::to_string(*target), false,
                    [target, name](const std::string& v) { *target = parse_uint64(name, v); }});
}
void FlagParser::add(const std::string& name, int* target, const std::string& help, const std::string& value_name) {
  add(name, target, help, INT_MIN, INT_MAX, value_name);
}
void FlagParser::add(const std::string& name, int* target, const std::string& help, int64_t min, int64_t max,
                     const std::string& value_name) {
  ENGINE_CHECK(min >= INT_MIN && max <= INT_MAX && min <= max) << name << ": bad range " << min << ".." << max;
  const bool full = min == INT_MIN && max == INT_MAX;
  flags_.push_back({name, value_name, full ? help : help + " (" + std::to_string(min) + ".." + std::to_string(max) + ")",
                    std::to_string(*target), false, [target, name, min, max](const std::string& v) {
                      *target = static_cast<int>(parse_int(name, v, min, max));
                    }});
}
void FlagParser::add(const std::string& name, double* target, const std::string& help, const std::string& value_name) {
  add(name, target, help, -DBL_MAX, DBL_MAX, value_name);
}
void FlagParser::add(const std::string& name, double* target, const std::string& help, double min, double max,
                     const std::string& value_name) {
  const bool full = min == -DBL_MAX && max == DBL_MAX;
  flags_.push_back({name, value_name, full ? help : help + " (" + format_double(min) + ".." + format_double(max) + ")",
                    format_double(*target), false,
                    [target, name, min, max](const std::string& v) { *target = parse_double(name, v, min, max); }});
}
void FlagParser::add_switch(const std::string& name, bool* target, const std::string& help) {
  flags_.push_back({name, "", help, *target ? "on" : "", true,
                    [target, name](const std::string& v) { *target = v.empty() ? true : parse_bool(name, v); }});
}
void FlagParser::add_list(const std::string& name, std::vector<std::string>* target, const std::string& help,
                          const std::string& value_name) {
  flags_.push_back({name, value_name, help, "", false, [target](const std::string& v) {
                      std::stringstream in(v);
                      for (std::string item; std::getline(in, item, ',');)
                        if (!item.empty()) target->push_back(item);
                    }});
}
void FlagParser::allow_positional(const std::string& name, const std::string& help) {
  positional_name_ = name;
  positional_help_ = help;
}

FlagParser::Flag& FlagParser::find(const std::string& name) {
  for (Flag& f : flags_)
    if (f.name == name) return f;
  ENGINE_USER_FAIL() << program_ << ": unknown flag " << name << " (see " << program_ << " --help)";
}

bool FlagParser::parse(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return parse(args);
}

bool FlagParser::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (arg.rfind("--", 0) != 0) {
      ENGINE_USER_CHECK(!positional_name_.empty())
          << program_ << ": unexpected argument '" << arg << "' (flags start with --; see --help)";
      positional_.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    Flag& flag = find(name);
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (!flag.is_switch) {
      ENGINE_USER_CHECK(i + 1 < args.size()) << program_ << ": " << name << " needs a value (see --help)";
      value = args[++i];
    }
    flag.set(value);
    given_.insert(name);
  }
  return true;
}

std::string FlagParser::help() const {
  std::ostringstream o;
  o << "usage: " << program_ << " [flags]" << (positional_name_.empty() ? "" : " " + positional_name_ + "...") << "\n\n"
    << description_ << "\n\n";
  if (!positional_name_.empty()) o << "  " << positional_name_ << "\n      " << positional_help_ << "\n";
  for (const Flag& f : flags_) {
    std::string head = f.name + (f.is_switch ? "" : " " + f.value_name);
    o << "  " << head << "\n      " << f.help;
    if (!f.default_text.empty()) o << " [default: " << f.default_text << "]";
    o << "\n";
  }
  o << "  --help\n      this text\n";
  if (!epilog_.empty()) o << "\n" << epilog_ << "\n";
  return o.str();
}

bool parse_flags_or_exit(FlagParser& flags, int argc, char** argv) {
  try {
    return flags.parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::exit(2);
  }
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
