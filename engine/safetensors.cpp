// Strict safetensors reader and atomic writer (format and guarantees: see safetensors.h).
//
// The header is checked in stages, each with its own messages:
//   1. sizes: the file has the 8-byte length; the length is within the cap and within the file
//   2. encoding: the header is valid UTF-8
//   3. syntax: a complete JSON pass (objects, arrays, strings with escapes, numbers, literals; nesting at
//      most kMaxJsonDepth deep; only whitespace after the value). Nothing is built in this pass.
//   4. schema: the top-level object is read again into TensorInfo / metadata, checking every field
//   5. layout: the byte ranges, sorted by begin, tile [0, data size) exactly and data size = file size - 8 - N
// Memory stays within a small multiple of the header size (the header itself, the names, the shapes).
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

// The data are copied byte for byte, so the host must be little-endian like the format.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace engine::safetensors {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // 100 MiB, as the official reader
constexpr int kMaxJsonDepth = 64;
constexpr size_t kMaxRank = 1024;  // a shape with more dimensions is refused (bounds the memory per header byte)
constexpr size_t kHeaderAlignment = 8;
constexpr size_t kMaxSuggestionScan = 20000;  // names compared when a tensor is not found

struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8},       {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},     {DType::I64, "I64", 8},         {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},       {DType::I8, "I8", 1},           {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},     {DType::U16, "U16", 2},         {DType::U32, "U32", 4},
    {DType::U64, "U64", 8},       {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

const DTypeRow* find_dtype(const std::string& name) {
  for (const DTypeRow& row : kDTypes)
    if (name == row.name) return &row;
  return nullptr;
}

std::string known_dtype_names() {
  std::string s;
  for (const DTypeRow& row : kDTypes) s += (s.empty() ? "" : ", ") + std::string(row.name);
  return s;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i == 8 && shape.size() > 10) {
      s += ", ... (" + std::to_string(shape.size()) + " dims)";
      break;
    }
    s += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return s + "]";
}

