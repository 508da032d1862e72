// Tests of the strict safetensors reader and the atomic writer (engine/safetensors.h): round trips, the
// exact bytes of the format, files as the official library writes them, a table of malformed files each
// rejected with its own message, random corruption (only safetensors::Error may come out), atomic writes.
#include "engine/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace st = engine::safetensors;
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

// ---------------------------------------------------------------------------------------------------
// Helpers: a fresh temporary directory per test, files as bytes.

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "safetensors_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> dir_listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A file: the header's length, the header, `data_bytes` bytes of data (a counting pattern).
std::string file_bytes(const std::string& header, size_t data_bytes) {
  std::string s = le64(header.size()) + header;
  for (size_t i = 0; i < data_bytes; ++i) s += static_cast<char>(i * 7 + 1);
  return s;
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string read_raw(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// The message of the safetensors::Error that constructing a Reader on `path` throws ("" if none).
std::string open_error(const std::string& path) {
  try {
    st::Reader reader(path);
  } catch (const st::Error& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------------
// dtypes

TEST(SafetensorsDType, NamesAndSizes) {
  struct Row {
    st::DType dtype;
    const char* name;
    size_t size;
  };
  const Row rows[] = {{st::DType::F64, "F64", 8},   {st::DType::F32, "F32", 4},   {st::DType::F16, "F16", 2},
                      {st::DType::BF16, "BF16", 2}, {st::DType::I64, "I64", 8},   {st::DType::I32, "I32", 4},
                      {st::DType::I16, "I16", 2},   {st::DType::I8, "I8", 1},     {st::DType::U8, "U8", 1},
                      {st::DType::BOOL, "BOOL", 1}, {st::DType::U16, "U16", 2},   {st::DType::U32, "U32", 4},
                      {st::DType::U64, "U64", 8},   {st::DType::F8_E4M3, "F8_E4M3", 1},
                      {st::DType::F8_E5M2, "F8_E5M2", 1}};
  for (const Row& r : rows) {
    EXPECT_EQ(st::dtype_size(r.dtype), r.size) << r.name;
    EXPECT_STREQ(st::dtype_name(r.dtype), r.name);
    EXPECT_EQ(st::dtype_from_name(r.name), r.dtype) << r.name;
  }
  try {
    st::dtype_from_name("f32");
    ADD_FAILURE() << "lower-case f32 accepted";
  } catch (const st::Error& e) {
    EXPECT_THAT(e.what(), StartsWith("safetensors: unknown dtype 'f32'"));
    EXPECT_THAT(e.what(), HasSubstr("BF16"));
  }
}

// ---------------------------------------------------------------------------------------------------
// Round trip

TEST_F(SafetensorsTest, RoundTripsEveryDTypeScalarAndZeroSizeWithMetadata) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<double> uni(-3.0, 3.0);
  std::vector<double> f64(7);
  for (double& v : f64) v = uni(rng);
  std::vector<float> f32(2 * 3 * 5);
  for (float& v : f32) v = static_cast<float>(uni(rng));
  std::vector<uint16_t> f16(5), bf16(3 * 3);  // raw bit patterns
  for (uint16_t& v : f16) v = static_cast<uint16_t>(rng());
  for (uint16_t& v : bf16) v = static_cast<uint16_t>(rng());
  std::vector<int64_t> i64 = {-5, 1ll << 40, 3};
  std::vector<int32_t> i32 = {-7, 11, 2147483647, -2147483647 - 1};
  std::vector<int16_t> i16 = {-3, 300, 7};
  std::vector<int8_t> i8 = {-128, 127, 0, 5, 9};
  std::vector<uint8_t> u8 = {0, 255, 17};
  std::vector<uint8_t> boolean = {1, 0, 1, 1};
  std::vector<float> scalar = {42.5f};
  const float unused = 0.0f;

  std::vector<st::WriteEntry> entries = {
      {"half", st::DType::F16, {5}, f16.data(), f16.size() * 2},
      {"conv.weight", st::DType::F32, {2, 3, 5}, f32.data(), f32.size() * 4},
      {"bytes", st::DType::U8, {3}, u8.data(), 3},
      {"doubles", st::DType::F64, {7}, f64.data(), f64.size() * 8},
      {"empty", st::DType::F32, {3, 0, 2}, nullptr, 0},
      {"brain", st::DType::BF16, {3, 3}, bf16.data(), bf16.size() * 2},
      {"step", st::DType::I64, {3}, i64.data(), i64.size() * 8},
      {"ints", st::DType::I32, {2, 2}, i32.data(), i32.size() * 4},
      {"shorts", st::DType::I16, {3}, i16.data(), i16.size() * 2},
      {"tiny", st::DType::I8, {5}, i8.data(), i8.size()},
      {"mask", st::DType::BOOL, {2, 2}, boolean.data(), boolean.size()},
      {"scalar", st::DType::F32, {}, scalar.data(), 4},
      {"empty_with_pointer", st::DType::I64, {0}, &unused, 0},
      {"n\xc3\xa4me \"with\" \\odd/ chars\n", st::DType::U8, {1}, u8.data(), 1},
  };
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "quotes \" backslash \\ tab \t newline \n bell \x07 unicode \xe2\x82\xac"}};
  const std::string file = path("model.safetensors");
  st::write(file, entries, metadata);
  EXPECT_EQ(dir_listing(), std::vector<std::string>{"model.safetensors"});

  st::Reader reader(file);
  EXPECT_EQ(reader.path(), file);
  EXPECT_EQ(reader.metadata(), metadata);
  ASSERT_EQ(reader.tensors().size(), entries.size());
  // Sorted by offset; the ranges tile the data buffer; each aligned to its element size.
  uint64_t expected_begin = 0;
  for (const st::TensorInfo& t : reader.tensors()) {
    EXPECT_EQ(t.begin, expected_begin) << t.name;
    EXPECT_EQ(t.begin % st::dtype_size(t.dtype), 0u) << t.name;
    expected_begin = t.end;
  }
  const std::vector<std::vector<uint8_t>> expected = {
      as_bytes(f16), as_bytes(f32), as_bytes(u8),   as_bytes(f64), {},         as_bytes(bf16),
      as_bytes(i64), as_bytes(i32), as_bytes(i16), as_bytes(i8),  as_bytes(boolean), as_bytes(scalar),
      {},            {u8[0]}};
  for (size_t i = 0; i < entries.size(); ++i) {
    const st::WriteEntry& e = entries[i];
    SCOPED_TRACE(e.name);
    ASSERT_TRUE(reader.contains(e.name));
    const st::TensorInfo& info = reader.info(e.name);
    EXPECT_EQ(info.name, e.name);
    EXPECT_EQ(info.dtype, e.dtype);
    EXPECT_EQ(info.shape, e.shape);
    EXPECT_EQ(info.nbytes(), e.nbytes);
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    EXPECT_EQ(info.numel(), numel);
    EXPECT_EQ(reader.read_bytes(e.name), expected[i]);
    std::vector<uint8_t> dst(e.nbytes + 1, 0xee);
    reader.read(e.name, dst.data(), e.nbytes);
    EXPECT_TRUE(std::equal(expected[i].begin(), expected[i].end(), dst.begin()));
    EXPECT_EQ(dst.back(), 0xee);  // nothing written past the tensor
  }
  EXPECT_EQ(reader.info("scalar").numel(), 1);
  EXPECT_EQ(reader.info("empty").numel(), 0);
  // The largest elements come first, the caller's order is kept among equal sizes.
  EXPECT_EQ(reader.tensors()[0].name, "doubles");
  EXPECT_EQ(reader.tensors()[1].name, "step");
  EXPECT_EQ(reader.tensors()[2].name, "empty_with_pointer");
  EXPECT_EQ(reader.tensors()[3].name, "conv.weight");

  // A moved reader keeps working.
  st::Reader moved = std::move(reader);
  EXPECT_EQ(moved.read_bytes("ints"), as_bytes(i32));
}

TEST_F(SafetensorsTest, RoundTripsALargerTensorBitExactly) {
  // 1.2 MB of random floats, NaN and infinities included: data are copied byte for byte.
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(301 * 997);
  for (float& v : w) v = normal(rng);
  w[5] = std::numeric_limits<float>::quiet_NaN();
  w[6] = -std::numeric_limits<float>::infinity();
  w[7] = -0.0f;
  const std::string file = path("big.safetensors");
  st::write(file, {{"w", st::DType::F32, {301, 997}, w.data(), w.size() * 4}});
  st::Reader reader(file);
  std::vector<float> back(w.size(), 1e30f);
  reader.read("w", back.data(), back.size() * 4);
  EXPECT_EQ(std::memcmp(back.data(), w.data(), w.size() * 4), 0);
}

TEST_F(SafetensorsTest, WritesAnEmptyFile) {
  st::write(path("empty.safetensors"), {});
  EXPECT_EQ(read_raw(path("empty.safetensors")), le64(8) + "{}      ");
  st::Reader reader(path("empty.safetensors"));
  EXPECT_TRUE(reader.tensors().empty());
  EXPECT_TRUE(reader.metadata().empty());
}

// ---------------------------------------------------------------------------------------------------
// The exact bytes: pins the format.

TEST_F(SafetensorsTest, WritesTheExactBytesOfTheFormat) {
  const std::vector<float> x = {1.0f, -2.0f};
  st::write(path("x.safetensors"), {{"x", st::DType::F32, {2}, x.data(), 8}});
  // 54 bytes of compact JSON padded with 2 spaces to 56 = 0x38; then 1.0f and -2.0f, little-endian.
  const std::string json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";
  const std::string expected = std::string("\x38\0\0\0\0\0\0\0", 8) + json +
                               std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
  EXPECT_EQ(read_raw(path("x.safetensors")), expected);

  // With metadata: "__metadata__" first, keys sorted, JSON escapes as serde_json writes them.
  st::write(path("m.safetensors"), {{"x", st::DType::F32, {2}, x.data(), 8}},
            {{"b", "q\"\\\n\x01/"}, {"a", "1"}});
  const std::string json_m =
      "{\"__metadata__\":{\"a\":\"1\",\"b\":\"q\\\"\\\\\\n\\u0001/\"},"
      "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  ASSERT_EQ(json_m.size() % 8, 4u);  // so four spaces of padding
  EXPECT_EQ(read_raw(path("m.safetensors")), le64(json_m.size() + 4) + json_m + "    " +
                                                 std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8));
}

