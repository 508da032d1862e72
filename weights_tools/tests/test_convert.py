"""Tests of the converters on synthetic files in the real formats: Keras 2 legacy .h5 (Keras 2 and
Keras 3 spellings, split layer_names, nested models, auto-named layers numbered from any offset and
stored in any order), torchvision state dicts (old and new keys, .pth with weights_only, module.
prefixes), timm (.pth / .safetensors, gammas that must be ones), and every error path that a user can
hit (truncated files, wrong architecture, wrong source, missing or extra tensors).

Run: python -m unittest discover -s weights_tools/tests -t .   (from the repository root)
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from weights_tools import archs, convert, keras_h5, safetensors_io

try:
    import h5py
    HAVE_H5PY = True
except ImportError:
    HAVE_H5PY = False
try:
    import torch
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def random_weights(arch, head, seed=0, flatten_features=None):
    """{our name: array} for a spec, every value distinct enough to catch a mis-mapped tensor."""
    rng = np.random.default_rng(seed)
    out = {}
    for e in archs.spec(arch, head, flatten_features):
        value = rng.standard_normal(e.shape, dtype=np.float32)
        if e.name.endswith("running_var"):
            value = np.abs(value) + 0.5
        out[e.name] = value
    return out


# --- our names -> Keras 2 layer names (the inverse of the converter, written independently) ---------

def keras2_densenet_layer(name):
    prefix, _, leaf = name.rpartition(".")
    fixed = {"features.conv0": "conv1/conv", "features.norm0": "conv1/bn", "features.norm5": "bn",
             "classifier": "fc1000"}
    if prefix in fixed:
        return fixed[prefix], leaf
    m = re.fullmatch(r"features\.denseblock(\d)\.denselayer(\d+)\.(norm1|conv1|norm2|conv2)", prefix)
    if m:
        part = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv"}[m.group(3)]
        return f"conv{int(m.group(1)) + 1}_block{m.group(2)}_{part}", leaf
    m = re.fullmatch(r"features\.transition(\d)\.(norm|conv)", prefix)
    return f"pool{int(m.group(1)) + 1}_{'bn' if m.group(2) == 'norm' else 'conv'}", leaf


def keras2_irv2_layers(first_number=1):
    """{our module prefix: Keras layer} with auto names numbered from first_number in creation order."""
    out = {}
    k = first_number
    for unit in archs.irv2_units():
        if unit.prefix == "conv2d_7b":
            out["conv2d_7b.conv"], out["conv2d_7b.bn"] = "conv_7b", "conv_7b_bn"
        elif unit.has_bias:
            m = re.fullmatch(r"(repeat|repeat_1|repeat_2)\.(\d+)\.conv2d|block8\.conv2d", unit.prefix)
            if unit.prefix == "block8.conv2d":
                out[unit.prefix] = "block8_10_conv"
            else:
                block = {"repeat": "block35", "repeat_1": "block17", "repeat_2": "block8"}[m.group(1)]
                out[unit.prefix] = f"{block}_{int(m.group(2)) + 1}_conv"
        else:
            suffix = "" if k == 0 else f"_{k}"
            out[f"{unit.prefix}.conv"] = f"conv2d{suffix}"
            out[f"{unit.prefix}.bn"] = f"batch_normalization{suffix}"
            k += 1
    out["classif"] = "predictions"
    return out


KINDS = {"running_mean": "moving_mean", "running_var": "moving_variance", "bias": "beta"}


def to_keras_layers(weights, arch, keras3=False, first_number=1, gamma_ones=False):
    """[(layer, [(weight name, array)])] in Keras's layout, from our weights."""
    irv2 = keras2_irv2_layers(first_number) if arch == "inception_resnet_v2" else None
    layers = {}
    for name, value in weights.items():
        if irv2 is not None:
            prefix, _, leaf = name.rpartition(".")
            layer = irv2[prefix]
        else:
            layer, leaf = keras2_densenet_layer(name)
        is_bn = layer.endswith("bn") or layer.startswith("batch_normalization") or "_bn" in layer
        if value.ndim == 4:
            kind, value = "kernel", np.transpose(value, (1, 2, 3, 0))
        elif value.ndim == 2:
            kind, value = "kernel", value.T
        elif is_bn:
            kind = {"weight": "gamma"}.get(leaf, KINDS.get(leaf, leaf))
        else:
            kind = leaf
        if keras3:
            layer = {"conv1/conv": "conv1_conv", "conv1/bn": "conv1_bn", "fc1000": "predictions"}.get(layer, layer)
        layers.setdefault(layer, []).append((kind, np.ascontiguousarray(value)))
    if gamma_ones:
        for layer, items in layers.items():
            if layer.startswith("batch_normalization") or layer == "conv_7b_bn":
                items.insert(0, ("gamma", np.ones_like(items[0][1])))
    order = {"gamma": 0, "beta": 1, "moving_mean": 2, "moving_variance": 3, "kernel": 0, "bias": 1}
    out = []
    for layer, items in layers.items():
        items.sort(key=lambda item: order[item[0]])
        suffix = "" if keras3 else ":0"
        out.append((layer, [(f"{layer}/{kind}{suffix}", value) for kind, value in items]))
    return out


