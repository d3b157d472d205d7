"""The built-in fixture model's weights and data, and the numeric checks.

A fixture model is defined by a small JSON spec under ``models/`` (passed in
the plan), by its ``kind``: ``mlp`` (a two-layer MLP with an L2-regularized
hidden layer, batch-norm and dropout in its train graph / ``training=True``
path, and a string lookup through a vocabulary asset), ``my_mul`` (the TF2
guide's example) or ``user`` (a user's own model).  Weights come from numpy with
a fixed seed, so every producer builds the same model in its own format.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .cases import GOLDEN, MANIFEST
from .records import CheckFailed, write_json

DEFAULT_VOCAB = ["hub", "module", "saved", "model", "keras", "layer", "graph", "eager"]
OOV_TOKEN = "<unknown-word>"


class MlpSpec(object):
    """``kind: mlp``: the documents' fixture model in every format."""

    kind = "mlp"

    def __init__(self, spec):
        self.name = spec["name"]
        self.input_dim = int(spec["input_dim"])
        self.hidden = int(spec["hidden"])
        self.output_dim = int(spec["output_dim"])
        self.seed = int(spec["seed"])
        self.l2 = float(spec["l2"])
        self.dropout = float(spec["dropout"])
        self.golden_batch = int(spec.get("golden_batch", 5))
        self.train_batch = int(spec.get("train_batch", 32))
        self.train_steps = int(spec.get("train_steps", 30))
        self.learning_rate = float(spec.get("learning_rate", 0.05))
        self.vocab = list(spec.get("vocab", DEFAULT_VOCAB))
        self.bn_epsilon = 1e-3
        self.bn_momentum = 0.9

    def weights(self):
        rng = np.random.RandomState(self.seed)
        return {
            "w1": (rng.randn(self.input_dim, self.hidden) * 0.5).astype(np.float32),
            "b1": (rng.randn(self.hidden) * 0.1).astype(np.float32),
            "w2": (rng.randn(self.hidden, self.output_dim) * 0.5).astype(np.float32),
            "b2": (rng.randn(self.output_dim) * 0.1).astype(np.float32),
            "gamma": (1.0 + rng.randn(self.hidden) * 0.1).astype(np.float32),
            "beta": (rng.randn(self.hidden) * 0.1).astype(np.float32),
            # one row per vocabulary word plus one out-of-vocabulary bucket
            "embedding": rng.randn(len(self.vocab) + 1, self.output_dim).astype(np.float32),
        }

    def golden_inputs(self):
        rng = np.random.RandomState(self.seed + 1)
        return rng.randn(self.golden_batch, self.input_dim).astype(np.float32)

    def golden_scale(self):
        return np.linspace(0.5, 2.0, self.golden_batch).astype(np.float32)

    def golden_tokens(self):
        words = [self.vocab[i % len(self.vocab)] for i in range(self.golden_batch - 1)]
        return np.array(words + [OOV_TOKEN], dtype=np.bytes_)

    def train_data(self):
        rng = np.random.RandomState(self.seed + 2)
        x = rng.randn(self.train_batch, self.input_dim).astype(np.float32)
        t = rng.randn(self.train_batch, self.output_dim).astype(np.float32)
        return x, t

    def l2_loss(self, w1):
        return self.l2 * float(np.sum(np.square(np.asarray(w1, dtype=np.float64))))

    def write_vocab(self, directory):
        """The vocabulary asset: one word per line (ids follow line order)."""
        path = os.path.join(directory, "vocab.txt")
        with open(path, "w") as fh:
            fh.write("\n".join(self.vocab) + "\n")
        return path


class MyMulSpec(object):
    """``kind: my_mul``: the TF2 SavedModel guide's ``MyMulModel`` and its printed values."""

    kind = "my_mul"

    def __init__(self, spec):
        self.name = spec["name"]
        self.v_init = float(spec.get("v_init", 2.0))
        self.inputs = np.array(spec.get("inputs", [10.0, 20.0]), dtype=np.float32)
        self.expected = np.array(spec.get("expected", [20.0, 40.0]), dtype=np.float32)
        self.expected_loss = float(spec.get("expected_loss", 0.004))