// ---------------------------------------------------------------------------------------------------
// Interoperability: files exactly as the official library writes them.

TEST_F(SafetensorsTest, ReadsFilesAsTheOfficialLibraryWritesThem) {
  // safetensors.torch.save_file({"a": torch.tensor([[1., 2.], [3., 4.]])}, path): 57 bytes of JSON padded
  // with 7 spaces to 64, then the 16 bytes of data.
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40", 16);
  const std::string official = std::string("\x40\0\0\0\0\0\0\0", 8) +
                               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}       " + data;
  write_raw(path("official.safetensors"), official);
  {
    st::Reader reader(path("official.safetensors"));
    ASSERT_EQ(reader.tensors().size(), 1u);
    const st::TensorInfo& a = reader.info("a");
    EXPECT_EQ(a.dtype, st::DType::F32);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
    std::vector<float> values(4);
    reader.read("a", values.data(), 16);
    EXPECT_EQ(values, (std::vector<float>{1, 2, 3, 4}));
    EXPECT_TRUE(reader.metadata().empty());
  }
  // Our writer produces the same bytes.
  const std::vector<float> values = {1, 2, 3, 4};
  st::write(path("ours.safetensors"), {{"a", st::DType::F32, {2, 2}, values.data(), 16}});
  EXPECT_EQ(read_raw(path("ours.safetensors")), official);

  // As transformers' save_pretrained writes it: metadata {"format": "pt"} first (88 bytes, no padding).
  const std::string hf = std::string("\x58\0\0\0\0\0\0\0", 8) +
                         "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                         "\"data_offsets\":[0,16]}}" + data;
  write_raw(path("hf.safetensors"), hf);
  {
    st::Reader reader(path("hf.safetensors"));
    EXPECT_EQ(reader.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
    EXPECT_EQ(reader.read_bytes("a"), std::vector<uint8_t>(data.begin(), data.end()));
  }
  st::write(path("hf_ours.safetensors"), {{"a", st::DType::F32, {2, 2}, values.data(), 16}}, {{"format", "pt"}});
  EXPECT_EQ(read_raw(path("hf_ours.safetensors")), hf);
}