def assert_same(test, got, want):
    test.assertEqual(list(got), [n for n in want if n in got])
    test.assertEqual(set(got), set(want))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


class SpecTest(unittest.TestCase):
    def test_published_parameter_counts(self):
        # Keras's totals (BN statistics included), with and without the 1000-class top.
        published = {"densenet121": (8062504, 7037504), "densenet169": (14307880, 12642880),
                     "densenet201": (20242984, 18321984), "inception_resnet_v2": (55873736, 54336736)}
        for arch, (top, notop) in published.items():
            self.assertEqual(archs.count(archs.spec(arch, "imagenet"))[0], top, arch)
            self.assertEqual(archs.count(archs.spec(arch, "none"))[0], notop, arch)
        self.assertEqual(archs.count(archs.spec("densenet201", "imagenet"))[1], 20013928)  # torchvision's

    @unittest.skipUnless(HAVE_TORCH, "needs torch")
    def test_spec_is_the_reference_state_dict(self):
        import torchvision
        try:
            import timm
        except ImportError:
            timm = None

        def ours(state, drop_gamma):
            return [(k, tuple(v.shape) if v.dim() != 4 else (v.shape[0], v.shape[2], v.shape[3], v.shape[1]))
                    for k, v in state.items() if not k.endswith("num_batches_tracked")
                    and not (drop_gamma and k.endswith("bn.weight"))]
        for arch in ("densenet121", "densenet169", "densenet201"):
            reference = ours(getattr(torchvision.models, arch)().state_dict(), False)
            self.assertEqual(reference, [(e.name, e.shape) for e in archs.spec(arch, "imagenet")], arch)
        if timm is not None:
            reference = ours(timm.create_model("inception_resnet_v2").state_dict(), True)
            self.assertEqual(reference, [(e.name, e.shape) for e in archs.spec("inception_resnet_v2", "imagenet")])


