// The kernel benchmarks' command lines, with CLI11 as the apps' (they sit below experiment/, so they cannot
// use its FlagParser): CLI11 parses and formats --help; counts are checked by parse_positive, strictly: the
// whole text is decimal digits and the value lies in [1, max]; anything else ("abc", "", "-5", "1e9",
// "0x10", "12x", a value past max) is refused with a message naming the flag.
//
//   CLI::App app("CPU kernel throughput", "bench_cpu_kernels");
//   kernels::bench::add_count(app, "--batch", options.batch, "images per convolution");
//   app.add_flag("--quick", options.quick, "tiny sizes, 1 timed run");
//   kernels::bench::parse_or_exit(app, argc, argv);   // --help: exit 0; a mistake: "error: ...", exit 2
#pragma once
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace kernels::bench {

inline long parse_positive(const std::string& flag, const char* text, long max) {
  const std::string s = text ? text : "";
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument(flag + ": '" + s + "' is not a positive whole number");
  errno = 0;
  const long v = std::strtol(s.c_str(), nullptr, 10);
  if (errno == ERANGE || v < 1 || v > max)
    throw std::invalid_argument(flag + " must be between 1 and " + std::to_string(max) + ", got " + s);
  return v;
}

// A count flag (`--batch N`), its default shown in --help (the target's value, or `default_text`); the value
// goes through parse_positive. `names` may carry a short form first ("-b,--batch"); messages name the long one.
template <typename T>
CLI::Option* add_count(CLI::App& app, const std::string& names, T& target, const std::string& help,
                       const std::string& default_text = "", long max = 1 << 20) {
  const std::string flag = names.substr(names.rfind(',') + 1);  // npos + 1 == 0: the whole name
  const auto set = [&target, flag, max](const std::string& v) {
    target = static_cast<T>(parse_positive(flag, v.c_str(), max));
  };
  const std::string shown = default_text.empty() ? std::to_string(target) : default_text;
  return app.add_option_function<std::string>(names, set, help + " [default: " + shown + "]")->type_name("N");
}

// Parses the command line: --help prints it and exits 0; a mistake prints one line, "error: ...", and
// exits 2; --check-args (hidden, as in the apps) exits 0 once the command line is good, running nothing.
inline void parse_or_exit(CLI::App& app, int argc, char** argv) {
  const std::string program = app.get_name();
  bool check_args = false;
  app.add_flag("--check-args", check_args, "parse and check the command line, then exit without running")->group("");
  try {
    app.parse(argc, argv);
    if (check_args) {
      std::printf("%s: the command line is good (--check-args: nothing run)\n", program.c_str());
      std::exit(0);
    }
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s: %s (see %s --help)\n", program.c_str(), e.what(), program.c_str());
    std::exit(2);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "error: %s (see %s --help)\n", e.what(), program.c_str());
    std::exit(2);
  }
}

}  // namespace kernels::bench
