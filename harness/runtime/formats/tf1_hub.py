"""TF1 Hub format: create with ``hub.create_module_spec``, load and fine-tune.

The API variants are exactly the calls the compatibility table names for each cell;
each is attempted in the modes listed, and whatever the library does is recorded.
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

FORMAT = "tf1_hub"
SIGNATURE = "default"


def _module_fn_factory(ctx):
    hub, spec = ctx.hub, ctx.spec
    w = spec.weights()

    def module_fn(train):
        tf = ctx.v1  # the TF1 graph-building API, also what a TF2 user would write
        x = tf.placeholder(tf.float32, [None, spec.input_dim], name="inputs")

        def l2(v):
            return spec.l2 * tf.reduce_sum(tf.square(v))

        w1 = tf.get_variable("w1", initializer=w["w1"], regularizer=l2)
        b1 = tf.get_variable("b1", initializer=w["b1"])
        w2 = tf.get_variable("w2", initializer=w["w2"])
        b2 = tf.get_variable("b2", initializer=w["b2"])
        hidden = tf.nn.relu(tf.matmul(x, w1) + b1)
        if train:
            hidden = tf.nn.dropout(hidden, rate=spec.dropout)
        logits = tf.matmul(hidden, w2) + b2
        hub.add_signature(inputs=x, outputs={"default": logits, "hidden": hidden})

    return module_fn


def create_module_spec(ctx):
    """``hub.create_module_spec`` with a train-tagged graph, then ``Module.export``."""
    hub, tf, spec, case = ctx.hub, ctx.v1, ctx.spec, ctx.case
    module_fn = _module_fn_factory(ctx)
    out_dir = prepare_dir(case.model_dir)
    x = spec.golden_inputs()
    module_spec = hub.create_module_spec(
        module_fn, tags_and_args=[(set(), {"train": False}), ({"train"}, {"train": True})])
    with fresh_graph(ctx):
        module = hub.Module(module_spec)
        y = module(tf.constant(x))
        with session(ctx) as sess:
            initialize(ctx, sess)
            golden = sess.run(y)
            module.export(model_path(case), sess)
    return {"golden": (x, golden),
            "manifest": {"signatures": {SIGNATURE: {"inputs": {"default": [None, spec.input_dim]},
                                                    "outputs": ["default", "hidden"]}},
                         "tags": [[], ["train"]]},
            "out_dir": out_dir}


def module_load(ctx):
    """``m = hub.Module(handle); outputs = m(inputs)`` in a Session."""
    hub, tf = ctx.hub, ctx.v1
    x, _ = load_golden(ctx.case)
    with fresh_graph(ctx):
        m = hub.Module(model_path(ctx.case))
        y = m(tf.constant(x))
        with session(ctx) as sess:
            initialize(ctx, sess)
            return ctx.compare_golden(sess.run(y))


def load_signatures(ctx):
    """``m = hub.load(handle); outputs = m.signatures["default"](inputs)``."""
    hub, tf = ctx.hub, ctx.tf
    x, _ = load_golden(ctx.case)
    with fresh_graph(ctx):
        m = hub.load(model_path(ctx.case))
        fn = m.signatures[SIGNATURE]
        _args, kwargs = fn.structured_input_signature
        (name,) = list(kwargs)
        outputs = fn(**{name: tf.constant(x)})
        return ctx.compare_golden(evaluate(ctx, outputs)["default"])


def keras_layer_signature(ctx):
    """``m = hub.KerasLayer(handle, signature="default", output_key="default")``."""
    hub, tf = ctx.hub, ctx.tf
    x, _ = load_golden(ctx.case)
    with fresh_graph(ctx):
        m = hub.KerasLayer(model_path(ctx.case), signature=SIGNATURE, output_key="default")
        return ctx.compare_golden(evaluate(ctx, m(tf.constant(x))))


def module_fine_tune(ctx):
    """``hub.Module(handle, trainable=True, tags={"train"})`` + an optimizer in a Session."""
    hub, tf, spec = ctx.hub, ctx.v1, ctx.spec
    x, t = spec.train_data()
    with fresh_graph(ctx):
        m = hub.Module(model_path(ctx.case), trainable=True, tags={"train"})
        y = m(tf.constant(x))
        reg = tf.losses.get_regularization_losses()
        loss = tf.reduce_mean(tf.square(y - t)) + tf.add_n(reg) if reg else \
            tf.reduce_mean(tf.square(y - t))
        train_op = tf.train.GradientDescentOptimizer(spec.learning_rate).minimize(loss)
        variables = tf.trainable_variables()
        with session(ctx) as sess:
            initialize(ctx, sess)
            before = variable_values(ctx, variables, sess)
            losses = [sess.run([train_op, loss])[1] for _ in range(spec.train_steps)]
            after = variable_values(ctx, variables, sess)
    result = ctx.check_training(before, after, losses)
    result["details"]["regularization_losses"] = len(reg)
    return result


def keras_layer_fine_tune(ctx):
    """``hub.KerasLayer(handle, trainable=True)`` in ``tf.keras.Sequential`` + ``Model.fit``."""
    hub = ctx.hub
    x, t = ctx.spec.train_data()
    with fresh_graph(ctx):
        layer = hub.KerasLayer(model_path(ctx.case), trainable=True, signature=SIGNATURE,
                               output_key="default")
        return keras_fit(ctx, layer, x, t)


def pytest_tfhub_compat_variants():
    """Built-in TF1 Hub format variants (registered through the pytest11 entry point)."""
    graph, eager, every = ("tf1", "compat"), ("tf2",), ("tf1", "compat", "tf2")
    return [
        Variant(FORMAT, "create", "hub.create_module_spec", every, create_module_spec,
                "hub.create_module_spec(module_fn, tags_and_args=...); Module.export(path, sess)"),
        Variant(FORMAT, "load", "hub.Module", graph, module_load,
                "m = hub.Module(handle); outputs = m(inputs)"),
        Variant(FORMAT, "load", "hub.load-signatures", eager, load_signatures,
                'm = hub.load(handle); outputs = m.signatures["sig"](inputs)'),
        Variant(FORMAT, "load", "hub.KerasLayer-signature", eager, keras_layer_signature,
                'm = hub.KerasLayer(handle, signature="sig"); outputs = m(inputs)'),
        Variant(FORMAT, "fine_tune", "hub.Module-trainable", graph, module_fine_tune,
                'm = hub.Module(handle, trainable=True, tags=["train"]*is_training)'),
        Variant(FORMAT, "fine_tune", "hub.KerasLayer-trainable", eager, keras_layer_fine_tune,
                "m = hub.KerasLayer(handle, trainable=True); Model.fit(...)"),
    ]


__all__ = ["pytest_tfhub_compat_variants", "FORMAT"]