class SafetensorsTest(unittest.TestCase):
    def test_round_trip_and_strictness(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.safetensors")
            tensors = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.ones(3, np.float32)}
            safetensors_io.write(path, tensors, {"arch": "densenet201"})
            got, meta = safetensors_io.read(path)
            self.assertEqual(meta, {"arch": "densenet201"})
            self.assertEqual(list(got), ["b", "a"])
            np.testing.assert_array_equal(got["b"], tensors["b"])
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(int.from_bytes(data[:8], "little") % 8, 0)
            for cut in (4, 20, len(data) - 1):
                with open(path, "wb") as f:
                    f.write(data[:cut])
                with self.assertRaisesRegex(safetensors_io.SafetensorsError, "x.safetensors"):
                    safetensors_io.read(path)
            with open(path, "wb") as f:
                f.write(data + b"\0")
            with self.assertRaisesRegex(safetensors_io.SafetensorsError, "trailing"):
                safetensors_io.read(path)

    @unittest.skipUnless(HAVE_TORCH, "needs torch")
    def test_matches_the_official_library_when_installed(self):
        try:
            from safetensors.numpy import load_file, save_file
        except ImportError:
            self.skipTest("the safetensors package is not installed")
        with tempfile.TemporaryDirectory() as tmp:
            ours = os.path.join(tmp, "ours.safetensors")
            theirs = os.path.join(tmp, "theirs.safetensors")
            tensors = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "v": np.ones(5, np.float32)}
            safetensors_io.write(ours, tensors)
            save_file(tensors, theirs)
            np.testing.assert_array_equal(load_file(ours)["w"], tensors["w"])
            got, _ = safetensors_io.read(theirs)
            np.testing.assert_array_equal(got["v"], tensors["v"])


