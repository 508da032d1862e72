"""Tests of the golden-data exporter's machinery (the export itself runs in scripts/golden.sh, and the
C++ parity tests check its output): ReLU inputs kept away from the kink, the segment-by-segment Keras
gradient against the whole model's, the Keras-equal PyTorch model, and the Keras 2 legacy writer's
layout.

Run: python -m unittest discover -s weights_tools/tests -t .   (from the repository root)
"""
import os
import tempfile
import unittest

import numpy as np

try:
    import torch
    import torchvision
    HAVE_TORCH = torchvision is not None
except ImportError:
    HAVE_TORCH = False
try:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras
    HAVE_KERAS = keras.backend.backend() == "jax"
except ImportError:
    HAVE_KERAS = False

from weights_tools import export_golden


@unittest.skipUnless(HAVE_TORCH, "needs torch and torchvision")
class ReluTiesTest(unittest.TestCase):
    def relu_inputs(self, model, x):
        seen = []
        hooks = [m.register_forward_pre_hook(lambda _m, i: seen.append(i[0].detach().double().clone()))
                 for m in model.modules() if isinstance(m, torch.nn.ReLU)]
        model.train()
        with torch.no_grad():
            model(x.double())
        for h in hooks:
            h.remove()
        return seen

    def test_relu_inputs_are_moved_away_from_zero(self):
        torch.manual_seed(0)
        model = export_golden._torch_model("torchvision", "densenet121").double()
        x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
        gap = 2e-2  # large, so that many channels need moving
        before = self.relu_inputs(model, x)
        close = sum(int((v.abs() < gap * v.pow(2).mean().sqrt()).any()) for v in before)
        self.assertGreater(close, 10)
        shifted = export_golden.avoid_relu_ties(model, x, relative_gap=gap)
        self.assertGreater(shifted, 10)
        for v in self.relu_inputs(model, x):
            rms = float(v.pow(2).mean().sqrt())
            # the RMS itself moves with the shifts (much less at the exporter's gap of 1e-4), hence the 0.5
            self.assertGreaterEqual(float(v.abs().min()), 0.5 * gap * rms)

    def test_owner_of_every_relu_is_known(self):
        for framework, arch in (("torchvision", "densenet121"), ("timm", "inception_resnet_v2")):
            try:
                model = export_golden._torch_model(framework, arch)
            except ImportError:
                continue
            for name, module in model.named_modules():
                if isinstance(module, torch.nn.ReLU):
                    owner, factor = export_golden._relu_owner(model, name)
                    self.assertIn(owner, dict(model.named_parameters()), name)
                    self.assertGreater(factor, 0)


@unittest.skipUnless(HAVE_KERAS, "needs keras with the JAX backend")
class SegmentedKerasTrainerTest(unittest.TestCase):
    def test_equals_the_whole_model_gradient(self):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((12, 12, 3))

        def unit(x, filters):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            return keras.layers.Activation("relu")(x)
        a = unit(inputs, 8)
        b = unit(a, 8)
        c = keras.layers.Add()([unit(b, 8), b])
        logits = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(c))
        model = keras.Model(inputs, logits)
        trainer = export_golden.SegmentedKerasTrainer(model, [a, b])
        self.assertEqual(len(trainer.segments), 3)

        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 12, 12, 3)).astype(np.float32)
        y = np.array([1, 0, 1, 0], np.float32)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        loss, updated, grads = trainer.value_and_grad(trainable, non_trainable, x, y)

        def whole(trainable, non_trainable):
            out, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return export_golden._bce_with_logits_mean(out, y), non_trainable
        (loss_ref, updated_ref), grads_ref = jax.value_and_grad(whole, has_aux=True)(trainable, non_trainable)
        self.assertAlmostEqual(float(loss), float(loss_ref), places=6)
        for g, r in zip(grads, grads_ref):
            np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-6)
        for u, r in zip(updated, updated_ref):
            np.testing.assert_allclose(np.asarray(u), np.asarray(r), rtol=1e-5, atol=1e-7)


@unittest.skipUnless(HAVE_KERAS and HAVE_TORCH, "needs keras (JAX) and torch")
class KerasEqualsTorchTest(unittest.TestCase):
    def test_keras2_h5_and_torch_equivalent_of_a_small_densenet(self):
        """Keras DenseNet121 at 32x32 written in the Keras 2 layout, converted, loaded into the equal
        torchvision model: the eval logits agree."""
        from weights_tools import convert, keras_h5
        keras.utils.set_random_seed(5)
        model, base = export_golden._keras_model("densenet121", "imagenet", 32)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "d.h5")
            export_golden._write_keras2_h5(path, "densenet121", model, base)
            import h5py
            with h5py.File(path, "r") as f:
                names = [n.decode() for n in f.attrs["layer_names"]]
                self.assertIn("conv1/conv", names)  # Keras 2's names
                self.assertIn("fc1000", names)
                self.assertEqual([n.decode() for n in f["conv1/conv"].attrs["weight_names"]],
                                 ["conv1/conv/kernel:0"])
            entries, _ = keras_h5.read(path)
            self.assertEqual(len(entries), len(model.weights))
            weights, meta = convert.convert_file("keras-h5", "densenet121", path)
        self.assertEqual(meta["head"], "imagenet")
        x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
        ours = np.asarray(model(x, training=False))
        reference = export_golden.torch_equivalent("densenet121", "imagenet", weights).eval()
        with torch.no_grad():
            theirs = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


if __name__ == "__main__":
    unittest.main()
