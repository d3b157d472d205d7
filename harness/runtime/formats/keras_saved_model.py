"""A Keras model saved as a SavedModel: the TF2 guide's "Saving from Keras".

The guide: ``tf.keras.Model.save()`` writes a SavedModel by default from TF2 on;
to share a whole model save it with ``include_optimizer=False``; to share a piece
make the piece its own ``Model`` (before training, ``piece_to_share.save(...)``)
or cut it out afterwards with ``get_layer(...).get_output_at(0)``.  Each way is a
create variant, attempted in every mode; whatever ``Model.save`` does there (Keras
3 refuses a directory, TF 1.x defaults to HDF5) is recorded as it happens.

The model is the fixture MLP as Keras layers: ``Dense(relu, l2)`` -> ``Dropout``
-> ``Dense``.  Goldens are the Keras model's own outputs, ``y = model(x,
training=False)``; the serving signature Keras writes is read back from
``saved_model.pb`` (its argument and output names only) and its goldens are the
same ``x`` and ``y``.  The models are consumed by the shared SavedModel variants.
"""
from __future__ import annotations

import os

import numpy as np

from ..cases import Variant
from ..records import HarnessFault
from . import _reusable
from ._common import evaluate, fresh_graph, keras_session, prepare_dir
from ._reusable import EVERY, sig_key

FORMAT = "keras_saved_model"
# the piece models' layer names (the guide cuts by name)
INPUT, HIDDEN, DROPOUT, LOGITS, HEAD = "features", "hidden", "dropout", "logits", "head"
# Model.fit steps of the full model before its piece is shared
FIT_EPOCHS = 5


# ---- the fixture MLP as Keras layers ---------------------------------------------------

def _mlp_layers(ctx, input_shape=False):
    """``Dense(hidden, relu, kernel_regularizer=l2)``, ``Dropout``, ``Dense(output_dim)``."""
    tf, spec = ctx.tf, ctx.spec
    first = {"input_shape": (spec.input_dim,)} if input_shape else {}
    return [
        tf.keras.layers.Dense(spec.hidden, activation="relu", name=HIDDEN,
                              kernel_regularizer=tf.keras.regularizers.l2(spec.l2), **first),
        tf.keras.layers.Dropout(spec.dropout, name=DROPOUT),
        tf.keras.layers.Dense(spec.output_dim, name=LOGITS),
    ]


def _set_weights(ctx, layers):
    """The spec's numpy weights (``w1, b1``, ``w2, b2``) into the built Dense layers."""
    w = ctx.spec.weights()
    layers[0].set_weights([w["w1"], w["b1"]])
    layers[2].set_weights([w["w2"], w["b2"]])


def _functional_mlp(ctx):
    """``Input`` -> the MLP layers, weights set: (input tensor, output tensor)."""
    tf, spec = ctx.tf, ctx.spec
    layers = _mlp_layers(ctx)
    inp = tf.keras.Input(shape=(spec.input_dim,), name=INPUT)
    out = inp
    for layer in layers:
        out = layer(out)
    _set_weights(ctx, layers)
    return inp, out


def _compile(ctx, model):
    model.compile(optimizer=ctx.tf.keras.optimizers.SGD(ctx.spec.learning_rate), loss="mse")


def _fit(ctx, model):
    """``full_model.fit(...)`` a few steps on the spec's data with a 1-d target."""
    x, t = ctx.spec.train_data()
    _compile(ctx, model)
    history = model.fit(x, t[:, :1], epochs=FIT_EPOCHS, batch_size=len(x), verbose=0,
                        shuffle=False)
    return history.history["loss"]


# ---- goldens ---------------------------------------------------------------------------

def _outputs(ctx, model, x):
    """``model(x, training=False)`` as numpy: the Keras session in graph modes."""
    y = model(ctx.tf.constant(x), training=False)
    if not ctx.rt.graph_mode:
        return evaluate(ctx, y)
    sess = keras_session(ctx)
    if sess is None:  # a fresh session would re-initialize the weights: no true goldens
        raise HarnessFault("Keras keeps no session in this graph mode (Keras 3): the saved "
                           "model's outputs cannot be read")
    return sess.run(y)


def _serving_signatures(ctx):
    """{name: (input args, output keys)} of the SavedModel that ``Model.save`` wrote."""
    from tensorflow.core.protobuf import saved_model_pb2
    path = os.path.join(ctx.handle, "saved_model.pb")
    ctx.expect(os.path.isfile(path), "Model.save wrote no SavedModel at %s: %s"
               % (ctx.handle, _what_was_written(ctx.handle)))
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as fh:
        proto.ParseFromString(fh.read())
    found = {}
    for meta_graph in proto.meta_graphs:
        for name, sig in meta_graph.signature_def.items():
            if not name.startswith("__"):
                found[name] = (sorted(sig.inputs), sorted(sig.outputs))
    return found