@unittest.skipUnless(HAVE_H5PY, "needs h5py")
class KerasTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def write(self, name, layers):
        keras_h5.write(self.path(name), layers)
        return self.path(name)

    def test_densenet_with_and_without_top_keras2_and_keras3_names(self):
        for head in ("imagenet", "none"):
            for keras3 in (False, True):
                weights = random_weights("densenet121", head)
                path = self.write("d.h5", to_keras_layers(weights, "densenet121", keras3=keras3))
                got, meta = convert.convert_file("keras-h5", "densenet121", path)
                assert_same(self, got, weights)
                self.assertEqual(meta, {"arch": "densenet121", "source": "keras-h5", "head": head,
                                        "preprocess": "torch", "bn_flavor": "keras", "bn_eps": "1.001e-05",
                                        "bn_momentum": "0.99"})

    def test_head_none_drops_the_top(self):
        weights = random_weights("densenet121", "imagenet")
        path = self.write("d.h5", to_keras_layers(weights, "densenet121"))
        got, meta = convert.convert_file("keras-h5", "densenet121", path, head="none")
        self.assertNotIn("classifier.weight", got)
        self.assertEqual(meta["head"], "none")

    def test_study_model_nested_backbone_with_flatten_head(self):
        weights = random_weights("densenet121", "none", seed=3)
        inner = [w for _, ws in to_keras_layers(weights, "densenet121") for w in ws]
        rng = np.random.default_rng(1)
        kernel = rng.standard_normal((2 * 2 * 1024, 1), dtype=np.float32)
        bias = rng.standard_normal(1, dtype=np.float32)
        layers = [("densenet121", inner), ("flatten", []),
                  ("dense", [("dense/kernel:0", kernel), ("dense/bias:0", bias)])]
        got, meta = convert.convert_file("keras-h5", "densenet121", self.write("s.h5", layers))
        self.assertEqual(meta["head"], "flatten")
        self.assertEqual(meta["preprocess"], "study")
        np.testing.assert_array_equal(got["classifier.weight"], kernel.T)  # NHWC flatten order kept
        weights.update({"classifier.weight": kernel.T, "classifier.bias": bias})
        assert_same(self, got, weights)
        with self.assertRaisesRegex(convert.ConversionError, "head 'imagenet' requested"):
            convert.convert_file("keras-h5", "densenet121", self.path("s.h5"), head="imagenet")

    def test_irv2_auto_names_are_matched_by_creation_order_not_number(self):
        weights = random_weights("inception_resnet_v2", "imagenet", seed=5)
        for first_number in (1, 0, 204):  # Keras 2 files start at _1, Keras 3 at no suffix, later sessions higher
            layers = to_keras_layers(weights, "inception_resnet_v2", first_number=first_number)
            layers.reverse()  # file order is not creation order
            got, meta = convert.convert_file("keras-h5", "inception_resnet_v2", self.write("i.h5", layers))
            assert_same(self, got, weights)
            self.assertEqual(meta["preprocess"], "tf")

    def test_irv2_gamma_must_be_ones(self):
        weights = random_weights("inception_resnet_v2", "none", seed=6)
        layers = to_keras_layers(weights, "inception_resnet_v2", gamma_ones=True)
        got, _ = convert.convert_file("keras-h5", "inception_resnet_v2", self.write("g.h5", layers))
        assert_same(self, got, weights)
        for layer, items in layers:
            if layer == "conv_7b_bn":
                items[0][1][3] = 1.5
        with self.assertRaisesRegex(convert.ConversionError, "conv_7b_bn': gamma is not all ones"):
            convert.convert_file("keras-h5", "inception_resnet_v2", self.write("g.h5", layers))

    def test_split_layer_names_attribute(self):
        weights = random_weights("densenet121", "none")
        layers = to_keras_layers(weights, "densenet121")
        path = self.write("split.h5", layers)
        with h5py.File(path, "a") as f:
            names = f.attrs["layer_names"]
            del f.attrs["layer_names"]
            f.attrs["layer_names0"] = names[:100]
            f.attrs["layer_names1"] = names[100:]
        got, _ = convert.convert_file("keras-h5", "densenet121", path)
        assert_same(self, got, weights)
        self.assertEqual(keras_h5.read_split_attribute(h5py.File(path, "r"), "layer_names"),
                         [n.decode() for n in names])

    def test_wrong_architecture_is_named(self):
        weights = random_weights("densenet121", "imagenet")
        path = self.write("d.h5", to_keras_layers(weights, "densenet121"))
        with self.assertRaises(convert.ConversionError) as error:
            convert.convert_file("keras-h5", "densenet201", path)
        message = str(error.exception)
        self.assertIn("missing 'features.denseblock3.denselayer25.norm1.weight'", message)
        self.assertIn("looks like densenet121", message)
        with self.assertRaisesRegex(convert.ConversionError, "looks like densenet121"):
            convert.convert_file("keras-h5", "inception_resnet_v2", path)

    def test_missing_layer_and_wrong_shape(self):
        weights = random_weights("densenet121", "none")
        layers = [(layer, ws) for layer, ws in to_keras_layers(weights, "densenet121") if layer != "pool3_conv"]
        with self.assertRaisesRegex(convert.ConversionError, "missing 'features.transition2.conv.weight'"):
            convert.convert_file("keras-h5", "densenet121", self.write("m.h5", layers))
        weights["features.norm5.bias"] = weights["features.norm5.bias"][:10]
        with self.assertRaisesRegex(convert.ConversionError,
                                    r"'features.norm5.bias' has shape \(10,\), expected \(1024,\) "
                                    r"\(from Keras layer 'bn' beta\)"):
            convert.convert_file("keras-h5", "densenet121", self.write("w.h5", to_keras_layers(weights, "densenet121")))

    def test_truncated_and_foreign_files(self):
        weights = random_weights("densenet121", "none")
        path = self.write("t.h5", to_keras_layers(weights, "densenet121"))
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        with self.assertRaisesRegex(convert.ConversionError, "truncated or corrupt"):
            convert.convert_file("keras-h5", "densenet121", path)
        with self.assertRaisesRegex(convert.ConversionError, "no such file"):
            convert.convert_file("keras-h5", "densenet121", self.path("absent.h5"))
        with h5py.File(self.path("k3.h5"), "w") as f:  # Keras 3's own .weights.h5 layout
            f.create_group("layers")
        with self.assertRaisesRegex(convert.ConversionError, "Keras 3 '.weights.h5'"):
            convert.convert_file("keras-h5", "densenet121", self.path("k3.h5"))


