"""safetensors in pure numpy: a strict reader and an atomic writer (docs/reference.md section 5).

Layout: 8-byte little-endian header length N, N bytes of JSON
  {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}
then the data buffer (row-major, little-endian). The writer emits what the official library writes:
compact JSON, "__metadata__" first, tensors in the caller's order (ours are all f32, so every tensor is
4-byte aligned), the header padded with spaces to a multiple of 8, written to a temporary file, fsynced and
renamed over the target. The reader validates the header completely (schema, dtype x shape against the
byte ranges, ranges that tile the buffer, file size) and raises SafetensorsError naming the file.
"""
import json
import os
import struct

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"), "U16": np.dtype("<u2"), "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
}
_NUMPY_TO_NAME = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
                  np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16",
                  np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    pass


def read(path, *, to_float32=False):
    """Returns ({name: numpy array}, metadata dict). BF16 is widened to float32; with to_float32 every
    floating tensor is returned as float32."""
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except OSError as e:
        raise SafetensorsError(f"{path}: cannot open: {e.strerror}") from None
    with f:
        def fail(problem):
            raise SafetensorsError(f"{path}: {problem}")

        head = f.read(8)
        if len(head) < 8:
            fail(f"file of {size} bytes is too short for a safetensors header (truncated?)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            fail(f"header length {n} does not fit in a file of {size} bytes (truncated, or not safetensors)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            fail(f"header is not valid JSON: {e}")
        if not isinstance(header, dict):
            fail("header is not a JSON object")
        metadata = header.pop("__metadata__", {}) or {}
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            fail("__metadata__ must map strings to strings")
        data_size = size - 8 - n
        spans = []
        for name, info in header.items():
            if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
                fail(f"tensor '{name}': entry must have exactly dtype, shape and data_offsets")
            dtype = info["dtype"]
            if dtype not in _DTYPES:
                fail(f"tensor '{name}': unsupported dtype '{dtype}' (known: {', '.join(_DTYPES)})")
            shape = info["shape"]
            offsets = info["data_offsets"]
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                fail(f"tensor '{name}': shape must be a list of non-negative integers, got {shape}")
            if (not isinstance(offsets, list) or len(offsets) != 2
                    or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
                fail(f"tensor '{name}': bad data_offsets {offsets}")
            numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if offsets[1] - offsets[0] != numel * _DTYPES[dtype].itemsize:
                fail(f"tensor '{name}': {offsets[1] - offsets[0]} bytes for shape {shape} of {dtype}")
            spans.append((offsets[0], offsets[1], name))
        spans.sort()
        position = 0
        for begin, end, name in spans:
            if begin != position:
                fail(f"tensor '{name}': data starts at {begin}, expected {position} (hole or overlap)")
            position = end
        if position != data_size:
            fail(f"the tensors cover {position} bytes but the file holds {data_size} bytes of data "
                 f"({'truncated' if position > data_size else 'trailing bytes'})")
        buffer = f.read(data_size)
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        array = np.frombuffer(buffer, dtype=dtype, count=(end - begin) // dtype.itemsize,
                              offset=begin).reshape(info["shape"])
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        if to_float32 and array.dtype.kind == "f":
            array = array.astype(np.float32)
        tensors[name] = array.copy()
    return tensors, metadata


def write(path, tensors, metadata=None):
    """Writes {name: numpy array} (in the dict's order) with string metadata, atomically."""
    metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    header = {"__metadata__": metadata} if metadata else {}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        if not name or name == "__metadata__":
            raise SafetensorsError(f"{path}: invalid tensor name '{name}'")
        array = np.ascontiguousarray(array)
        if array.dtype not in _NUMPY_TO_NAME:
            raise SafetensorsError(f"{path}: tensor '{name}' has unsupported dtype {array.dtype}")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NUMPY_TO_NAME[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for blob in blobs:
                f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