TEST_F(SafetensorsTest, AcceptsValidVariants) {
  // Older writers: no padding; other writers: pretty-printed JSON, keys in any order, tensors listed out of
  // offset order, zero-size tensors sharing an offset, escapes in names.
  const std::string pretty =
      "{\n\t\"b\" : {\"data_offsets\": [8, 12], \"shape\": [], \"dtype\": \"I32\"},\r\n"
      "  \"z\": {\"dtype\": \"U8\", \"shape\": [0, 4], \"data_offsets\": [8, 8]},\n"
      "  \"\\u00e9t\\u00E9 \\ud83d\\ude00 \\/ \\\"\": {\"dtype\": \"F16\", \"shape\": [2, 1], \"data_offsets\": [4, 8]},\n"
      "  \"__metadata__\": {},\n"
      "  \"a\": {\"dtype\": \"BOOL\", \"shape\": [4], \"data_offsets\": [0, 4]},\n"
      "  \"y\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [12, 12]}\n}\n   ";
  write_raw(path("pretty.safetensors"), file_bytes(pretty, 12));
  st::Reader reader(path("pretty.safetensors"));
  std::vector<std::string> names;
  for (const st::TensorInfo& t : reader.tensors()) names.push_back(t.name);
  const std::string unicode = "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 / \"";
  EXPECT_EQ(names, (std::vector<std::string>{"a", unicode, "z", "b", "y"}));
  EXPECT_EQ(reader.info("b").numel(), 1);
  EXPECT_TRUE(reader.info("b").shape.empty());
  EXPECT_EQ(reader.read_bytes("z").size(), 0u);
  EXPECT_EQ(reader.read_bytes(unicode).size(), 4u);

  // The depth limit counts levels: 64 are fine for the JSON pass (the schema then rejects the array).
  const std::string deep64 = "{\"a\":" + std::string(63, '[') + std::string(63, ']') + "}";
  write_raw(path("deep64.safetensors"), file_bytes(deep64, 0));
  EXPECT_THAT(open_error(path("deep64.safetensors")), HasSubstr("tensor 'a' must be described by an object, not an array"));
}

