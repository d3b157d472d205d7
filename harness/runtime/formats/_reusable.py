"""Load and fine-tune variants shared by every SavedModel-based format.

A TF2 SavedModel (``saved_model``), a Keras model saved as a SavedModel
(``keras_saved_model``) and a user's SavedModel are all consumed with the same
documented calls: ``hub.load(h)(x)``, ``obj.signatures["serving_default"](**x)``,
``hub.KerasLayer(h)`` alone, in a Sequential and in a functional model,
``tf.saved_model.load``, and fine-tuned with ``hub.KerasLayer(h, trainable=True)``
+ ``Model.fit`` or ``hub.load(h)(x, training=True)`` + ``tf.GradientTape``.

Golden arrays (``golden.npz``): ``x``/``y`` for ``__call__``, and
``sig::<name>::in::<arg>`` / ``sig::<name>::out::<key>`` per serving signature.
"""
from __future__ import annotations

import numpy as np

from ..cases import EAGER_MODES, MODES
from ._common import (
    evaluate,
    fresh_graph,
    keras_fit,
    local_path,
    run_outputs,
    variable_values,
)

SEP = "::"
EVERY = MODES
EAGER = EAGER_MODES


def sig_key(name, side, arg):
    return SEP.join(("sig", name, side, arg))


def signature_goldens(golden):
    """{signature: (inputs, outputs)} from the golden arrays."""
    found = {}
    for key, value in golden.items():
        parts = key.split(SEP)
        if len(parts) == 4 and parts[0] == "sig":
            ins, outs = found.setdefault(parts[1], ({}, {}))
            (ins if parts[2] == "in" else outs)[parts[3]] = value
    return found


def _inputs(ctx):
    return ctx.tf.constant(ctx.golden("x"))


# ---- load ------------------------------------------------------------------------------

def hub_load(ctx):
    """``m = hub.load(handle); outputs = m(inputs)``."""
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.load(ctx.handle)(_inputs(ctx)))
    return ctx.compare(got)


def hub_load_tags(ctx):
    """``m = hub.load(handle, tags={"serve"}); outputs = m(inputs)``."""
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.load(ctx.handle, tags={"serve"})(_inputs(ctx)))
    return ctx.compare(got)


def hub_load_training(ctx):
    """``m(inputs, training=False)`` gives the goldens; ``training=True`` runs dropout."""
    def build():
        m = ctx.hub.load(ctx.handle)
        x = _inputs(ctx)
        return m(x, training=False), m(x, training=True)

    with ctx.under_test():
        inference, training = run_outputs(ctx, build)
    ctx.compare(inference, "y", "training=False")
    ctx.expect(training.shape == inference.shape,
               "training=True output shape %s != %s" % (training.shape, inference.shape))
    ctx.expect(not np.allclose(training, inference),
               "m(x, training=True) == m(x, training=False): dropout did not run")
    return ctx.result(training_changes_output=True)


def signatures(ctx):
    """``obj = hub.load(handle); outputs = obj.signatures["serving_default"](**inputs)``."""
    sigs = signature_goldens(ctx.golden())
    ctx.expect(sigs, "the producer recorded no serving signature")

    def build():
        obj = ctx.hub.load(ctx.handle)
        return {name: obj.signatures[name](**{k: ctx.tf.constant(v) for k, v in ins.items()})
                for name, (ins, _outs) in sorted(sigs.items())}

    with ctx.under_test():
        got = run_outputs(ctx, build)
    return compare_signatures(ctx, sigs, got)


def compare_signatures(ctx, sigs, got):
    """Compare ``got[signature][output]`` with every golden output of ``sigs``."""
    for name, (_ins, outs) in sorted(sigs.items()):
        for key in sorted(outs):
            ctx.expect(key in got[name], 'signatures["%s"] has no output %r: %s'
                       % (name, key, sorted(got[name])))
            ctx.compare(got[name][key], sig_key(name, "out", key),
                        'signatures["%s"]["%s"]' % (name, key))
    return ctx.result(signatures=sorted(sigs))


