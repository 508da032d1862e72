// A small command-line flag parser for the apps (CLI11 is not a dependency of the build).
//
//   FlagParser flags("train_densenet", "Trains DenseNet on MURA ...");
//   flags.add("--epochs", &options.epochs, "training epochs");
//   flags.add_switch("--resume", &options.resume, "continue the run in --out");
//   if (!flags.parse(argc, argv)) return 0;   // --help was printed
//
// Forms: `--name value`, `--name=value`; switches take no value (or `--name=true|false`). Positional
// arguments (anything not starting with "--") are collected in positional() when allowed. --help (-h)
// prints every flag with its default. Errors (unknown flag, missing or malformed value) throw
// engine::Error naming the flag and pointing at --help.
//
// Numbers are parsed strictly, the whole value or nothing: an integer is an optional sign and decimal
// digits that fit the target ("abc", "", " 5", "1e9", "0x10", "5px" are refused: "--max-side: 'abc' is
// not an integer"); a float is decimal (with an exponent) and finite ("nan", "inf", "1e999" are refused).
// A range, given to add(), is checked too: "--max-side must be between 1 and 65535, got -5".
//   flags.add("--max-side", &limits.max_side, "longest image side", 1, 65535, "PX");
#pragma once
#include <cfloat>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace experiment {

class FlagParser {
 public:
  FlagParser(std::string program, std::string description);

  void add(const std::string& name, std::string* target, const std::string& help, const std::string& value_name = "S");
  void add(const std::string& name, int64_t* target, const std::string& help, const std::string& value_name = "N");
  void add(const std::string& name, uint64_t* target, const std::string& help, const std::string& value_name = "N");
  void add(const std::string& name, int* target, const std::string& help, const std::string& value_name = "N");
  void add(const std::string& name, double* target, const std::string& help, const std::string& value_name = "X");
  // The same with an inclusive range [min, max] (the defaults above: the target type's range; every
  // finite double).
  void add(const std::string& name, int64_t* target, const std::string& help, int64_t min, int64_t max,
           const std::string& value_name = "N");
  void add(const std::string& name, int* target, const std::string& help, int64_t min, int64_t max,
           const std::string& value_name = "N");
  void add(const std::string& name, double* target, const std::string& help, double min, double max,
           const std::string& value_name = "X");
  void add_switch(const std::string& name, bool* target, const std::string& help);
  // Repeated or comma-separated values appended to `target`.
  void add_list(const std::string& name, std::vector<std::string>* target, const std::string& help,
                const std::string& value_name = "S");
  void allow_positional(const std::string& name, const std::string& help);
  void set_epilog(const std::string& text) { epilog_ = text; }

  // False when --help was printed (to stdout); throws engine::Error on a bad command line.
  bool parse(int argc, char** argv);
  bool parse(const std::vector<std::string>& args);
  bool given(const std::string& name) const { return given_.count(name) > 0; }
  const std::vector<std::string>& positional() const { return positional_; }
  const std::string& positional_name() const { return positional_name_; }
  std::string help() const;

 private:
  struct Flag {
    std::string name, value_name, help, default_text;
    bool is_switch = false;
    std::function<void(const std::string&)> set;
  };
  Flag& find(const std::string& name);

  std::string program_, description_, epilog_, positional_name_, positional_help_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
  std::set<std::string> given_;
};

// Strict parse helpers (see the file comment) that name the flag in their errors; the ranges are inclusive.
int64_t parse_int(const std::string& flag, const std::string& value, int64_t min = INT64_MIN, int64_t max = INT64_MAX);
uint64_t parse_uint64(const std::string& flag, const std::string& value);
double parse_double(const std::string& flag, const std::string& value, double min = -DBL_MAX, double max = DBL_MAX);
bool parse_bool(const std::string& flag, const std::string& value);

// Parses for a main: false when --help was printed; a bad command line prints "error: ..." to stderr
// and exits with status 2.
bool parse_flags_or_exit(FlagParser& flags, int argc, char** argv);

// The one thing a program works on, given either as its positional argument (allow_positional) or as `flag`,
// not both and not twice, e.g. `mura_verify ROOT` or `mura_verify --root ROOT`. Fills `value` from the
// positional argument when there is one; returns "" when all is well, else the message for the user:
// "give one MURA root, as ROOT or --root (see --help)", "the MURA root is required: mura_verify ROOT (see --help)".
std::string take_positional_or_flag(const FlagParser& flags, const std::string& flag, const std::string& what,
                                    const std::string& usage, std::string& value);

}  // namespace experiment