@unittest.skipUnless(HAVE_TORCH, "needs torch")
class TorchTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    @staticmethod
    def torch_state(weights):
        state = {}
        for name, value in weights.items():
            if value.ndim == 4:
                value = np.transpose(value, (0, 3, 1, 2))
            state[name] = torch.from_numpy(np.ascontiguousarray(value))
            if name.endswith("running_var"):
                state[name.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
        return state

    def test_torchvision_new_and_old_keys(self):
        weights = random_weights("densenet121", "imagenet")
        state = self.torch_state(weights)
        torch.save(state, self.path("new.pth"))
        got, meta = convert.convert_file("torchvision", "densenet121", self.path("new.pth"))
        assert_same(self, got, weights)
        self.assertEqual(meta, {"arch": "densenet121", "source": "torchvision", "head": "imagenet",
                                "preprocess": "torch", "bn_flavor": "torch", "bn_eps": "1e-05",
                                "bn_momentum": "0.1"})
        old = {"module." + re.sub(r"\.(norm|conv)([12])\.", r".\1.\2.", k): v for k, v in state.items()}
        self.assertIn("module.features.denseblock1.denselayer1.norm.1.weight", old)
        torch.save({"state_dict": old}, self.path("old.pth"))
        got, _ = convert.convert_file("torchvision", "densenet121", self.path("old.pth"))
        assert_same(self, got, weights)

    def test_torch_flatten_head_is_reordered_to_nhwc(self):
        weights = random_weights("densenet121", "none")
        c, h, w = 1024, 2, 3
        chw = np.arange(c * h * w, dtype=np.float32).reshape(1, c * h * w)
        weights["classifier.weight"], weights["classifier.bias"] = chw, np.zeros(1, np.float32)
        safetensors_io.write(self.path("f.safetensors"), {
            k: (np.transpose(v, (0, 3, 1, 2)) if v.ndim == 4 else v) for k, v in weights.items()})
        with self.assertRaisesRegex(convert.ConversionError, "--flatten-grid"):
            convert.convert_file("torchvision", "densenet121", self.path("f.safetensors"))
        got, meta = convert.convert_file("torchvision", "densenet121", self.path("f.safetensors"),
                                         flatten_grid=(h, w))
        self.assertEqual(meta["head"], "flatten")
        # element (h=1, w=2, c=5): NHWC index (1*3+2)*1024+5; NCHW index 5*6 + 1*3 + 2
        self.assertEqual(got["classifier.weight"][0, (1 * 3 + 2) * 1024 + 5], 5 * 6 + 1 * 3 + 2)

    def test_timm_pth_and_safetensors(self):
        weights = random_weights("inception_resnet_v2", "imagenet", seed=2)
        state = self.torch_state(weights)
        for name in list(state):
            if name.endswith(".bn.bias"):
                state[name[: -len("bias")] + "weight"] = torch.ones_like(state[name])
        torch.save(state, self.path("t.pth"))
        safetensors_io.write(self.path("t.safetensors"), {k: v.numpy() for k, v in state.items()})
        for file in ("t.pth", "t.safetensors"):
            got, meta = convert.convert_file("timm", "inception_resnet_v2", self.path(file))
            assert_same(self, got, weights)
            self.assertEqual(meta["preprocess"], "tf")
        state["mixed_6a.branch0.bn.weight"][0] = 0.5
        torch.save(state, self.path("bad.pth"))
        with self.assertRaisesRegex(convert.ConversionError, "mixed_6a.branch0.bn.weight': BN gamma is not all ones"):
            convert.convert_file("timm", "inception_resnet_v2", self.path("bad.pth"))

    def test_errors(self):
        weights = random_weights("densenet121", "imagenet")
        torch.save(self.torch_state(weights), self.path("d.pth"))
        with self.assertRaisesRegex(convert.ConversionError, "use torchvision for DenseNet"):
            convert.convert_file("timm", "densenet121", self.path("d.pth"))
        with self.assertRaisesRegex(convert.ConversionError, "looks like densenet121"):
            convert.convert_file("torchvision", "densenet169", self.path("d.pth"))
        with open(self.path("d.pth"), "rb") as f:
            data = f.read()
        with open(self.path("cut.pth"), "wb") as f:
            f.write(data[: len(data) // 3])
        with self.assertRaisesRegex(convert.ConversionError, "truncated or corrupt"):
            convert.convert_file("torchvision", "densenet121", self.path("cut.pth"))
        # weights_only refuses pickled objects that are not tensors
        torch.save({"x": unittest.TestCase}, self.path("evil.pth"))
        with self.assertRaisesRegex(convert.ConversionError, "cannot load"):
            convert.convert_file("torchvision", "densenet121", self.path("evil.pth"))


class MetadataTest(unittest.TestCase):
    def test_batch_norm_of_each_source_and_the_default_names(self):
        for arch, source, eps, momentum in (("densenet201", "keras-h5", "1.001e-05", "0.99"),
                                            ("inception_resnet_v2", "keras-h5", "0.001", "0.99"),
                                            ("densenet201", "torchvision", "1e-05", "0.1"),
                                            ("inception_resnet_v2", "timm", "0.001", "0.1")):
            meta = convert.metadata(arch, source, "none")
            self.assertEqual((meta["bn_eps"], meta["bn_momentum"]), (eps, momentum), (arch, source))
            self.assertEqual(meta["bn_flavor"], "keras" if source == "keras-h5" else "torch")
        self.assertEqual(convert.default_output_name("densenet201", "keras-h5", "none"),
                         "densenet201_keras_notop.safetensors")
        self.assertEqual(convert.default_output_name("inception_resnet_v2", "keras-h5", "none"),
                         "inception_resnet_v2_keras_notop.safetensors")
        self.assertEqual(convert.default_output_name("densenet201", "torchvision", "imagenet"),
                         "densenet201_torchvision.safetensors")
        self.assertEqual(convert.default_output_name("inception_resnet_v2", "timm", "imagenet"),
                         "inception_resnet_v2_timm.safetensors")
        self.assertEqual(convert.default_output_name("densenet201", "keras-h5", "flatten"),
                         "densenet201_keras_flatten.safetensors")


class CommandLineTest(unittest.TestCase):
    @unittest.skipUnless(HAVE_TORCH, "needs torch")
    def test_cli_converts_and_reports_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            weights = random_weights("densenet121", "imagenet")
            state = {k: torch.from_numpy(np.ascontiguousarray(np.transpose(v, (0, 3, 1, 2)) if v.ndim == 4 else v))
                     for k, v in weights.items()}
            torch.save(state, os.path.join(tmp, "d.pth"))
            out = os.path.join(tmp, "d.safetensors")
            command = [sys.executable, "-m", "weights_tools.convert", "--from", "torchvision", "--arch",
                       "densenet121", "--input", os.path.join(tmp, "d.pth"), "--output", out, "--head", "none"]
            run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertIn("head=none", run.stdout)
            got, meta = safetensors_io.read(out)
            self.assertEqual(meta["head"], "none")
            self.assertEqual(len(got), len(archs.spec("densenet121", "none")))
            command[command.index("densenet121")] = "densenet201"
            run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            self.assertEqual(run.returncode, 2)
            self.assertIn("error:", run.stderr)
            self.assertIn("looks like densenet121", run.stderr)
            # Without --output: the default name, beside the input.
            command[command.index("densenet201")] = "densenet121"
            del command[command.index("--output"):command.index("--output") + 2]
            run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            default = os.path.join(tmp, "densenet121_torchvision_notop.safetensors")
            self.assertIn(f"wrote {default}", run.stdout)
            _, meta = safetensors_io.read(default)
            self.assertEqual((meta["bn_flavor"], meta["bn_eps"], meta["bn_momentum"]), ("torch", "1e-05", "0.1"))


if __name__ == "__main__":
    unittest.main()