// ---------------------------------------------------------------------------------------------------
// Malformed files: each rule, each with its own message.

struct Malformed {
  const char* label;
  std::string bytes;
  const char* expected;  // a substring of the message
};

std::vector<Malformed> malformed_files() {
  const std::string a8 = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  auto one = [](const std::string& entry_body) { return "{\"a\":{" + entry_body + "}}"; };
  auto H = [](const std::string& header, size_t data) { return file_bytes(header, data); };
  std::string zeros_1025 = "0";
  for (int i = 0; i < 1024; ++i) zeros_1025 += ",0";
  return {
      // sizes
      {"empty file", "", "file is 0 bytes, shorter than the 8-byte header length"},
      {"5-byte file", std::string("\x02\0\0\0\0", 5), "file is 5 bytes, shorter than the 8-byte header length"},
      {"header length over the cap", le64((100ull << 20) + 1) + "{}", "larger than the 100 MiB limit"},
      {"header length 2^64-1", le64(~0ull) + "{}", "header length 18446744073709551615 is larger than the 100 MiB"},
      {"header length beyond the file", le64(1000) + "{}", "header length 1000 exceeds the 2 bytes that follow it"},
      // encoding
      {"invalid UTF-8 byte", H(std::string("{\"\xff\":{}}"), 0), "header is not valid UTF-8 at byte 2"},
      {"overlong UTF-8", H(std::string("{\"a\xc0\xaf\":{}}"), 0), "header is not valid UTF-8 at byte 3"},
      {"UTF-8 encoded surrogate", H(std::string("{\"\xed\xa0\x80\":{}}"), 0), "not valid UTF-8"},
      {"truncated UTF-8", H(std::string("{}  \xe2\x82"), 0), "header is not valid UTF-8 at byte 4"},
      // syntax
      {"empty header", H("", 0), "header is not valid JSON: unexpected end of header at byte 0"},
      {"truncated JSON", H("{\"a\":{\"dtype\":\"F32\"", 0), "not valid JSON: unexpected end of header"},
      {"unterminated string", H("{\"a", 0), "not valid JSON: unterminated string"},
      {"trailing garbage", H("{} x", 0), "unexpected characters after the JSON value at byte 3"},
      {"NUL padding", H(std::string("{}\0\0\0\0\0\0", 8), 0), "JSON: unexpected characters after the JSON value"},
      {"second value", H("{}{}", 0), "unexpected characters after the JSON value at byte 2"},
      {"missing colon", H("{\"a\" 1}", 0), "expected ':' but found '1'"},
      {"trailing comma", H("{\"__metadata__\":{},}", 0), "expected a string but found '}'"},
      {"bad literal", H("{\"a\":tru}", 0), "unexpected 't'"},
      {"leading zero", H(one("\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]"), 8), "leading zero"},
      {"bare minus", H(one("\"dtype\":\"F32\",\"shape\":[-],\"data_offsets\":[0,8]"), 8), "invalid number"},
      {"dot without digits", H(one("\"dtype\":\"F32\",\"shape\":[2.],\"data_offsets\":[0,8]"), 8), "no digit after '.'"},
      {"invalid escape", H("{\"a\\x\":{}}", 0), "invalid escape: backslash followed by 'x'"},
      {"lone low surrogate", H("{\"\\udc00\":{}}", 0), "unpaired low surrogate"},
      {"high surrogate alone", H("{\"\\ud800x\":{}}", 0), "high surrogate in a \\u escape not followed by a low"},
      {"high surrogate + non-low", H("{\"\\ud800\\u0041\":{}}", 0), "not followed by a low surrogate"},
      {"short \\u escape", H("{\"\\u12\":{}}", 0), "invalid hex digit in a \\u escape"},
      {"control character", H("{\"a\tb\":{}}", 0), "unescaped control character in a string"},
      {"nesting 65 deep", H("{\"a\":" + std::string(64, '[') + std::string(64, ']') + "}", 0),
       "nesting deeper than 64 levels"},
      // schema: top level
      {"top level array", H("[]", 0), "the header must be a JSON object at the top level, not an array"},
      {"top level string", H("\"hello\"", 0), "at the top level, not a string"},
      {"duplicate tensor", H("{" + a8 + "," + a8 + "}", 8), "duplicate tensor name 'a'"},
      {"duplicate __metadata__", H("{\"__metadata__\":{},\"__metadata__\":{}}", 0), "duplicate key '__metadata__'"},
      // schema: entries
      {"entry not an object", H("{\"a\":1}", 0), "tensor 'a' must be described by an object, not a number"},
      {"duplicate dtype field", H(one("\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"), 8),
       "duplicate field 'dtype' in tensor 'a'"},
      {"duplicate shape field", H(one("\"dtype\":\"F32\",\"shape\":[2],\"shape\":[2],\"data_offsets\":[0,8]"), 8),
       "duplicate field 'shape' in tensor 'a'"},
      {"duplicate data_offsets", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"data_offsets\":[0,8]"), 8),
       "duplicate field 'data_offsets' in tensor 'a'"},
      {"missing dtype", H(one("\"shape\":[2],\"data_offsets\":[0,8]"), 8), "tensor 'a' is missing field 'dtype'"},
      {"missing shape", H(one("\"dtype\":\"F32\",\"data_offsets\":[0,8]"), 8), "tensor 'a' is missing field 'shape'"},
      {"missing data_offsets", H(one("\"dtype\":\"F32\",\"shape\":[2]"), 8), "tensor 'a' is missing field 'data_offsets'"},
      {"extra field", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"offsets\":[0,8]"), 8),
       "tensor 'a' has unexpected field 'offsets'"},
      {"unknown dtype", H(one("\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]"), 8), "tensor 'a' has unknown dtype 'F128'"},
      {"lower-case dtype", H(one("\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]"), 8), "unknown dtype 'f32'"},
      {"dtype not a string", H(one("\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]"), 8),
       "dtype of tensor 'a' must be a string, not a number"},
      {"shape not an array", H(one("\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]"), 8),
       "shape of tensor 'a' must be an array of non-negative integers, not a string"},
      {"negative dimension", H(one("\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]"), 8),
       "each dimension in the shape of tensor 'a' must be a non-negative integer, not -2"},
      {"float dimension", H(one("\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]"), 8), "non-negative integer, not 2.0"},
      {"exponent dimension", H(one("\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]"), 8), "non-negative integer, not 2e0"},
      {"string dimension", H(one("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), 8), "non-negative integer, not a string"},
      {"nested shape", H(one("\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]"), 8), "non-negative integer, not an array"},
      {"dimension over int64", H(one("\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,8]"), 8),
       "9223372036854775808 is too large (the maximum is 9223372036854775807)"},
      {"dimension over uint64", H(one("\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]"), 8),
       "99999999999999999999 is too large"},
      {"numel overflow", H(one("\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]"), 8),
       "shape [4294967296, 4294967296] of tensor 'a' has too many elements (overflow)"},
      {"byte size overflow", H(one("\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]"), 8),
       "byte size of tensor 'a' (shape [2305843009213693952] x F64) overflows 64 bits"},
      {"rank over 1024", H(one("\"dtype\":\"U8\",\"shape\":[" + zeros_1025 + "],\"data_offsets\":[0,0]"), 0),
       "shape of tensor 'a' has more than 1024 dimensions"},
      {"offsets not an array", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}"), 8),
       "data_offsets of tensor 'a' must be an array [begin, end], not an object"},
      {"one offset", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]"), 8),
       "data_offsets of tensor 'a' must have exactly 2 entries [begin, end], not 1"},
      {"three offsets", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]"), 8), "exactly 2 entries [begin, end], not more"},
      {"begin after end", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]"), 8),
       "data_offsets of tensor 'a': begin 8 is greater than end 0"},
      {"negative offset", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]"), 8),
       "each entry of data_offsets of tensor 'a' must be a non-negative integer, not -8"},
      {"float offset", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]"), 8), "non-negative integer, not 8.0"},
      {"offset over uint64", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551616]"), 8),
       "18446744073709551616 is too large (the maximum is 18446744073709551615)"},
      {"size disagrees with shape", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]"), 12),
       "tensor 'a': data_offsets [0, 12] span 12 bytes but shape [2] x F32 needs 8 bytes"},
      {"zero-size with bytes", H(one("\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,8]"), 8),
       "span 8 bytes but shape [2, 0] x F32 needs 0 bytes"},
      // layout
      {"overlap", H("{" + a8 + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12),
       "tensor 'b' data_offsets [4, 12] overlap tensor 'a', which ends at 8"},
      {"zero-size inside another", H("{" + a8 + ",\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8),
       "tensor 'z' data_offsets [4, 4] overlap tensor 'a'"},
      {"same range twice", H("{" + a8 + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
       "data_offsets [0, 8] overlap tensor"},
      {"hole", H("{" + a8 + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20),
       "hole in the data buffer: bytes [8, 12) belong to no tensor (tensor 'b' begins at 12)"},
      {"hole at the start", H(one("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]"), 12),
       "hole in the data buffer: bytes [0, 4)"},
      {"trailing data", H("{" + a8 + "}", 9), "data buffer is 9 bytes (file size 71 - 8 - header length 54) but the tensors cover 8 bytes (trailing bytes)"},
      {"truncated data", H("{" + a8 + "}", 7), "data buffer is 7 bytes (file size 69 - 8 - header length 54) but the tensors cover 8 bytes (truncated file?)"},
      {"no tensors but data", H("{}", 4), "data buffer is 4 bytes"},
      // metadata
      {"metadata not an object", H("{\"__metadata__\":[\"a\"]}", 0), "__metadata__ must be an object of string values, not an array"},
      {"metadata value a number", H("{\"__metadata__\":{\"k\":1}}", 0), "__metadata__ value of key 'k' must be a string, not a number"},
      {"metadata value nested", H("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0), "__metadata__ value of key 'k' must be a string, not an object"},
      {"metadata value null", H("{\"__metadata__\":{\"k\":null}}", 0), "must be a string, not null"},
      {"duplicate metadata key", H("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0), "duplicate key 'k' in __metadata__"},
  };
}

TEST_F(SafetensorsTest, RejectsEveryKindOfMalformedFileWithItsOwnMessage) {
  const std::vector<Malformed> cases = malformed_files();
  ASSERT_GE(cases.size(), 20u);
  std::set<std::string> expectations;
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_TRUE(expectations.insert(c.expected).second) << "two cases share the expected message";
    const std::string file = path(std::string("bad ") + c.label + ".safetensors");
    write_raw(file, c.bytes);
    const std::string message = open_error(file);
    ASSERT_FALSE(message.empty()) << "accepted";
    EXPECT_THAT(message, StartsWith("safetensors: " + file + ": "));
    EXPECT_THAT(message, HasSubstr(c.expected));
  }
}

TEST_F(SafetensorsTest, RejectsFilesThatAreNotThere) {
  EXPECT_THAT(open_error(path("missing.safetensors")),
              HasSubstr("missing.safetensors: cannot open for reading: No such file or directory"));
  EXPECT_THAT(open_error(dir_.string()), HasSubstr(": not a regular file"));
  // A FIFO is refused at once (opening it must not wait for a writer).
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  EXPECT_THAT(open_error(path("fifo")), HasSubstr("fifo: not a regular file"));
}

// ---------------------------------------------------------------------------------------------------
// Reader API errors

TEST_F(SafetensorsTest, NamesMissingTensorsAndWrongDestinationSizes) {
  const std::vector<float> w(6, 1.5f), b(3, 0.5f);
  const std::string file = path("m.safetensors");
  st::write(file, {{"conv1.weight", st::DType::F32, {3, 2}, w.data(), 24},
                   {"conv1.bias", st::DType::F32, {3}, b.data(), 12},
                   {"fc.weight", st::DType::F32, {6}, w.data(), 24}});
  st::Reader reader(file);
  EXPECT_FALSE(reader.contains("conv1.weigth"));
  try {
    reader.info("conv1.weigth");
    ADD_FAILURE() << "no error";
  } catch (const st::Error& e) {
    EXPECT_THAT(e.what(), StartsWith("safetensors: " + file + ": no tensor named 'conv1.weigth' among its 3 tensors"));
    EXPECT_THAT(e.what(), HasSubstr("closest names: 'conv1.weight', 'conv1.bias', 'fc.weight'"));
  }
  EXPECT_THROW(reader.read_bytes("nope"), st::Error);
  std::vector<float> dst(6);
  try {
    reader.read("conv1.weight", dst.data(), 20);
    ADD_FAILURE() << "no error";
  } catch (const st::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("reading tensor 'conv1.weight': destination has 20 bytes but the tensor has 24 "
                                    "(shape [3, 2] x F32)"));
  }
  EXPECT_THROW(reader.read("conv1.weight", nullptr, 24), st::Error);
}

TEST_F(SafetensorsTest, ReportsAFileTruncatedAfterOpening) {
  const std::vector<float> w(64, 2.0f);
  const std::string file = path("t.safetensors");
  st::write(file, {{"w", st::DType::F32, {64}, w.data(), 256}});
  st::Reader reader(file);
  ASSERT_EQ(::truncate(file.c_str(), 100), 0);
  std::vector<float> dst(64);
  try {
    reader.read("w", dst.data(), 256);
    ADD_FAILURE() << "no error";
  } catch (const st::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unexpected end of file reading tensor 'w'"));
  }
}

// ---------------------------------------------------------------------------------------------------
// Random corruption: flipped bytes, truncations, insertions, altered lengths. Only safetensors::Error may
// escape; what is accepted must still read back within bounds.

TEST_F(SafetensorsTest, CorruptedFilesThrowOnlySafetensorsErrors) {
  const std::vector<float> f32 = {1, 2, 3, 4, 5, 6};
  const int64_t step = 7;
  const uint16_t half[3] = {0x3c00, 0x4000, 0x4200};
  const std::string base_path = path("base.safetensors");
  st::write(base_path,
            {{"layer.weight", st::DType::F32, {2, 3}, f32.data(), 24},
             {"step", st::DType::I64, {}, &step, 8},
             {"h", st::DType::F16, {3}, half, 6},
             {"none", st::DType::U8, {0, 5}, nullptr, 0}},
            {{"format", "engine"}, {"epoch", "3"}});
  const std::string base = read_raw(base_path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(base[i]);
  ASSERT_LT(header_len + 8, base.size());

  std::mt19937 rng(20240611);
  const std::string interesting = "{}[]\",:-0123456789.eE \\u\x00\xff\x80";
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    // A new file each time (rewriting one file in place makes ext4 flush it: slow).
    const std::string file = path("fuzz" + std::to_string(iter) + ".safetensors");
    std::string bytes = base;
    switch (iter % 6) {
      case 0:  // flip bits in the header
        for (int k = 0, n = 1 + static_cast<int>(pick(3)); k < n; ++k)
          bytes[8 + pick(header_len)] ^= static_cast<char>(1 << pick(8));
        break;
      case 1:  // a syntax character somewhere in the header
        bytes[8 + pick(header_len)] = interesting[pick(interesting.size())];
        break;
      case 2:  // truncate anywhere
        bytes.resize(pick(bytes.size()));
        break;
      case 3:  // insert or delete a byte in the header
        if (rng() % 2)
          bytes.insert(8 + pick(header_len), 1, interesting[pick(interesting.size())]);
        else
          bytes.erase(8 + pick(header_len), 1);
        break;
      case 4:  // a different header length
        bytes.replace(0, 8, le64(rng() % 4 == 0 ? (static_cast<uint64_t>(rng()) << 32 | rng())
                                                : header_len + pick(17) - 8));
        break;
      default:  // any byte anywhere, data included
        bytes[pick(bytes.size())] = static_cast<char>(rng());
        break;
    }
    write_raw(file, bytes);
    try {
      st::Reader reader(file);
      uint64_t total = 0;
      for (const st::TensorInfo& t : reader.tensors()) total += reader.read_bytes(t.name).size();
      EXPECT_LE(total, bytes.size());
      ++accepted;
    } catch (const st::Error& e) {
      EXPECT_THAT(e.what(), StartsWith("safetensors: " + file + ": ")) << "iteration " << iter;
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << ": foreign exception " << e.what();
    }
    fs::remove(file);
  }
  // Both outcomes occur: data-only changes are accepted, most header changes are not.
  EXPECT_GT(accepted, 50);
  EXPECT_GT(rejected, 1000);
}

// ---------------------------------------------------------------------------------------------------
// Atomic writes

TEST_F(SafetensorsTest, FailedWriteKeepsTheOldFileAndLeavesNoTemporary) {
  const std::vector<float> old_values = {1, 2, 3};
  const std::string file = path("ckpt.safetensors");
  st::write(file, {{"w", st::DType::F32, {3}, old_values.data(), 12}});
  const std::string old_bytes = read_raw(file);

  const std::vector<float> v(4, 9.0f);
  struct BadWrite {
    std::vector<st::WriteEntry> entries;
    std::map<std::string, std::string> metadata;
    const char* expected;
  };
  const std::vector<BadWrite> bad = {
      {{{"w", st::DType::F32, {4}, v.data(), 12}}, {}, "tensor 'w': nbytes is 12 but shape [4] x F32 needs 16"},
      {{{"w", st::DType::F32, {2}, v.data(), 8}, {"w", st::DType::F32, {2}, v.data(), 8}}, {}, "duplicate tensor name 'w'"},
      {{{"__metadata__", st::DType::F32, {2}, v.data(), 8}}, {}, "'__metadata__' is reserved"},
      {{{"", st::DType::F32, {2}, v.data(), 8}}, {}, "entry 0 has an empty name"},
      {{{"w", st::DType::F32, {2, -2}, v.data(), 16}}, {}, "tensor 'w' has a negative dimension in shape [2, -2]"},
      {{{"w", st::DType::F32, {4}, nullptr, 16}}, {}, "tensor 'w' has null data"},
      {{{"w", st::DType::U8, {1ll << 62, 4}, v.data(), 16}}, {}, "has too many elements (overflow)"},
      {{{"bad\xff", st::DType::F32, {2}, v.data(), 8}}, {}, "the name of entry 0 is not valid UTF-8"},
      {{{"w", st::DType::F32, {2}, v.data(), 8}}, {{"k", "\xc3"}}, "__metadata__ value of key 'k' is not valid UTF-8"},
  };
  for (const BadWrite& b : bad) {
    SCOPED_TRACE(b.expected);
    try {
      st::write(file, b.entries, b.metadata);
      ADD_FAILURE() << "no error";
    } catch (const st::Error& e) {
      EXPECT_THAT(e.what(), StartsWith("safetensors: " + file + ": "));
      EXPECT_THAT(e.what(), HasSubstr(b.expected));
    }
    EXPECT_EQ(read_raw(file), old_bytes);
    EXPECT_EQ(dir_listing(), std::vector<std::string>{"ckpt.safetensors"});
  }

  // A successful write replaces the file and leaves no temporary.
  st::write(file, {{"w", st::DType::F32, {4}, v.data(), 16}});
  EXPECT_EQ(dir_listing(), std::vector<std::string>{"ckpt.safetensors"});
  std::vector<float> back(4);
  st::Reader(file).read("w", back.data(), 16);
  EXPECT_EQ(back, v);
}

TEST_F(SafetensorsTest, FailedRenameRemovesTheTemporary) {
  // The destination is a directory: the temporary is written, the rename fails, the temporary goes.
  ASSERT_TRUE(fs::create_directory(path("taken")));
  const std::vector<float> v = {1, 2};
  try {
    st::write(path("taken"), {{"w", st::DType::F32, {2}, v.data(), 8}});
    ADD_FAILURE() << "no error";
  } catch (const st::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot rename the temporary file " + path("taken") + ".tmp-" +
                                    std::to_string(::getpid())));
  }
  EXPECT_EQ(dir_listing(), std::vector<std::string>{"taken"});

  // A directory that does not exist: nothing is created.
  try {
    st::write(path("no/such/dir/x.safetensors"), {{"w", st::DType::F32, {2}, v.data(), 8}});
    ADD_FAILURE() << "no error";
  } catch (const st::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot create the temporary file: No such file or directory"));
  }
  EXPECT_EQ(dir_listing(), std::vector<std::string>{"taken"});
}

}  // namespace