def keras_layer(ctx):
    """``m = hub.KerasLayer(handle); outputs = m(inputs)``.

    Also what the TF2 guide says of the layer: its weights are not trainable by
    default, and every application of the same layer object shares them.
    """
    seen = {}

    def build():
        layer = ctx.hub.KerasLayer(ctx.handle)
        first = layer(_inputs(ctx))
        seen["weights"] = len(layer.weights)
        second = layer(_inputs(ctx))
        seen["after"] = len(layer.weights)
        seen["trainable"] = [w.name for w in layer.trainable_weights]
        return first, second

    with ctx.under_test():
        first, second = run_outputs(ctx, build)
    ctx.compare(first)
    ctx.compare(second, "y", "second application")
    ctx.expect(seen["after"] == seen["weights"],
               "a second application added weights (%d -> %d): not shared"
               % (seen["weights"], seen["after"]))
    ctx.expect(not seen["trainable"], "hub.KerasLayer(handle) has trainable weights "
               "by default: %s" % seen["trainable"])
    return ctx.result(weights=seen["after"])


def keras_layer_sequential(ctx):
    """``tf.keras.Sequential([hub.KerasLayer(handle)])``, then ``model.predict``."""
    tf, x = ctx.tf, ctx.golden("x")
    with fresh_graph(ctx):
        with ctx.under_test():
            model = tf.keras.Sequential([ctx.hub.KerasLayer(ctx.handle,
                                                            input_shape=x.shape[1:])])
            got = model.predict(x, batch_size=len(x), verbose=0)
        return ctx.compare(got)


def keras_layer_functional(ctx):
    """``tf.keras.Model(inp, hub.KerasLayer(handle)(inp))``, then ``model.predict``."""
    tf, x = ctx.tf, ctx.golden("x")
    with fresh_graph(ctx):
        with ctx.under_test():
            inp = tf.keras.Input(shape=x.shape[1:], dtype=tf.float32)
            model = tf.keras.Model(inp, ctx.hub.KerasLayer(ctx.handle)(inp))
            got = model.predict(x, batch_size=len(x), verbose=0)
        return ctx.compare(got)


def saved_model_load(ctx):
    """``obj = tf.saved_model.load(path); outputs = obj(inputs)`` (TF2's loader)."""
    load = ctx.v2.saved_model.load
    with ctx.under_test():  # local_path: hub.resolve of a URL handle, the documents' way
        got = run_outputs(ctx, lambda: load(local_path(ctx))(_inputs(ctx)))
    return ctx.compare(got)


# ---- fine-tune -------------------------------------------------------------------------

def keras_layer_fit(ctx):
    """``hub.KerasLayer(handle, trainable=True)`` in ``tf.keras.Sequential`` + ``Model.fit``.

    Beyond "it trained": the regularization loss the SavedModel declares reaches
    ``model.losses`` with its value, and ``training=True`` (used by fit) runs dropout.
    """
    spec = ctx.spec
    x, t = spec.train_data()
    with fresh_graph(ctx), ctx.under_test():
        layer = ctx.hub.KerasLayer(ctx.handle, trainable=True)
        before, after, losses, reg, settled = keras_fit(ctx, layer, x, t)
        xs = ctx.tf.constant(x[:8])
        modes = ctx.tf.keras.backend.batch_get_value(
            [layer(xs, training=True), layer(xs, training=False)])
    check_regularization(ctx, reg, before, "model.losses")
    ctx.expect(not np.allclose(modes[0], modes[1]),
               "layer(x, training=True) == layer(x, training=False): dropout did not run")
    return ctx.check_training(before, after, losses, settled, regularization_loss=reg[0])


