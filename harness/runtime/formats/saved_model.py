"""TF2 SavedModel (reusable): create with ``tf.saved_model.save``, load and fine-tune.

The object saved implements the Reusable SavedModel interface of the TF2 guide:
``variables``, ``trainable_variables``, ``regularization_losses``, a ``__call__``
traced for ``training=True`` (dropout) and ``training=False``, and serving
signatures besides ``__call__``.  The guide's own ``MyMulModel`` is created and
checked verbatim (model kind ``my_mul``).
"""
from __future__ import annotations

import numpy as np

from ..cases import Variant
from . import _reusable
from ._common import evaluate, fresh_graph, initialize, prepare_dir, run_outputs, session
from ._reusable import EVERY, sig_key

FORMAT = "saved_model"
GRAPH = ("tf1", "compat")


def _variable(ctx, value, name, resource):
    """A TF2 user's variable: in graph modes ``tf.Variable`` is a legacy reference
    variable (TF 1.x, and ``disable_v2_behavior()`` turns resource variables off),
    which ``tf.saved_model.save`` refuses; ``resource`` asks for a resource variable."""
    if ctx.rt.graph_mode and resource:
        return ctx.v1.Variable(value, name=name, use_resource=True)
    return ctx.tf.Variable(value, name=name)


def _reusable_object(ctx, resource=True):
    tf, spec = ctx.tf, ctx.spec
    w = spec.weights()
    obj = tf.train.Checkpoint()
    for name in ("w1", "b1", "w2", "b2"):
        setattr(obj, name, _variable(ctx, w[name], name, resource))
    obj.variables = [obj.w1, obj.b1, obj.w2, obj.b2]
    obj.trainable_variables = list(obj.variables)
    obj.regularization_losses = [
        tf.function(input_signature=[])(lambda: spec.l2 * tf.reduce_sum(tf.square(obj.w1))),
    ]

    def forward(inputs, training):
        hidden = tf.nn.relu(tf.matmul(inputs, obj.w1) + obj.b1)
        if training:
            hidden = tf.nn.dropout(hidden, rate=spec.dropout)
        return hidden, tf.matmul(hidden, obj.w2) + obj.b2

    @tf.function
    def call(inputs, training=False):
        return forward(inputs, training)[1]

    x_spec = tf.TensorSpec([None, spec.input_dim], tf.float32, name="x")
    call.get_concrete_function(x_spec, training=True)
    inference = call.get_concrete_function(x_spec, training=False)
    obj.__call__ = call

    @tf.function(input_signature=[x_spec])
    def serving(x):
        return {"output": forward(x, False)[1]}

    @tf.function(input_signature=[x_spec])
    def features(x):
        hidden, logits = forward(x, False)
        return {"hidden": hidden, "logits": logits}

    return obj, inference, {"serving_default": serving, "features": features}


def _save(ctx, resource):
    tf, spec, case = ctx.tf, ctx.spec, ctx.case
    out_dir = prepare_dir(case.model_dir)
    x = spec.golden_inputs()
    # the reusable object is the TF2 guide's code (variables, tf.function traces, serving
    # signatures): all of it is what a TF2 user writes, so all of it is under test
    with fresh_graph(ctx), ctx.under_test():
        obj, inference, sigs = _reusable_object(ctx, resource)
        # through the traced concrete function: calling ``obj.__call__`` on the goldens
        # would add a trace for their exact shape, and a restored object with both a
        # [5, 4] and a [None, 4] trace is dispatched to either, depending on the run
        # (seen: "Dimension 0 in both shapes must be equal, but are 8 and 5" in compat)
        tensors = {"y": inference(tf.constant(x))}
        for name, fn in sigs.items():
            for key, value in fn(tf.constant(x)).items():
                tensors[sig_key(name, "out", key)] = value
        if ctx.rt.graph_mode:
            # Checkpoint makes its save_counter lazily, inside save(), where no initializer
            # runs; in a graph it must exist before the variables are initialized.
            obj.save_counter  # noqa: B018
            with session(ctx) as sess:
                initialize(ctx, sess)
                golden = sess.run(tensors)
                tf.saved_model.save(obj, ctx.handle, signatures=sigs)
        else:
            golden = evaluate(ctx, tensors)
            tf.saved_model.save(obj, ctx.handle, signatures=sigs)
    golden["x"] = x
    for name in sigs:
        golden[sig_key(name, "in", "x")] = x
    return {"golden": golden, "out_dir": out_dir,
            "manifest": {"signatures": sorted(sigs),
                         "call": {"inputs": [None, spec.input_dim], "training": [True, False]}}}


def saved_model_save(ctx):
    """``tf.saved_model.save(obj, path, signatures=...)`` of a reusable object (resource
    variables, as the TF2 API makes them)."""
    return _save(ctx, resource=True)


def saved_model_save_ref_variables(ctx):
    """The same object with plain ``tf.Variable``: reference variables in graph modes."""
    return _save(ctx, resource=False)


