// A strict reader and an atomic writer for the safetensors format, independent of engine::Tensor.
//
// File layout (docs/reference.md section 5):
//   [8 bytes]  N, the header length, unsigned 64-bit little-endian
//   [N bytes]  UTF-8 JSON: {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//              "__metadata__": {"<key>": "<value>", ...}}   (optionally padded at its end with spaces)
//   [rest]     the data buffer; data_offsets are relative to its start; every tensor row-major, little-endian
//
// The reader trusts nothing in the file: it validates the whole header when it is opened (JSON syntax,
// the schema of every entry, dtype x shape against the byte ranges, that the ranges tile the data buffer
// exactly, and that the file size agrees), and every problem is an Error that names the file and what is
// wrong; no input makes it crash, hang, read out of bounds or allocate much more than the header's size.
// Data are read on demand with pread(), so `read` may be called from several threads at once.
//
// The writer validates its entries before it touches the disk, writes "<path>.tmp-<pid>", fsyncs it and
// renames it over <path>: a reader sees either the old file or the complete new one, never a torn file.
// Its output is what the official `safetensors` library writes: compact JSON, "__metadata__" first, tensors
// in data order, the header padded with spaces to a multiple of 8 bytes; tensors with larger elements come
// first (a stable sort by element size, otherwise the caller's order), so every tensor's data are aligned
// to its element size within the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/check.h"

namespace engine::safetensors {

// Every failure of this module, reading or writing. The message starts with "safetensors: <path>: ".
class Error : public engine::UserError {
 public:
  Error(const std::string& path, const std::string& problem);
  // For failures that concern no file (dtype_from_name): "safetensors: <problem>".
  explicit Error(const std::string& problem);
};

// Element types. The 1-byte float8 formats and the unsigned types are accepted and carried as bytes.
enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, U16, U32, U64, F8_E4M3, F8_E5M2 };

size_t dtype_size(DType dtype);          // bytes per element
const char* dtype_name(DType dtype);     // the format's spelling: "F32", "BF16", "BOOL", ...
DType dtype_from_name(const std::string& name);  // throws Error for an unknown name, listing the known ones

// One tensor of a file, as described by the (validated) header.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // [] for a scalar
  uint64_t begin = 0;          // byte range [begin, end) within the data buffer
  uint64_t end = 0;

  int64_t numel() const;  // product of shape (1 for a scalar, 0 when a dimension is 0)
  uint64_t nbytes() const { return end - begin; }
};

class Reader {
 public:
  // Opens `path` and validates its header; throws Error on any problem. Keeps the file open.
  explicit Reader(const std::string& path);
  ~Reader();
  Reader(Reader&& other) noexcept;
  Reader& operator=(Reader&& other) noexcept;
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by data offset
  bool contains(const std::string& name) const;
  // Throws Error for a missing name, suggesting the closest names in the file.
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Copies the tensor's bytes (little-endian, row-major) into dst; dst_bytes must equal info(name).nbytes().
  void read(const std::string& name, void* dst, size_t dst_bytes) const;
  std::vector<uint8_t> read_bytes(const std::string& name) const;

 private:
  void close_file() noexcept;

  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;  // file offset of the data buffer: 8 + header length
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_ (a tree: no hash flooding)
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: `data` points at nbytes = numel(shape) * dtype_size(dtype) bytes, row-major,
// little-endian (the host order on every machine we build for).
struct WriteEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes the entries atomically to `path` (see the file comment). Throws Error, leaving any existing file
// untouched and no temporary file behind, if an entry is invalid (empty or duplicate name,
// "__metadata__" as a name, a negative dimension, nbytes != numel * dtype_size, null data, a name or
// metadata string that is not valid UTF-8) or the file cannot be written.
void write(const std::string& path, const std::vector<WriteEntry>& entries,
           const std::map<std::string, std::string>& metadata = {});

}  // namespace engine::safetensors
