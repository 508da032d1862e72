"""Keras legacy HDF5 weight files: a reader and a writer of the layout Keras 2 wrote (docs/reference.md section 4).

The layout (keras 2 `model.save_weights("x.h5")`, and the `model_weights` group of `model.save("x.h5")`):
  root attrs   layer_names  (array of bytes; split into layer_names0, layer_names1, ... when it would
                             exceed HDF5's 64 KB attribute limit), backend, keras_version
  /<layer>     a group per layer, attr weight_names (array of bytes, e.g. b"conv1/conv/kernel:0")
  /<layer>/<weight name>   the datasets, e.g. conv1/conv/conv1/conv/kernel:0 ('/' nests groups)
Keras 3's legacy writer uses variable paths as weight names ("conv1_conv/kernel", no ":0"); a nested
model (a functional model used as a layer) is one layer whose weight names carry the inner layers'
names. The reader handles all of these and returns flat (layer, kind, array) entries: layer is the
innermost layer's name, kind the variable's ("kernel", "bias", "gamma", "beta", "moving_mean",
"moving_variance").
"""
import numpy as np

try:
    import h5py
except ImportError:  # the reader reports it when used
    h5py = None


class KerasFileError(ValueError):
    pass


def _require_h5py():
    if h5py is None:
        raise KerasFileError("reading Keras .h5 files needs h5py: apt-get install python3-h5py "
                             "(or source scripts/lib/python_env.sh and use its python)")


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_split_attribute(group, name):
    """An attribute that Keras may have split into name0, name1, ... (legacy saving)."""
    if name in group.attrs:
        return [_text(v) for v in group.attrs[name]]
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += [_text(v) for v in group.attrs[f"{name}{chunk}"]]
        chunk += 1
    return values if chunk else None


def write_split_attribute(group, name, values, limit=64512):
    """Writes a list of strings as Keras does: one attribute, or name0, name1, ... when it is large."""
    data = np.array([v.encode("utf-8") for v in values])
    if data.nbytes <= limit:
        group.attrs[name] = data
        return
    chunks = max(1, int(np.ceil(data.nbytes / limit)))
    while True:
        parts = np.array_split(data, chunks)
        if all(p.nbytes <= limit for p in parts):
            break
        chunks += 1
    for index, part in enumerate(parts):
        group.attrs[f"{name}{index}"] = part


def _split_weight_name(layer, weight_name):
    """(inner layer, kind) from a weight name such as 'conv1/conv/kernel:0' in layer group `layer`."""
    name = weight_name.split(":")[0]
    parts = name.split("/")
    kind = parts[-1]
    prefix = "/".join(parts[:-1])
    if not prefix or prefix == layer:
        return layer, kind
    if prefix.startswith(layer + "/"):  # Keras 3 paths of a nested model: "<model>/<layer>/<var>"
        prefix = prefix[len(layer) + 1:]
    return prefix, kind


def read(path):
    """Returns (entries, info): entries is a list of (layer, kind, float32 array) in file order; info holds
    the file's backend and keras_version. Raises KerasFileError with a clear message on any problem."""
    _require_h5py()
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise KerasFileError(f"{path}: no such file") from None
    except OSError as e:
        raise KerasFileError(f"{path}: not a readable HDF5 file (truncated or corrupt download?): {e}") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        layer_names = read_split_attribute(root, "layer_names")
        if layer_names is None:
            if "layers" in f and "vars" not in f:
                hint = ("it looks like a Keras 3 '.weights.h5' file; load it in Keras and re-save it in the "
                        "legacy layout (keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group)")
            else:
                hint = "expected a Keras legacy weights file (model.save_weights('x.h5') in Keras 2)"
            raise KerasFileError(f"{path}: no 'layer_names' attribute: {hint}")
        info = {"backend": _text(root.attrs.get("backend", "")),
                "keras_version": _text(root.attrs.get("keras_version", ""))}
        entries = []
        seen = set()
        for layer in layer_names:
            if layer not in root:
                raise KerasFileError(f"{path}: layer '{layer}' is listed in layer_names but has no group "
                                     "(truncated or corrupt file?)")
            group = root[layer]
            weight_names = read_split_attribute(group, "weight_names") or []
            for weight_name in weight_names:
                try:
                    array = np.asarray(group[weight_name], dtype=np.float32)
                except (KeyError, OSError, ValueError) as e:
                    raise KerasFileError(f"{path}: layer '{layer}': cannot read weight '{weight_name}' "
                                         f"(truncated or corrupt file?): {e}") from None
                inner, kind = _split_weight_name(layer, weight_name)
                if (inner, kind) in seen:
                    raise KerasFileError(f"{path}: weight '{kind}' of layer '{inner}' appears twice")
                seen.add((inner, kind))
                entries.append((inner, kind, array))
    return entries, info


def write(path, layers, backend="jax", keras_version=""):
    """Writes [(layer name, [(weight name, array)])] in Keras 2's legacy layout, atomically.
    Weight names are written as given (Keras 2 style: '<layer>/<kind>:0')."""
    _require_h5py()
    import os
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(temporary, "w") as f:
            write_split_attribute(f, "layer_names", [name for name, _ in layers])
            f.attrs["backend"] = backend.encode("utf-8")
            f.attrs["keras_version"] = keras_version.encode("utf-8")
            # Keras 2 creates the groups in name order so that no name is created after one of its
            # prefixes ('conv1/conv' before 'conv1/conv/...'); h5py needs the same care.
            for name, weights in sorted(layers, key=lambda item: item[0]):
                group = f.require_group(name)
                write_split_attribute(group, "weight_names", [w for w, _ in weights])
                for weight_name, array in weights:
                    group.create_dataset(weight_name, data=np.asarray(array))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