def my_mul_model(ctx):
    """The TF2 guide's ``MyMulModel``, saved and reloaded with ``hub.KerasLayer`` verbatim."""
    tf, spec = ctx.tf, ctx.spec
    prepare_dir(ctx.case.model_dir)

    class MyMulModel(tf.train.Checkpoint):
        def __init__(self, v_init):
            super(MyMulModel, self).__init__()
            self.v = tf.Variable(v_init)
            self.variables = [self.v]
            self.trainable_variables = [self.v]
            self.regularization_losses = [
                tf.function(input_signature=[])(lambda: 0.001 * self.v ** 2),
            ]

        @tf.function(input_signature=[tf.TensorSpec(shape=None, dtype=tf.float32)])
        def __call__(self, inputs):
            return tf.multiply(inputs, self.v)

    with fresh_graph(ctx), ctx.under_test():
        model = MyMulModel(spec.v_init)
        if ctx.rt.graph_mode:
            with session(ctx) as sess:
                initialize(ctx, sess)
                tf.saved_model.save(model, ctx.handle)
        else:
            tf.saved_model.save(model, ctx.handle)
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.KerasLayer(ctx.handle)(
            tf.constant(spec.inputs)))
    ctx.expect(np.allclose(got, spec.expected),
               "layer(%s) = %s, the guide prints %s" % (spec.inputs.tolist(), got.tolist(),
                                                        spec.expected.tolist()))
    return {"golden": {"x": spec.inputs, "y": np.asarray(got)},
            "manifest": {"call": {"inputs": None}}}


def my_mul_trainable(ctx):
    """The guide's ``layer.trainable = True``: ``trainable_weights`` ``[2.]``, ``losses`` 0.004."""
    tf, spec = ctx.tf, ctx.spec

    def build():
        layer = ctx.hub.KerasLayer(ctx.handle)
        out = layer(tf.constant(spec.inputs))
        layer.trainable = True
        return out, list(layer.trainable_weights), list(layer.losses)

    with ctx.under_test():
        out, weights, losses = run_outputs(ctx, build)
    ctx.compare(out, "y", "layer([10., 20.])")
    weights = [float(w) for w in weights]
    losses = [float(v) for v in losses]
    ctx.expect(weights == [spec.v_init],
               "layer.trainable_weights = %s, the guide prints [%s]" % (weights, spec.v_init))
    ctx.expect(len(losses) == 1 and np.isclose(losses[0], spec.expected_loss),
               "layer.losses = %s, the guide prints %s" % (losses, spec.expected_loss))
    return ctx.result(trainable_weights=weights, losses=losses)


def keras_layer_no_collections(ctx):
    """The TF1-column note: ``hub.KerasLayer`` does not fill graph collections.

    Passes when a trainable ``hub.KerasLayer`` in a graph leaves
    ``REGULARIZATION_LOSSES`` and ``UPDATE_OPS`` empty while ``layer.losses``
    carries the regularization loss (the user must add it to the loss).
    """
    v1, spec = ctx.v1, ctx.spec
    with fresh_graph(ctx):
        x = v1.placeholder(v1.float32, [None, spec.input_dim])
        with ctx.under_test():
            layer = ctx.hub.KerasLayer(ctx.handle, trainable=True)
            layer(x)
            reg = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
            upd = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
            layer_losses = list(layer.losses)
        details = {"REGULARIZATION_LOSSES": len(reg), "UPDATE_OPS": len(upd),
                   "layer.losses": len(layer_losses)}
        ctx.expect(not reg and not upd, "graph collections filled: %s" % details)
        ctx.expect(len(layer_losses) == 1, "layer.losses has %d entries, expected 1"
                   % len(layer_losses))
    return ctx.result(**details)


def pytest_tfhub_compat_variants():
    """Built-in TF2 SavedModel variants (registered through the pytest11 entry point)."""
    from . import _training
    return [
        Variant(FORMAT, "create", "tf.saved_model.save", EVERY, saved_model_save,
                "tf.saved_model.save(obj, path)"),
        Variant(FORMAT, "create", "tf.saved_model.save-ref-variables", GRAPH,
                saved_model_save_ref_variables, "tf.saved_model.save(obj, path)  # tf.Variable",
                artifact="refvars"),
        Variant(FORMAT, "create", "MyMulModel", EVERY, my_mul_model,
                'tf.saved_model.save(MyMulModel(2.0), "/tmp/my_mul")', kinds=("my_mul",)),
        Variant(FORMAT, "fine_tune", "MyMulModel-trainable", EVERY, my_mul_trainable,
                "layer = hub.KerasLayer(path); layer.trainable = True; layer.losses",
                kinds=("my_mul",)),
        Variant(FORMAT, "fine_tune", "hub.KerasLayer-no-graph-collections", GRAPH,
                keras_layer_no_collections,
                "hub.KerasLayer does not fill in graph collections"),
    ] + _reusable.consume_variants(FORMAT, Variant) + _training.variants(FORMAT, Variant)


__all__ = ["pytest_tfhub_compat_variants", "FORMAT"]
