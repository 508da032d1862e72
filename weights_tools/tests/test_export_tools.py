"""Tests of weights_tools.export's own pieces (the export end to end, against the engine's logits in every
framework, is tests/cpu/test_experiment_export.cpp): the layout inverses, reading checkpoints and the
user's mistakes.

Run: python -m unittest discover -s weights_tools/tests -t .   (from the repository root)
"""
import contextlib
import io
import os
import tempfile
import unittest

import numpy as np

from weights_tools import archs, convert, export, export_loader, safetensors_io


def spec_tensors(arch, head, flatten_features=None, seed=0):
    rng = np.random.default_rng(seed)
    return {e.name: rng.standard_normal(e.shape).astype(np.float32)
            for e in archs.spec(arch, head, flatten_features)}


class LayoutInversesTest(unittest.TestCase):
    def test_each_layout_has_its_inverse(self):
        rng = np.random.default_rng(1)
        ohwi = rng.standard_normal((5, 3, 2, 4)).astype(np.float32)
        np.testing.assert_array_equal(convert.oihw_to_ohwi(convert.ohwi_to_oihw(ohwi)), ohwi)
        np.testing.assert_array_equal(convert.hwio_to_ohwi(convert.ohwi_to_hwio(ohwi)), ohwi)
        ours = rng.standard_normal((2, 3 * 2 * 7)).astype(np.float32)  # grid 3x2, 7 channels, NHWC order
        chw = convert.hwc_flatten_to_chw(ours, (3, 2))
        np.testing.assert_array_equal(convert.chw_flatten_to_hwc(chw, (3, 2)), ours)
        # element (h=2, w=1, c=5): ours at (h*W + w)*C + c, PyTorch's at c*H*W + h*W + w
        self.assertEqual(chw[1, 5 * 6 + 2 * 2 + 1], ours[1, (2 * 2 + 1) * 7 + 5])
        with self.assertRaisesRegex(convert.ConversionError, "not a multiple of the grid 4x4"):
            convert.hwc_flatten_to_chw(ours, (4, 4))


class LoaderTest(unittest.TestCase):
    def test_the_standalone_loader_agrees_with_archs(self):
        self.assertEqual(export_loader.FEATURE_CHANNELS, {a: archs.feature_channels(a) for a in archs.ARCHS})
        self.assertEqual(set(export_loader.KERAS_APPLICATIONS), set(archs.ARCHS))
        with self.assertRaisesRegex(RuntimeError, "this is the template"):
            export_loader.load()


class ReadCheckpointTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def write(self, tensors, meta, name="c.safetensors"):
        path = os.path.join(self.tmp.name, name)
        safetensors_io.write(path, tensors, meta)
        return path

    def checkpoint_meta(self, **changes):
        meta = {"format": export.CHECKPOINT_FORMAT, "arch": "densenet121", "head": "flatten", "flavor": "keras",
                "input_size": "64", "preprocess": "study"}
        meta.update(changes)
        return meta

    def test_a_checkpoint_gives_our_tensors_and_its_settings(self):
        channels = archs.feature_channels("densenet121")
        tensors = spec_tensors("densenet121", "flatten", 4 * channels)
        stored = {f"model.{k}": v for k, v in tensors.items()}
        stored["optim.m.classifier.weight"] = np.zeros(3, np.float32)
        ours, settings = export.read_checkpoint(self.write(stored, self.checkpoint_meta()))
        self.assertEqual(set(ours), set(tensors))
        self.assertEqual(settings, {"arch": "densenet121", "head": "flatten", "flavor": "keras", "input_size": 64,
                                    "preprocess": "study", "grid": (2, 2)})

    def test_mistakes_are_named(self):
        tensors = {f"model.{k}": v for k, v in spec_tensors("densenet121", "gap").items()}
        cases = [
            (self.checkpoint_meta(arch="densenet_tiny"), "arch 'densenet_tiny' cannot be exported"),
            (self.checkpoint_meta(head="gap", flavor="other"), "BN flavor 'other'"),
            (self.checkpoint_meta(format="something-else"), "unknown format 'something-else'"),
        ]
        for meta, message in cases:
            with self.subTest(message=message), self.assertRaisesRegex(export.ExportError, message):
                export.read_checkpoint(self.write(tensors, meta))
        incomplete = {k: v for k, v in tensors.items() if k != "model.features.norm5.bias"}
        with self.assertRaisesRegex(export.ExportError, "missing 'features.norm5.bias'"):
            export.read_checkpoint(self.write(incomplete, self.checkpoint_meta(head="gap")))
        path = self.write(tensors, self.checkpoint_meta(head="gap"))
        with self.assertRaisesRegex(export.ExportError, "exports to torchvision, not timm"):
            export.export(path, "timm", os.path.join(self.tmp.name, "x.pt"))
        with self.assertRaisesRegex(export.ExportError, "name the state dict F.pt"):
            export.export(path, "torchvision", os.path.join(self.tmp.name, "x.py"))
        with self.assertRaisesRegex(export.ExportError, "name the Keras weights F.h5"):
            export.export(path, "keras-h5", os.path.join(self.tmp.name, "x.weights.h5"))
        weights = self.write({k[len("model."):]: v for k, v in tensors.items()},
                             {"arch": "densenet121", "head": "gap", "bn_flavor": "torch"}, "w.safetensors")
        with self.assertRaisesRegex(export.ExportError, "needs the input size: give --input-size"):
            export.export(weights, "onnx", os.path.join(self.tmp.name, "x.onnx"))

    def test_the_command_line_reports_a_plain_error(self):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = export.main(["--checkpoint", os.path.join(self.tmp.name, "none.safetensors"), "--to", "onnx",
                                "--output", os.path.join(self.tmp.name, "x.onnx")])
        self.assertEqual(code, 2)
        self.assertIn("error:", stderr.getvalue())
        self.assertIn("none.safetensors", stderr.getvalue())


if __name__ == "__main__":
    unittest.main()
