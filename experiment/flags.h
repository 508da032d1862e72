// The apps' command lines: FlagParser, a thin layer over CLI11 (Debian's libcli11-dev) that every app uses.
//
//   FlagParser flags("train_densenet", "Trains DenseNet on MURA ...");
//   flags.add("-e,--epochs", &options.epochs, "training epochs");
//   flags.add_switch("--resume", &options.resume, "continue the run in --out");
//   if (!parse_flags_or_exit(flags, argc, argv)) return 0;   // --help was printed, or --check-args given
//
// CLI11 does the structure of the command line (`--name value`, `--name=value`, a short form such as `-e 3`
// or `-e3` where one is named, switches, positional arguments, `--`), --help (-h: every flag with its
// default) and finding the arguments it does not know; we name the nearest flag ("unknown flag --epoch;
// did you mean --epochs?", by edit distance, which CLI11 2.1 does not offer). A flag's
// value is the next argument verbatim, even when it starts with '-' (`--seed -1` reaches the check below).
// Positional arguments are collected in positional() when allow_positional was called. A repeated flag:
// the last value wins (a list flag appends). Errors (unknown flag, missing or malformed value) throw
// engine::UserError naming the flag and pointing at --help; parse_flags_or_exit prints them as one line,
// "error: ...", and exits with status 2.
//
// Values are converted by our strict parsers, not CLI11's (which takes "0x10" and octal): an integer is an
// optional sign and decimal digits that fit the target ("abc", "", " 5", "1e9", "0x10", "5px" are refused:
// "--max-side: 'abc' is not an integer"); a float is decimal (with an exponent) and finite ("nan", "inf",
// "1e999" are refused). A range, given to add(), is checked too: "--max-side must be between 1 and 65535,
// got -5".
//   flags.add("--max-side", &limits.max_side, "longest image side", 1, 65535, "PX");
//
// Every app also takes --check-args (not listed in --help): parse and check the command line, then exit 0
// without running anything (the test of the documented usages runs each of them so).
#pragma once
#include <cfloat>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace experiment {

// `name` is the long form ("--epochs"), optionally after a short one ("-e,--epochs"); messages and given()
// use the long form.
class FlagParser {
 public:
  FlagParser(std::string program, std::string description);
  ~FlagParser();
  FlagParser(const FlagParser&) = delete;
  FlagParser& operator=(const FlagParser&) = delete;

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
  void set_epilog(const std::string& text);
  // Flags (long names, or the positional's name) that later add*() / allow_positional calls skip: a program
  // that shares a set of flags (add_train_flags) but not all of them offers, lists and accepts only the rest.
  // `why` is told to a user who gives one: "compare: --images is not taken here: <why> (see compare --help)".
  void leave_out(const std::vector<std::string>& names, const std::string& why = "") {
    for (const std::string& name : names) left_out_[name] = why;
  }

  // False when there is nothing to run: --help was printed (to stdout), or --check-args was given and the
  // command line is good. Throws engine::UserError on a bad command line.
  bool parse(int argc, char** argv);
  bool parse(const std::vector<std::string>& args);
  // Whether the flag (its long name) was on the command line.
  bool given(const std::string& name) const { return given_.count(name) > 0; }
  const std::vector<std::string>& positional() const { return positional_; }
  const std::string& positional_name() const { return positional_name_; }
  std::string help() const;

 private:
  struct Flag {
    std::string name, value_name, help, default_text;
    bool is_switch = false;
    std::function<void(const std::string&)> set;
    CLI::Option* option = nullptr;
  };
  void add_flag(const std::string& names, Flag flag);
  std::string unknown_flag_message(const std::string& arg) const;

  std::unique_ptr<CLI::App> app_;
  std::string program_, positional_name_;
  CLI::Option* positional_option_ = nullptr;
  std::vector<Flag> flags_;                   // by registration
  std::map<std::string, size_t> value_flags_; // "-e" and "--epochs" -> the index of a flag that takes a value
  std::map<std::string, std::string> left_out_;  // name -> why
  std::vector<std::string> positional_;
  std::set<std::string> given_;
  bool check_args_ = false;
};

// Strict parse helpers (see the file comment) that name the flag in their errors; the ranges are inclusive.
int64_t parse_int(const std::string& flag, const std::string& value, int64_t min = INT64_MIN, int64_t max = INT64_MAX);
uint64_t parse_uint64(const std::string& flag, const std::string& value);
double parse_double(const std::string& flag, const std::string& value, double min = -DBL_MAX, double max = DBL_MAX);
bool parse_bool(const std::string& flag, const std::string& value);

// Parses for a main: false when there is nothing to run (--help, --check-args); a bad command line prints
// "error: ..." to stderr and exits with status 2.
bool parse_flags_or_exit(FlagParser& flags, int argc, char** argv);
bool parse_flags_or_exit(FlagParser& flags, const std::vector<std::string>& args);

// The one thing a program works on, given either as its positional argument (allow_positional) or as `flag`,
// not both and not twice, e.g. `mura_verify ROOT` or `mura_verify --root ROOT`. Fills `value` from the
// positional argument when there is one; returns "" when all is well, else the message for the user:
// "give one MURA root, as ROOT or --root (see --help)", "the MURA root is required: mura_verify ROOT (see --help)".
std::string take_positional_or_flag(const FlagParser& flags, const std::string& flag, const std::string& what,
                                    const std::string& usage, std::string& value);

}  // namespace experiment