class UserSpec(object):
    """``kind: user``: a model a user points the harness at (a directory or a URL)."""

    kind = "user"

    def __init__(self, spec):
        self.name = spec["name"]
        self.handle = spec["handle"]
        self.format = spec["format"]
        self.inputs = spec.get("inputs")
        self.signature = spec.get("signature")
        self.seed = int(spec.get("seed", 0))
        self.batch = int(spec.get("batch", 2))
        self.train_steps = int(spec.get("train_steps", 5))
        self.learning_rate = float(spec.get("learning_rate", 0.01))


SPECS = {"mlp": MlpSpec, "my_mul": MyMulSpec, "user": UserSpec}


def spec_for(spec):
    """The fixture object for a model definition dict (by its ``kind``)."""
    return SPECS[spec.get("kind", "mlp")](spec)


def write_model_files(directory, manifest, golden):
    """Write golden.npz and then manifest.json: a model without a manifest is unfinished."""
    np.savez(os.path.join(directory, GOLDEN), **golden)
    write_json(os.path.join(directory, MANIFEST), manifest, indent=2, sort_keys=True)


def load_golden(case):
    """Every golden array of the producer: ``x``/``y`` and per-signature inputs/outputs."""
    with np.load(os.path.join(case.model_dir, GOLDEN)) as data:
        return {k: data[k] for k in data.files}


def load_manifest(case):
    with open(os.path.join(case.model_dir, MANIFEST)) as fh:
        return json.load(fh)


def compare(actual, expected, atol, rtol, what):
    """Return (max_abs_err, max_rel_err); raise CheckFailed when outside tolerance."""
    __tracebackhide__ = True
    try:
        actual = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # the library returned something else
        raise CheckFailed("%s: the output is a %s, not numbers like the golden (%s)"
                          % (what, type(actual).__name__, exc))
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise CheckFailed("%s: output shape %s != golden shape %s"
                          % (what, actual.shape, expected.shape))
    diff = np.abs(actual - expected)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(expected), 1e-12)).max()) if diff.size else 0.0
    if not np.allclose(actual, expected, atol=atol, rtol=rtol):
        raise CheckFailed("max_abs_err=%.3g > atol=%.3g (rtol=%.3g) [%s]"
                          % (max_abs, atol, rtol, what))
    return max_abs, max_rel


def check_training(before, after, losses, what, settled=None, every=True):
    """Fine-tuning really trained: every trainable variable changed (``every=False``: at
    least one, for users' models whose loss need not reach all) and the loss went down.

    ``settled`` is ``(loss before, loss after, how it was measured)`` on the training
    batch outside the training steps (``Model.evaluate``: no dropout noise); it decides
    when given. Otherwise ``losses``, the per-step training loss, decides; dropout makes
    single steps noisy, so the means of the first and last fifth are compared.
    """
    __tracebackhide__ = True
    if not before:
        raise CheckFailed("%s: no trainable variables" % what)
    unchanged = [name for name in sorted(before)
                 if np.array_equal(np.asarray(before[name]), np.asarray(after[name]))]
    if unchanged and (every or len(unchanged) == len(before)):
        raise CheckFailed("%s: trainable variables did not change: %s"
                          % (what, ", ".join(unchanged)))
    if settled is None:
        k = max(1, len(losses) // 5)
        first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
        measured = "training loss, mean of the first and last %d steps" % k
    else:
        first, last, measured = float(settled[0]), float(settled[1]), settled[2]
    if not last < first:
        raise CheckFailed("%s: loss did not decrease (%s: %.5g -> %.5g)"
                          % (what, measured, first, last))
    return {"loss_first": first, "loss_last": last, "loss_measured": measured,
            "variables_changed": sorted(set(before) - set(unchanged)), "steps": len(losses)}