def check_regularization(ctx, reg, before, where):
    """Exactly the one regularization loss the fixture declares, worth ``l2 * sum(w1**2)``
    of the first kernel (``w1`` in a reusable object, ``.../kernel`` in a Keras model)."""
    ctx.expect(len(reg) == 1, "%s has %d entries, expected the SavedModel's 1 "
                              "regularization loss" % (where, len(reg)))
    w1 = [v for k, v in before.items() if "w1" in k or "kernel" in k]
    expected = ctx.spec.l2_loss(w1[0]) if w1 else None
    ctx.expect(expected is not None and np.isclose(reg[0], expected, rtol=1e-4),
               "%s = %s, expected l2 * sum(w1**2) = %s" % (where, reg, expected))


def load_gradient_tape(ctx):
    """``m = hub.load(handle); outputs = m(inputs, training=True)`` under ``tf.GradientTape``."""
    tf, spec = ctx.tf, ctx.spec
    x, t = spec.train_data()
    with fresh_graph(ctx), ctx.under_test():
        m = ctx.hub.load(ctx.handle)
        variables = list(m.trainable_variables)
        before = variable_values(ctx, variables)
        reg = [evaluate(ctx, fn()) for fn in m.regularization_losses]
        losses = []
        for _ in range(spec.train_steps):
            with tf.GradientTape() as tape:
                y = m(tf.constant(x), training=True)
                loss = tf.reduce_mean(tf.square(y - t))
                loss += tf.add_n([fn() for fn in m.regularization_losses])
            grads = tape.gradient(loss, variables)
            for v, g in zip(variables, grads):
                v.assign_sub(spec.learning_rate * g)
            losses.append(loss.numpy())
        after = variable_values(ctx, variables)
    reg, losses = [float(v) for v in reg], [float(v) for v in losses]
    check_regularization(ctx, reg, before, "m.regularization_losses")
    return ctx.check_training(before, after, losses, regularization_loss=reg[0])


def consume_variants(fmt, Variant):
    """The shared load / fine-tune variants, registered under format ``fmt``."""
    mlp, any_call = ("mlp",), ("mlp", "my_mul", "user")
    return [
        Variant(fmt, "load", "hub.load", EVERY, hub_load,
                "m = hub.load(handle); outputs = m(inputs)", kinds=any_call, needs="call"),
        Variant(fmt, "load", "hub.load-tags", EVERY, hub_load_tags,
                'm = hub.load(handle, tags={"serve"}); outputs = m(inputs)'),
        Variant(fmt, "load", "hub.load-training", EVERY, hub_load_training,
                "outputs = m(inputs, training=False / True)"),
        Variant(fmt, "load", "signatures", EVERY, signatures,
                'tensors_out = obj.signatures["serving_default"](**tensors_in)',
                kinds=("mlp", "user"), needs="signatures"),
        Variant(fmt, "load", "hub.KerasLayer", EVERY, keras_layer,
                "m = hub.KerasLayer(handle); outputs = m(inputs)", kinds=any_call,
                needs="call"),
        Variant(fmt, "load", "hub.KerasLayer-Sequential", EVERY, keras_layer_sequential,
                "model = tf.keras.Sequential([hub.KerasLayer(handle), ...])"),
        Variant(fmt, "load", "hub.KerasLayer-functional", EVERY, keras_layer_functional,
                "tf.keras.Model(inp, hub.KerasLayer(handle)(inp))"),
        Variant(fmt, "load", "tf.saved_model.load", EVERY, saved_model_load,
                "obj = tf.saved_model.load(path); outputs = obj(inputs)", kinds=any_call,
                needs="call"),
        Variant(fmt, "fine_tune", "hub.KerasLayer-trainable-fit", EVERY, keras_layer_fit,
                "m = hub.KerasLayer(handle, trainable=True); tf.keras.Model.fit(...)",
                kinds=mlp),
        Variant(fmt, "fine_tune", "hub.load-GradientTape", EAGER, load_gradient_tape,
                "m = hub.load(handle); outputs = m(inputs, training=is_training)", kinds=mlp),
    ]