def _what_was_written(path):
    """What ``Model.save`` left at ``path`` instead of a SavedModel directory."""
    if os.path.isdir(path):
        return "a directory holding %s" % sorted(os.listdir(path))
    if not os.path.exists(path):
        return "nothing"
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file (save_format defaults to 'h5' without TF2 behavior)"
    return "a %d-byte file" % os.path.getsize(path)


def _golden(ctx, x, y):
    """``x``/``y`` plus ``sig::<name>::in/out::<key>`` for each one-in, one-out signature."""
    golden = {"x": x, "y": np.asarray(y)}
    sigs = _serving_signatures(ctx)
    ctx.expect("serving_default" in sigs, "no serving_default signature: %s" % sorted(sigs))
    for name, (args, keys) in sorted(sigs.items()):
        ctx.expect(len(args) == 1 and len(keys) == 1,
                   "signature %s takes %s and returns %s: expected one input, one output"
                   % (name, args, keys))
        golden[sig_key(name, "in", args[0])] = x
        golden[sig_key(name, "out", keys[0])] = golden["y"]
    return golden, sigs


def _saved(ctx, model, x, **details):
    """Goldens of ``model`` (saved already) and the manifest extras."""
    with ctx.under_test():
        y = _outputs(ctx, model, x)
    golden, sigs = _golden(ctx, x, y)
    return {"golden": golden,
            "details": dict(details, signatures={k: list(v) for k, v in sigs.items()}),
            "manifest": {"signatures": sorted(sigs),
                         "call": {"inputs": [None, ctx.spec.input_dim],
                                  "training": [True, False]}}}


# ---- create ----------------------------------------------------------------------------

def model_save(ctx):
    """A full compiled Keras model: ``model.save(path, include_optimizer=False)``."""
    tf, spec = ctx.tf, ctx.spec
    prepare_dir(ctx.case.model_dir)
    with fresh_graph(ctx):
        with ctx.under_test():  # the guide's Keras code
            layers = _mlp_layers(ctx, input_shape=True)
            model = tf.keras.Sequential(layers)
            _set_weights(ctx, layers)
            _compile(ctx, model)
            model.save(ctx.handle, include_optimizer=False)
        return _saved(ctx, model, spec.golden_inputs())


def piece_save(ctx):
    """``full_model = tf.keras.Sequential([piece_to_share, ...]); full_model.fit(...);
    piece_to_share.save(path, include_optimizer=False)``."""
    tf, spec = ctx.tf, ctx.spec
    prepare_dir(ctx.case.model_dir)
    with fresh_graph(ctx):
        with ctx.under_test():
            piece = tf.keras.Model(*_functional_mlp(ctx))
            full = tf.keras.Sequential([piece, tf.keras.layers.Dense(1, name=HEAD)])
            losses = _fit(ctx, full)
            piece.save(ctx.handle, include_optimizer=False)
        return _saved(ctx, piece, spec.golden_inputs(), fit_loss=[float(v) for v in losses])


def cut_save(ctx):
    """Cut the piece out of a trained functional model with ``get_layer(...).get_output_at(0)``,
    then ``piece_to_share.save(path, include_optimizer=False)``."""
    tf, spec = ctx.tf, ctx.spec
    prepare_dir(ctx.case.model_dir)
    with fresh_graph(ctx):
        with ctx.under_test():
            inp, out = _functional_mlp(ctx)
            full_model = tf.keras.Model(inp, tf.keras.layers.Dense(1, name=HEAD)(out))
            losses = _fit(ctx, full_model)
            sharing_input = full_model.get_layer(INPUT).get_output_at(0)
            sharing_output = full_model.get_layer(LOGITS).get_output_at(0)
            piece_to_share = tf.keras.Model(sharing_input, sharing_output)
            piece_to_share.save(ctx.handle, include_optimizer=False)
        return _saved(ctx, piece_to_share, spec.golden_inputs(),
                      fit_loss=[float(v) for v in losses])


def pytest_tfhub_compat_variants():
    """The Keras-SavedModel variants (registered through the pytest11 entry point)."""
    from . import _training
    return [
        Variant(FORMAT, "create", "Model.save-include_optimizer=False", EVERY, model_save,
                "model.save(path, include_optimizer=False)"),
        Variant(FORMAT, "create", "piece_to_share.save", EVERY, piece_save,
                "full_model = tf.keras.Sequential([piece_to_share, ...]); "
                "full_model.fit(...); piece_to_share.save(...)", artifact="piece"),
        Variant(FORMAT, "create", "get_layer-cut.save", EVERY, cut_save,
                "piece_to_share = tf.keras.Model(full_model.get_layer(...).get_output_at(0), "
                "...); piece_to_share.save(..., include_optimizer=False)", artifact="cut"),
    ] + _reusable.consume_variants(FORMAT, Variant) + _training.variants(FORMAT, Variant)


__all__ = ["pytest_tfhub_compat_variants", "FORMAT"]
