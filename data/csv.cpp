// CSV reading and writing (see csv.h). A single pass over the text, one state machine; no allocation
// proportional to anything but the output.
#include "data/csv.h"

#include "engine/check.h"

namespace data {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string trim(std::string_view s) {
  size_t begin = 0, end = s.size();
  while (begin < end && is_blank(s[begin])) ++begin;
  while (end > begin && is_blank(s[end - 1])) --end;
  return std::string(s.substr(begin, end - begin));
}

}  // namespace

std::vector<CsvRow> parse_csv(std::string_view text, const std::string& source) {
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF &&
      static_cast<unsigned char>(text[1]) == 0xBB && static_cast<unsigned char>(text[2]) == 0xBF)
    text.remove_prefix(3);

  std::vector<CsvRow> rows;
  CsvRow row;
  std::string field;       // the current field's characters
  bool field_quoted = false;  // the current field began with a quote
  bool row_has_content = false;
  int64_t line = 1;
  row.line = 1;

  auto end_field = [&]() {
    row.fields.push_back(field_quoted ? field : trim(field));
    field.clear();
    field_quoted = false;
  };
  auto end_row = [&]() {
    end_field();
    // A blank line (one empty unquoted field) is not a row.
    const bool blank = row.fields.size() == 1 && row.fields[0].empty() && !row_has_content;
    if (!blank) rows.push_back(std::move(row));
    row = CsvRow();
    row_has_content = false;
  };

  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const char c = text[i];
    if (c == '"' && trim(field).empty() && !field_quoted) {
      // A quoted field: read to the closing quote.
      const int64_t quote_line = line;
      field.clear();
      field_quoted = true;
      row_has_content = true;
      ++i;
      bool closed = false;
      while (i < n) {
        const char q = text[i];
        if (q == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        if (q == '\n') ++line;
        if (q == '\r' && !(i + 1 < n && text[i + 1] == '\n')) ++line;
        field.push_back(q);
        ++i;
      }
      ENGINE_USER_CHECK(closed) << source << ": line " << quote_line
                                << ": a quoted field is never closed (a stray '\"'?); fix or re-export the file";
      continue;
    }
    if (c == ',') {
      end_field();
      row_has_content = true;
      ++i;
      continue;
    }
    if (c == '\r' || c == '\n') {
      end_row();
      if (c == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
      ++i;
      ++line;
      row.line = line;
      continue;
    }
    field.push_back(c);
    if (!is_blank(c)) row_has_content = true;
    ++i;
  }
  if (!field.empty() || field_quoted || !row.fields.empty()) end_row();
  return rows;
}

std::string csv_escape(std::string_view field) {
  bool needs_quotes = !field.empty() && (is_blank(field.front()) || is_blank(field.back()));
  // A leading byte-order mark would be taken for the file's own at the start of a file.
  if (field.size() >= 3 && static_cast<unsigned char>(field[0]) == 0xEF &&
      static_cast<unsigned char>(field[1]) == 0xBB && static_cast<unsigned char>(field[2]) == 0xBF)
    needs_quotes = true;
  if (!field.empty() && field.front() == '"') needs_quotes = true;
  for (char c : field)
    if (c == ',' || c == '"' || c == '\n' || c == '\r') needs_quotes = true;
  if (!needs_quotes) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string csv_line(const std::vector<std::string>& fields) {
  // One empty field alone would be a blank line, which readers skip: write it quoted.
  if (fields.size() == 1 && fields[0].empty()) return "\"\"\n";
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) out.push_back(',');
    out += csv_escape(fields[i]);
  }
  out.push_back('\n');
  return out;
}

}  // namespace data