// Returns the byte length of a valid UTF-8 sequence starting at s[i], or 0 when it is invalid
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
size_t utf8_sequence_length(const unsigned char* s, size_t n, size_t i) {
  unsigned char c = s[i];
  if (c < 0x80) return 1;
  size_t len;
  uint32_t min, cp;
  if ((c & 0xe0) == 0xc0) {
    len = 2, min = 0x80, cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3, min = 0x800, cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (n - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((s[i + k] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i + k] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

// Offset of the first byte that is not valid UTF-8, or n when all are.
size_t first_invalid_utf8(const unsigned char* s, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t len = utf8_sequence_length(s, n, i);
    if (len == 0) return i;
    i += len;
  }
  return n;
}

// A string from the file, quoted for a message: printable ASCII and valid UTF-8 as is, other bytes as
// \xNN, at most about `limit` bytes shown.
std::string quote(const std::string& s, size_t limit = 80) {
  static const char hex[] = "0123456789abcdef";
  const auto* u = reinterpret_cast<const unsigned char*>(s.data());
  std::string out = "'";
  size_t i = 0;
  while (i < s.size() && i < limit) {
    size_t len = u[i] >= 0x80 ? utf8_sequence_length(u, s.size(), i) : 1;
    if (len > 1) {
      out.append(s, i, len);
      i += len;
      continue;
    }
    if (u[i] >= 0x20 && u[i] < 0x7f && u[i] != '\\') {
      out += s[i];
    } else {
      out += "\\x";
      out += hex[u[i] >> 4];
      out += hex[u[i] & 15];
    }
    ++i;
  }
  if (i < s.size()) out += "...";
  return out + "'";
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// ---------------------------------------------------------------------------------------------------
// JSON: a cursor over the header bytes with the primitives both passes use.

struct JsonNumber {
  bool negative = false;
  bool integer = true;     // no fraction, no exponent
  bool overflow = false;   // the magnitude does not fit in uint64
  uint64_t magnitude = 0;  // valid when integer && !overflow
  std::string text;        // as written (for messages)
};

class JsonCursor {
 public:
  JsonCursor(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  size_t pos() const { return pos_; }

  [[noreturn]] void syntax_error(const std::string& what) const {
    throw Error(path_, "header is not valid JSON: " + what + " at byte " + std::to_string(pos_) +
                           " of the header");
  }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool at_end() const { return pos_ >= s_.size(); }

  // Next non-whitespace character (not consumed); a syntax error at the end of the header.
  char peek() {
    skip_ws();
    if (at_end()) syntax_error("unexpected end of header");
    return s_[pos_];
  }
  bool consume(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c) {
    if (!consume(c)) syntax_error(std::string("expected '") + c + "' but found " + describe(s_[pos_]));
  }

  static std::string describe(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u > 0x20 && u < 0x7f) return std::string("'") + c + "'";
    static const char hex[] = "0123456789abcdef";
    return std::string("byte 0x") + hex[u >> 4] + hex[u & 15];
  }

  // The kind of the next value, for messages.
  std::string next_kind() {
    char c = peek();
    if (c == '{') return "an object";
    if (c == '[') return "an array";
    if (c == '"') return "a string";
    if (c == 't' || c == 'f') return "a boolean";
    if (c == 'n') return "null";
    return "a number";
  }

  std::string parse_string() {
    if (peek() != '"') syntax_error("expected a string but found " + describe(s_[pos_]));
    ++pos_;
    std::string out;
    for (;;) {
      if (at_end()) syntax_error("unterminated string");
      char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) syntax_error("unescaped control character in a string");
      if (c != '\\') {
        // A run of plain bytes at once (UTF-8 was validated for the whole header beforehand).
        size_t run = pos_ + 1;
        while (run < s_.size() && s_[run] != '"' && s_[run] != '\\' && static_cast<unsigned char>(s_[run]) >= 0x20)
          ++run;
        out.append(s_, pos_, run - pos_);
        pos_ = run;
        continue;
      }
      ++pos_;
      if (at_end()) syntax_error("unterminated string");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) syntax_error("unpaired low surrogate in a \\u escape");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (pos_ + 1 >= s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
              syntax_error("high surrogate in a \\u escape not followed by a low surrogate");
            pos_ += 2;
            uint32_t low = parse_hex4();
            if (low < 0xdc00 || low > 0xdfff)
              syntax_error("high surrogate in a \\u escape not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          pos_ -= 2;
          syntax_error("invalid escape: backslash followed by " + describe(e));
      }
    }
  }

  // JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  JsonNumber parse_number() {
    skip_ws();
    JsonNumber n;
    const size_t start = pos_;
    auto digit = [&]() { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    if (pos_ < s_.size() && s_[pos_] == '-') {
      n.negative = true;
      ++pos_;
    }
    if (!digit()) syntax_error("invalid number");
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit()) syntax_error("invalid number (leading zero)");
    } else {
      while (digit()) {
        uint64_t d = static_cast<uint64_t>(s_[pos_] - '0');
        if (n.magnitude > (std::numeric_limits<uint64_t>::max() - d) / 10) n.overflow = true;
        n.magnitude = n.magnitude * 10 + d;  // wraps once overflow is set; no longer used then
        ++pos_;
      }
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      n.integer = false;
      ++pos_;
      if (!digit()) syntax_error("invalid number (no digit after '.')");
      while (digit()) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      n.integer = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digit()) syntax_error("invalid number (no digit in the exponent)");
      while (digit()) ++pos_;
    }
    n.text = s_.substr(start, std::min<size_t>(pos_ - start, 40));
    if (pos_ - start > 40) n.text += "...";
    return n;
  }

  // Checks one JSON value of any kind without building it.
  void skip_value(int depth) {
    if (depth > kMaxJsonDepth)
      syntax_error("nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    char c = peek();
    if (c == '{') {
      ++pos_;
      if (consume('}')) return;
      do {
        parse_string();
        expect(':');
        skip_value(depth + 1);
      } while (consume(','));
      expect('}');
    } else if (c == '[') {
      ++pos_;
      if (consume(']')) return;
      do {
        skip_value(depth + 1);
      } while (consume(','));
      expect(']');
    } else if (c == '"') {
      parse_string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      parse_number();
    } else if (!literal("true") && !literal("false") && !literal("null")) {
      syntax_error("unexpected " + describe(c));
    }
  }

 private:
  bool literal(const char* word) {
    size_t len = std::strlen(word);
    if (s_.compare(pos_, len, word) != 0) return false;
    pos_ += len;
    return true;
  }

  uint32_t parse_hex4() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      if (at_end()) syntax_error("truncated \\u escape");
      char h = s_[pos_];
      uint32_t d;
      if (h >= '0' && h <= '9') {
        d = static_cast<uint32_t>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        d = static_cast<uint32_t>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        d = static_cast<uint32_t>(h - 'A' + 10);
      } else {
        syntax_error("invalid hex digit in a \\u escape");
      }
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------------
// Schema: the top-level object read into tensors and metadata.

class HeaderParser {
 public:
  HeaderParser(const std::string& header, const std::string& path) : cur_(header, path), path_(path) {}

  void parse(std::vector<TensorInfo>& tensors, std::map<std::string, std::string>& metadata) {
    if (cur_.peek() != '{')
      fail("the header must be a JSON object at the top level, not " + cur_.next_kind());
    cur_.expect('{');
    std::map<std::string, size_t> seen;
    bool seen_metadata = false;
    if (!cur_.consume('}')) {
      do {
        std::string key = cur_.parse_string();
        cur_.expect(':');
        if (key == "__metadata__") {
          if (seen_metadata) fail("duplicate key '__metadata__'");
          seen_metadata = true;
          parse_metadata(metadata);
        } else {
          if (!seen.emplace(key, tensors.size()).second) fail("duplicate tensor name " + quote(key));
          tensors.push_back(parse_entry(key));
        }
      } while (cur_.consume(','));
      cur_.expect('}');
    }
    cur_.skip_ws();
    if (!cur_.at_end()) cur_.syntax_error("unexpected characters after the JSON object");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw Error(path_, what); }

  void parse_metadata(std::map<std::string, std::string>& metadata) {
    if (cur_.peek() != '{')
      fail("__metadata__ must be an object of string values, not " + cur_.next_kind());
    cur_.expect('{');
    if (cur_.consume('}')) return;
    do {
      std::string key = cur_.parse_string();
      cur_.expect(':');
      if (cur_.peek() != '"')
        fail("__metadata__ value of key " + quote(key) + " must be a string, not " + cur_.next_kind());
      std::string value = cur_.parse_string();
      if (!metadata.emplace(key, std::move(value)).second)
        fail("duplicate key " + quote(key) + " in __metadata__");
    } while (cur_.consume(','));
    cur_.expect('}');
  }

  // A non-negative integer that fits in `max`, or a message naming `what`.
  uint64_t parse_unsigned(const std::string& what, uint64_t max) {
    if (cur_.peek() != '-' && (cur_.peek() < '0' || cur_.peek() > '9'))
      fail(what + " must be a non-negative integer, not " + cur_.next_kind());
    JsonNumber n = cur_.parse_number();
    if (!n.integer || n.negative) fail(what + " must be a non-negative integer, not " + n.text);
    if (n.overflow || n.magnitude > max)
      fail(what + " " + n.text + " is too large (the maximum is " + std::to_string(max) + ")");
    return n.magnitude;
  }

  TensorInfo parse_entry(const std::string& name) {
    const std::string tensor = "tensor " + quote(name);
    if (cur_.peek() != '{') fail(tensor + " must be described by an object, not " + cur_.next_kind());
    cur_.expect('{');
    TensorInfo info;
    info.name = name;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    if (!cur_.consume('}')) {
      do {
        std::string field = cur_.parse_string();
        cur_.expect(':');
        if (field == "dtype") {
          if (has_dtype) fail("duplicate field 'dtype' in " + tensor);
          has_dtype = true;
          if (cur_.peek() != '"') fail("dtype of " + tensor + " must be a string, not " + cur_.next_kind());
          std::string dtype = cur_.parse_string();
          const DTypeRow* row = find_dtype(dtype);
          if (!row) fail(tensor + " has unknown dtype " + quote(dtype) + " (known: " + known_dtype_names() + ")");
          info.dtype = row->dtype;
        } else if (field == "shape") {
          if (has_shape) fail("duplicate field 'shape' in " + tensor);
          has_shape = true;
          if (cur_.peek() != '[')
            fail("shape of " + tensor + " must be an array of non-negative integers, not " + cur_.next_kind());
          cur_.expect('[');
          if (!cur_.consume(']')) {
            do {
              if (info.shape.size() == kMaxRank)
                fail("shape of " + tensor + " has more than " + std::to_string(kMaxRank) + " dimensions");
              info.shape.push_back(static_cast<int64_t>(parse_unsigned(
                  "each dimension in the shape of " + tensor,
                  static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))));
            } while (cur_.consume(','));
            cur_.expect(']');
          }
        } else if (field == "data_offsets") {
          if (has_offsets) fail("duplicate field 'data_offsets' in " + tensor);
          has_offsets = true;
          const std::string what = "data_offsets of " + tensor;
          if (cur_.peek() != '[') fail(what + " must be an array [begin, end], not " + cur_.next_kind());
          cur_.expect('[');
          std::vector<uint64_t> offsets;
          if (!cur_.consume(']')) {
            do {
              if (offsets.size() == 2) fail(what + " must have exactly 2 entries [begin, end], not more");
              offsets.push_back(parse_unsigned("each entry of " + what, std::numeric_limits<uint64_t>::max()));
            } while (cur_.consume(','));
            cur_.expect(']');
          }
          if (offsets.size() != 2)
            fail(what + " must have exactly 2 entries [begin, end], not " + std::to_string(offsets.size()));
          info.begin = offsets[0];
          info.end = offsets[1];
          if (info.begin > info.end)
            fail(what + ": begin " + std::to_string(info.begin) + " is greater than end " +
                 std::to_string(info.end));
        } else {
          fail(tensor + " has unexpected field " + quote(field) + " (expected dtype, shape, data_offsets)");
        }
      } while (cur_.consume(','));
      cur_.expect('}');
    }
    if (!has_dtype) fail(tensor + " is missing field 'dtype'");
    if (!has_shape) fail(tensor + " is missing field 'shape'");
    if (!has_offsets) fail(tensor + " is missing field 'data_offsets'");

    // numel: 0 when any dimension is 0 (whatever the others are); otherwise the product must fit in int64.
    const uint64_t int64_max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    uint64_t numel = 1;
    bool empty = std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end();
    if (empty) {
      numel = 0;
    } else {
      for (int64_t d : info.shape) {
        uint64_t ud = static_cast<uint64_t>(d);
        if (numel > int64_max / ud)
          fail("shape " + shape_string(info.shape) + " of " + tensor + " has too many elements (overflow)");
        numel *= ud;
      }
    }
    const uint64_t size = dtype_size(info.dtype);
    if (numel > std::numeric_limits<uint64_t>::max() / size)
      fail("byte size of " + tensor + " (shape " + shape_string(info.shape) + " x " + dtype_name(info.dtype) +
           ") overflows 64 bits");
    const uint64_t nbytes = numel * size;
    if (info.end - info.begin != nbytes)
      fail(tensor + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
           "] span " + std::to_string(info.end - info.begin) + " bytes but shape " + shape_string(info.shape) +
           " x " + dtype_name(info.dtype) + " needs " + std::to_string(nbytes) + " bytes");
    return info;
  }

  JsonCursor cur_;
  const std::string& path_;
};

// ---------------------------------------------------------------------------------------------------
// File helpers.

std::string errno_text(int err) { return std::string(std::strerror(err)); }

// Reads exactly n bytes at `offset`; false on a short read (end of file), throws on an I/O error.
bool pread_full(int fd, void* dst, size_t n, uint64_t offset, const std::string& path) {
  auto* p = static_cast<unsigned char*>(dst);
  while (n > 0) {
    size_t chunk = std::min<size_t>(n, 1u << 30);
    ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw Error(path, "read failed at offset " + std::to_string(offset) + ": " + errno_text(errno));
    }
    if (got == 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

void write_full(int fd, const void* src, size_t n, const std::string& tmp_path) {
  auto* p = static_cast<const unsigned char*>(src);
  while (n > 0) {
    size_t chunk = std::min<size_t>(n, 1u << 30);
    ssize_t put = ::write(fd, p, chunk);
    if (put < 0) {
      if (errno == EINTR) continue;
      throw Error(tmp_path, "write failed: " + errno_text(errno));
    }
    p += put;
    n -= static_cast<size_t>(put);
  }
}

// Levenshtein distance of the first 64 bytes of a and b (for "did you mean").
size_t edit_distance(const std::string& a_full, const std::string& b_full) {
  const std::string a = a_full.substr(0, 64), b = b_full.substr(0, 64);
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The JSON string literal for s, escaped as serde_json (the official writer) escapes it.
void append_json_string(std::string& out, const std::string& s) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += hex[u >> 4];
          out += hex[u & 15];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace

// ---------------------------------------------------------------------------------------------------

Error::Error(const std::string& path, const std::string& problem)
    : engine::UserError("safetensors: " + path + ": " + problem) {}
Error::Error(const std::string& problem) : engine::UserError("safetensors: " + problem) {}

size_t dtype_size(DType dtype) {
  for (const DTypeRow& row : kDTypes)
    if (row.dtype == dtype) return row.size;
  throw Error("invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

const char* dtype_name(DType dtype) {
  for (const DTypeRow& row : kDTypes)
    if (row.dtype == dtype) return row.name;
  throw Error("invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

DType dtype_from_name(const std::string& name) {
  const DTypeRow* row = find_dtype(name);
  if (!row) throw Error("unknown dtype " + quote(name) + " (known: " + known_dtype_names() + ")");
  return row->dtype;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated by the reader: no overflow, no negative dimension
  return n;
}

// ---------------------------------------------------------------------------------------------------
// Reader

Reader::Reader(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then refused as not a regular file).
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) throw Error(path, "cannot open for reading: " + errno_text(errno));
  try {
    struct stat st;
    if (::fstat(fd_, &st) != 0) throw Error(path, "cannot stat: " + errno_text(errno));
    if (!S_ISREG(st.st_mode)) throw Error(path, "not a regular file");
    const uint64_t file_size = static_cast<uint64_t>(st.st_size);

    // 1. sizes
    if (file_size < 8)
      throw Error(path, "file is " + std::to_string(file_size) +
                            " bytes, shorter than the 8-byte header length (not a safetensors file?)");
    unsigned char len_bytes[8];
    if (!pread_full(fd_, len_bytes, 8, 0, path)) throw Error(path, "file shrank while being opened");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
    if (header_len > kMaxHeaderBytes)
      throw Error(path, "header length " + std::to_string(header_len) + " is larger than the " +
                            std::to_string(kMaxHeaderBytes >> 20) + " MiB limit (not a safetensors file?)");
    if (header_len > file_size - 8)
      throw Error(path, "header length " + std::to_string(header_len) + " exceeds the " +
                            std::to_string(file_size - 8) + " bytes that follow it (truncated file?)");
    std::string header(static_cast<size_t>(header_len), '\0');
    if (!pread_full(fd_, header.data(), header.size(), 8, path))
      throw Error(path, "file shrank while being opened");

    // 2. encoding
    const size_t bad = first_invalid_utf8(reinterpret_cast<const unsigned char*>(header.data()), header.size());
    if (bad != header.size())
      throw Error(path, "header is not valid UTF-8 at byte " + std::to_string(bad) + " of the header");

    // 3. syntax
    {
      JsonCursor syntax(header, path);
      syntax.skip_value(1);
      syntax.skip_ws();
      if (!syntax.at_end()) syntax.syntax_error("unexpected characters after the JSON value");
    }

    // 4. schema
    HeaderParser(header, path).parse(tensors_, metadata_);

    // 5. layout: sorted by (begin, end), ties in header order, the ranges must tile the data buffer.
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t covered = 0;
    const TensorInfo* previous = nullptr;
    for (const TensorInfo& t : tensors_) {
      if (t.begin < covered)
        throw Error(path, "tensor " + quote(t.name) + " data_offsets [" + std::to_string(t.begin) + ", " +
                              std::to_string(t.end) + "] overlap tensor " + quote(previous->name) +
                              ", which ends at " + std::to_string(covered));
      if (t.begin > covered)
        throw Error(path, "hole in the data buffer: bytes [" + std::to_string(covered) + ", " +
                              std::to_string(t.begin) + ") belong to no tensor (tensor " + quote(t.name) +
                              " begins at " + std::to_string(t.begin) + ")");
      covered = t.end;
      previous = &t;
    }
    data_start_ = 8 + header_len;
    const uint64_t data_size = file_size - data_start_;
    if (covered != data_size)
      throw Error(path, "data buffer is " + std::to_string(data_size) + " bytes (file size " +
                            std::to_string(file_size) + " - 8 - header length " + std::to_string(header_len) +
                            ") but the tensors cover " + std::to_string(covered) + " bytes" +
                            (data_size < covered ? " (truncated file?)" : " (trailing bytes)"));

    for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  } catch (...) {
    close_file();
    throw;
  }
}

Reader::~Reader() { close_file(); }

void Reader::close_file() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Reader::Reader(Reader&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      data_start_(other.data_start_),
      tensors_(std::move(other.tensors_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

Reader& Reader::operator=(Reader&& other) noexcept {
  if (this != &other) {
    close_file();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    data_start_ = other.data_start_;
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

bool Reader::contains(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& Reader::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it != index_.end()) return tensors_[it->second];
  // Rank by edit distance; the work is bounded (kMaxSuggestionScan names, 64 bytes each) whatever the file.
  std::vector<std::pair<size_t, const std::string*>> ranked;
  const size_t scanned = std::min(tensors_.size(), kMaxSuggestionScan);
  ranked.reserve(scanned);
  for (size_t i = 0; i < scanned; ++i) ranked.emplace_back(edit_distance(name, tensors_[i].name), &tensors_[i].name);
  const size_t shown = std::min<size_t>(5, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(shown), ranked.end(),
                    [](const auto& a, const auto& b) { return a.first != b.first ? a.first < b.first : *a.second < *b.second; });
  std::string msg = "no tensor named " + quote(name) + " among its " + std::to_string(tensors_.size()) + " tensors";
  for (size_t i = 0; i < shown; ++i) msg += (i == 0 ? "; closest names: " : ", ") + quote(*ranked[i].second);
  if (scanned < tensors_.size()) msg += " (among the first " + std::to_string(scanned) + ")";
  throw Error(path_, msg);
}

void Reader::read(const std::string& name, void* dst, size_t dst_bytes) const {
  const TensorInfo& t = info(name);
  if (dst_bytes != t.nbytes())
    throw Error(path_, "reading tensor " + quote(name) + ": destination has " + std::to_string(dst_bytes) +
                           " bytes but the tensor has " + std::to_string(t.nbytes()) + " (shape " +
                           shape_string(t.shape) + " x " + dtype_name(t.dtype) + ")");
  if (t.nbytes() == 0) return;
  if (dst == nullptr) throw Error(path_, "reading tensor " + quote(name) + ": destination is null");
  if (fd_ < 0) throw Error(path_, "reading tensor " + quote(name) + ": the reader was moved from");
  if (!pread_full(fd_, dst, static_cast<size_t>(t.nbytes()), data_start_ + t.begin, path_))
    throw Error(path_, "unexpected end of file reading tensor " + quote(name) + " (was the file truncated after it was opened?)");
}

std::vector<uint8_t> Reader::read_bytes(const std::string& name) const {
  const TensorInfo& t = info(name);
  std::vector<uint8_t> bytes(static_cast<size_t>(t.nbytes()));
  read(name, bytes.data(), bytes.size());
  return bytes;
}

// ---------------------------------------------------------------------------------------------------
// Writer

void write(const std::string& path, const std::vector<WriteEntry>& entries,
           const std::map<std::string, std::string>& metadata) {
  // Validate everything before touching the disk.
  auto check_utf8 = [&](const std::string& s, const std::string& what) {
    if (first_invalid_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size()) != s.size())
      throw Error(path, what + " is not valid UTF-8");
  };
  std::map<std::string, size_t> seen;
  uint64_t data_size = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const WriteEntry& e = entries[i];
    const std::string tensor = "tensor " + quote(e.name);
    if (e.name.empty()) throw Error(path, "entry " + std::to_string(i) + " has an empty name");
    if (e.name == "__metadata__") throw Error(path, "'__metadata__' is reserved and cannot name a tensor");
    check_utf8(e.name, "the name of entry " + std::to_string(i));
    if (!seen.emplace(e.name, i).second) throw Error(path, "duplicate tensor name " + quote(e.name));
    const size_t size = dtype_size(e.dtype);
    if (e.shape.size() > kMaxRank)
      throw Error(path, tensor + " has more than " + std::to_string(kMaxRank) + " dimensions");
    uint64_t numel = 1;
    bool empty = false;
    for (int64_t d : e.shape) {
      if (d < 0) throw Error(path, tensor + " has a negative dimension in shape " + shape_string(e.shape));
      if (d == 0) empty = true;
    }
    if (empty) {
      numel = 0;
    } else {
      for (int64_t d : e.shape) {
        if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / static_cast<uint64_t>(d))
          throw Error(path, tensor + " shape " + shape_string(e.shape) + " has too many elements (overflow)");
        numel *= static_cast<uint64_t>(d);
      }
    }
    if (numel > std::numeric_limits<uint64_t>::max() / size)
      throw Error(path, tensor + " byte size overflows 64 bits");
    const uint64_t nbytes = numel * size;
    if (nbytes != e.nbytes)
      throw Error(path, tensor + ": nbytes is " + std::to_string(e.nbytes) + " but shape " + shape_string(e.shape) +
                            " x " + dtype_name(e.dtype) + " needs " + std::to_string(nbytes));
    if (nbytes > 0 && e.data == nullptr) throw Error(path, tensor + " has null data");
    if (data_size > std::numeric_limits<uint64_t>::max() - nbytes)
      throw Error(path, "total data size overflows 64 bits");
    data_size += nbytes;
  }
  for (const auto& [key, value] : metadata) {
    check_utf8(key, "__metadata__ key " + quote(key));
    check_utf8(value, "__metadata__ value of key " + quote(key));
  }

  // Data order: larger elements first (so each tensor is aligned to its element size), else as given.
  std::vector<size_t> order(entries.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(entries[a].dtype) > dtype_size(entries[b].dtype);
  });

  // Header: compact JSON, "__metadata__" first (omitted when empty), tensors in data order.
  std::string json = "{";
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) json += ',';
      first = false;
      append_json_string(json, key);
      json += ':';
      append_json_string(json, value);
    }
    json += '}';
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const WriteEntry& e = entries[i];
    if (json.size() > 1) json += ',';
    append_json_string(json, e.name);
    json += ":{\"dtype\":\"";
    json += dtype_name(e.dtype);
    json += "\",\"shape\":[";
    for (size_t k = 0; k < e.shape.size(); ++k) json += (k ? "," : "") + std::to_string(e.shape[k]);
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.nbytes) + "]}";
    offset += e.nbytes;
  }
  json += '}';
  json.append((kHeaderAlignment - json.size() % kHeaderAlignment) % kHeaderAlignment, ' ');
  if (json.size() > kMaxHeaderBytes)
    throw Error(path, "header would be " + std::to_string(json.size()) + " bytes, more than the " +
                          std::to_string(kMaxHeaderBytes >> 20) + " MiB limit readers accept");

  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((static_cast<uint64_t>(json.size()) >> (8 * i)) & 0xff);

  // Write the temporary file, fsync, rename over the destination, fsync the directory.
  const std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(tmp, "cannot create the temporary file: " + errno_text(errno));
  try {
    write_full(fd, prefix.data(), prefix.size(), tmp);
    write_full(fd, json.data(), json.size(), tmp);
    for (size_t i : order)
      if (entries[i].nbytes > 0) write_full(fd, entries[i].data, entries[i].nbytes, tmp);
    if (::fsync(fd) != 0) throw Error(tmp, "fsync failed: " + errno_text(errno));
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) throw Error(tmp, "close failed: " + errno_text(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw Error(path, "cannot rename the temporary file " + tmp + " over it: " + errno_text(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename durable. Best effort: some file systems refuse to fsync a directory.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace engine::safetensors
