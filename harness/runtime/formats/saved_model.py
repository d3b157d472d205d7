"""TF2 SavedModel (reusable): create with ``tf.saved_model.save``, load and fine-tune.

The object saved implements the Reusable SavedModel interface of the TF2 guide:
``variables``, ``trainable_variables``, ``regularization_losses`` and a
``__call__`` traced for ``training=True`` and ``training=False``.
"""
from __future__ import annotations

from ..cases import Variant
from ..fixtures import load_golden, model_path
from ._common import (
    evaluate,
    fresh_graph,
    initialize,
    keras_fit,
    prepare_dir,
    session,
    variable_values,
)

FORMAT = "saved_model"


def _variable(ctx, value, name):
    """A resource variable, as TF2 objects are made of.

    In graph modes ``tf.Variable`` makes a legacy reference variable (TF 1.x, and
    ``disable_v2_behavior()`` turns resource variables off), which
    ``tf.saved_model.save`` refuses ("references a symbolic Tensor ... that is not
    a simple constant"); a user of the TF2 API in compat mode asks for resource
    variables, and so do we.
    """
    if ctx.rt.graph_mode:
        return ctx.v1.Variable(value, name=name, use_resource=True)
    return ctx.tf.Variable(value, name=name)


def _reusable_object(ctx):
    tf, spec = ctx.tf, ctx.spec
    w = spec.weights()
    obj = tf.train.Checkpoint()
    obj.w1 = _variable(ctx, w["w1"], "w1")
    obj.b1 = _variable(ctx, w["b1"], "b1")
    obj.w2 = _variable(ctx, w["w2"], "w2")
    obj.b2 = _variable(ctx, w["b2"], "b2")
    obj.variables = [obj.w1, obj.b1, obj.w2, obj.b2]
    obj.trainable_variables = list(obj.variables)
    obj.regularization_losses = [
        tf.function(input_signature=[])(lambda: spec.l2 * tf.reduce_sum(tf.square(obj.w1))),
    ]

    @tf.function
    def call(inputs, training=False):
        hidden = tf.nn.relu(tf.matmul(inputs, obj.w1) + obj.b1)
        if training:
            hidden = tf.nn.dropout(hidden, rate=spec.dropout)
        return tf.matmul(hidden, obj.w2) + obj.b2

    inputs = tf.TensorSpec([None, spec.input_dim], tf.float32)
    call.get_concrete_function(inputs, training=True)
    call.get_concrete_function(inputs, training=False)
    obj.__call__ = call
    return obj


def saved_model_save(ctx):
    """``tf.saved_model.save(obj, path)`` of a reusable object (in every mode)."""
    tf, spec, case = ctx.tf, ctx.spec, ctx.case
    out_dir = prepare_dir(case.model_dir)
    x = spec.golden_inputs()
    with fresh_graph(ctx):
        obj = _reusable_object(ctx)
        # the instance attribute: only the loaded object is callable itself
        y = obj.__call__(tf.constant(x))
        if ctx.rt.graph_mode:
            # Checkpoint makes its save_counter lazily, inside save(), where no initializer
            # runs; in a graph it must exist before the variables are initialized.
            obj.save_counter  # noqa: B018
            with session(ctx) as sess:
                initialize(ctx, sess)
                golden = sess.run(y)
                tf.saved_model.save(obj, model_path(case))
        else:
            golden = evaluate(ctx, y)
            tf.saved_model.save(obj, model_path(case))
    return {"golden": (x, golden),
            "manifest": {"signatures": {}, "call": {"inputs": [None, spec.input_dim],
                                                    "training": [True, False]}},
            "out_dir": out_dir}


def _run_loaded(ctx, make_callable):
    tf = ctx.tf
    x, _ = load_golden(ctx.case)
    with fresh_graph(ctx):
        y = make_callable()(tf.constant(x))
        if ctx.rt.graph_mode:
            with session(ctx) as sess:
                initialize(ctx, sess)
                return ctx.compare_golden(sess.run(y))
        return ctx.compare_golden(evaluate(ctx, y))


def hub_load(ctx):
    """``m = hub.load(handle); outputs = m(inputs)``."""
    return _run_loaded(ctx, lambda: ctx.hub.load(model_path(ctx.case)))


def keras_layer(ctx):
    """``m = hub.KerasLayer(handle); outputs = m(inputs)``."""
    return _run_loaded(ctx, lambda: ctx.hub.KerasLayer(model_path(ctx.case)))


def keras_layer_fit(ctx):
    """``hub.KerasLayer(handle, trainable=True)`` in ``tf.keras.Sequential`` + ``Model.fit``."""
    x, t = ctx.spec.train_data()
    with fresh_graph(ctx):
        layer = ctx.hub.KerasLayer(model_path(ctx.case), trainable=True)
        return keras_fit(ctx, layer, x, t)


def load_gradient_tape(ctx):
    """``m = hub.load(handle); outputs = m(inputs, training=True)`` under ``tf.GradientTape``."""
    tf, spec = ctx.tf, ctx.spec
    x, t = spec.train_data()
    with fresh_graph(ctx):
        m = ctx.hub.load(model_path(ctx.case))
        variables = list(m.trainable_variables)
        before = variable_values(ctx, variables)
        losses = []
        for _ in range(spec.train_steps):
            with tf.GradientTape() as tape:
                y = m(tf.constant(x), training=True)
                loss = tf.reduce_mean(tf.square(y - t))
                loss += tf.add_n([fn() for fn in m.regularization_losses])
            grads = tape.gradient(loss, variables)
            for v, g in zip(variables, grads):
                v.assign_sub(spec.learning_rate * g)
            losses.append(float(loss.numpy()))
        after = variable_values(ctx, variables)
    result = ctx.check_training(before, after, losses)
    result["details"]["regularization_losses"] = len(m.regularization_losses)
    return result


def pytest_tfhub_compat_variants():
    """Built-in TF2 SavedModel variants (registered through the pytest11 entry point)."""
    every, eager = ("tf1", "compat", "tf2"), ("tf2",)
    return [
        Variant(FORMAT, "create", "tf.saved_model.save", every, saved_model_save,
                "tf.saved_model.save(obj, path)"),
        Variant(FORMAT, "load", "hub.load", every, hub_load,
                "m = hub.load(handle); outputs = m(inputs)"),
        Variant(FORMAT, "load", "hub.KerasLayer", every, keras_layer,
                "m = hub.KerasLayer(handle); outputs = m(inputs)"),
        Variant(FORMAT, "fine_tune", "hub.KerasLayer-trainable-fit", every, keras_layer_fit,
                "m = hub.KerasLayer(handle, trainable=True); tf.keras.Model.fit(...)"),
        Variant(FORMAT, "fine_tune", "hub.load-GradientTape", eager, load_gradient_tape,
                "m = hub.load(handle); outputs = m(inputs, training=is_training)"),
    ]


__all__ = ["pytest_tfhub_compat_variants", "FORMAT"]
