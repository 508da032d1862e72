// A small, tolerant CSV reader and writer (RFC 4180 quoting) for MURA's lists and our split files.
//
// Reading: fields separated by commas; rows end with LF, CRLF or a lone CR; a UTF-8 byte-order mark is
// skipped; blank lines are skipped; unquoted fields lose surrounding spaces and tabs; a double-quoted
// field may hold commas, line breaks and doubled quotes (""). Text after a closing quote up to the next
// comma is kept verbatim (lenient). An unterminated quote is an error naming the source and its line.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace data {

struct CsvRow {
  int64_t line = 0;  // 1-based line where the row starts (for messages)
  std::vector<std::string> fields;
};

// `source` names the text in errors (a file path, usually).
std::vector<CsvRow> parse_csv(std::string_view text, const std::string& source);

// A field quoted when it needs to be (comma, quote, line break, or surrounding spaces).
std::string csv_escape(std::string_view field);
// The fields joined by commas, escaped, ending with "\n".
std::string csv_line(const std::vector<std::string>& fields);

}  // namespace data
