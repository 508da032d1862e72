// The apps' flag parser (see flags.h).
#include "experiment/flags.h"

#include <cerrno>
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

int64_t parse_int(const std::string& flag, const std::string& value) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  ENGINE_CHECK(!value.empty() && end && *end == '\0' && errno == 0)
      << flag << " expects an integer, got '" << value << "' (see --help)";
  return v;
}

double parse_double(const std::string& flag, const std::string& value) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  ENGINE_CHECK(!value.empty() && end && *end == '\0' && errno == 0)
      << flag << " expects a number, got '" << value << "' (see --help)";
  return v;
}

bool parse_bool(const std::string& flag, const std::string& value) {
  if (value == "true" || value == "1" || value == "yes" || value == "on") return true;
  if (value == "false" || value == "0" || value == "no" || value == "off") return false;
  ENGINE_FAIL() << flag << " expects true or false, got '" << value << "'";
}

FlagParser::FlagParser(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}

void FlagParser::add(const std::string& name, std::string* target, const std::string& help, const std::string& value_name) {
  flags_.push_back({name, value_name, help, target->empty() ? "" : *target, false,
                    [target](const std::string& v) { *target = v; }});
}
void FlagParser::add(const std::string& name, int64_t* target, const std::string& help, const std::string& value_name) {
  flags_.push_back({name, value_name, help, std::to_string(*target), false,
                    [target, name](const std::string& v) { *target = parse_int(name, v); }});
}
void FlagParser::add(const std::string& name, uint64_t* target, const std::string& help, const std::string& value_name) {
  flags_.push_back({name, value_name, help, std::to_string(*target), false, [target, name](const std::string& v) {
                      const int64_t x = parse_int(name, v);
                      ENGINE_CHECK(x >= 0) << name << " must not be negative, got " << v;
                      *target = static_cast<uint64_t>(x);
                    }});
}
void FlagParser::add(const std::string& name, int* target, const std::string& help, const std::string& value_name) {
  flags_.push_back({name, value_name, help, std::to_string(*target), false,
                    [target, name](const std::string& v) { *target = static_cast<int>(parse_int(name, v)); }});
}
void FlagParser::add(const std::string& name, double* target, const std::string& help, const std::string& value_name) {
  flags_.push_back({name, value_name, help, format_double(*target), false,
                    [target, name](const std::string& v) { *target = parse_double(name, v); }});
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
  ENGINE_FAIL() << program_ << ": unknown flag " << name << " (see " << program_ << " --help)";
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
      ENGINE_CHECK(!positional_name_.empty())
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
      ENGINE_CHECK(i + 1 < args.size()) << program_ << ": " << name << " needs a value (see --help)";
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

}  // namespace experiment
