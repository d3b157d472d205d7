"""TF1 Hub format: create with ``hub.create_module_spec``, load and fine-tune.

The fixture module has what the TF1 Hub guides describe: a ``default`` signature
(outputs ``default`` and ``hidden``), a named ``features`` signature with dict
inputs and outputs, a ``tokens`` signature that looks strings up in a
vocabulary asset, an L2 regularizer, a ``train`` graph (``tags_and_args``) with
batch-norm whose moving averages update through ``UPDATE_OPS`` and dropout, and
an attached message.  Every API variant is exactly a call the documents name;
each is attempted in the modes listed and whatever the library does is recorded.
"""
from __future__ import annotations

import os

import numpy as np

from ..cases import EAGER_MODES, GRAPH_MODES, MODES, Variant
from ._common import (
    fresh_graph,
    initialize,
    local_path,
    prepare_dir,
    run_outputs,
    session,
    variable_values,
)
from ._reusable import sig_key

FORMAT = "tf1_hub"
EVERY, GRAPH = MODES, GRAPH_MODES
MESSAGE_KEY = "producer"
SIGNATURES = {"default": (["default"], ["default", "hidden"]),
              "features": (["scale", "x"], ["logits", "scaled"]),
              "tokens": (["default"], ["default", "ids"])}


def _module_fn_factory(ctx, vocab_path):
    hub, spec = ctx.hub, ctx.spec
    w = spec.weights()

    def module_fn(train):
        tf = ctx.v1  # the TF1 graph-building API, also what a TF2 user would write
        x = tf.placeholder(tf.float32, [None, spec.input_dim], name="x")
        scale = tf.placeholder(tf.float32, [None], name="scale")
        tokens = tf.placeholder(tf.string, [None], name="tokens")

        def l2(v):
            return spec.l2 * tf.reduce_sum(tf.square(v))

        w1 = tf.get_variable("w1", initializer=w["w1"], regularizer=l2)
        b1 = tf.get_variable("b1", initializer=w["b1"])
        w2 = tf.get_variable("w2", initializer=w["w2"])
        b2 = tf.get_variable("b2", initializer=w["b2"])
        gamma = tf.get_variable("gamma", initializer=w["gamma"])
        beta = tf.get_variable("beta", initializer=w["beta"])
        mean = tf.get_variable("moving_mean", initializer=np.zeros(spec.hidden, np.float32),
                               trainable=False)
        var = tf.get_variable("moving_variance", initializer=np.ones(spec.hidden, np.float32),
                              trainable=False)
        embedding = tf.get_variable("embedding", initializer=w["embedding"])
        hidden = tf.nn.relu(tf.matmul(x, w1) + b1)
        if train:  # batch statistics, moving averages updated through UPDATE_OPS, dropout
            batch_mean, batch_var = tf.nn.moments(hidden, [0])
            m = spec.bn_momentum
            for op in (tf.assign(mean, mean * m + batch_mean * (1 - m)),
                       tf.assign(var, var * m + batch_var * (1 - m))):
                tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, op)
            normed = tf.nn.batch_normalization(hidden, batch_mean, batch_var, beta, gamma,
                                               spec.bn_epsilon)
            normed = tf.nn.dropout(normed, rate=spec.dropout)
        else:
            normed = tf.nn.batch_normalization(hidden, mean, var, beta, gamma, spec.bn_epsilon)
        logits = tf.matmul(normed, w2) + b2
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                tf.constant(vocab_path), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
            default_value=len(spec.vocab))
        ids = table.lookup(tokens)
        hub.add_signature(inputs=x, outputs={"default": logits, "hidden": normed})
        hub.add_signature("features", inputs={"x": x, "scale": scale},
                          outputs={"logits": logits, "scaled": logits * scale[:, None]})
        hub.add_signature("tokens", inputs=tokens,
                          outputs={"default": tf.nn.embedding_lookup(embedding, ids),
                                   "ids": ids})
        message = tf.train.Example()
        message.features.feature["tensorflow"].bytes_list.value.append(
            ctx.rt.info["tensorflow"].encode())
        hub.attach_message(MESSAGE_KEY, message)

    return module_fn


def _golden_feed(spec):
    x, scale, tokens = spec.golden_inputs(), spec.golden_scale(), spec.golden_tokens()
    return {"default": {"default": x}, "features": {"x": x, "scale": scale},
            "tokens": {"default": tokens}}


def _export(ctx):
    """``hub.create_module_spec`` (default + ``train`` graphs), then ``Module.export``."""
    hub, tf, spec, case = ctx.hub, ctx.v1, ctx.spec, ctx.case
    out_dir = prepare_dir(case.model_dir)
    vocab = spec.write_vocab(out_dir)
    feed = _golden_feed(spec)
    with ctx.under_test(), fresh_graph(ctx):  # the creation guide's code, module_fn included
        module_spec = hub.create_module_spec(
            _module_fn_factory(ctx, vocab),
            tags_and_args=[(set(), {"train": False}), ({"train"}, {"train": True})])
        module = hub.Module(module_spec)
        tensors = {}
        for name, inputs in feed.items():
            outs = module({k: tf.constant(v) for k, v in inputs.items()}, signature=name,
                          as_dict=True)
            tensors.update({sig_key(name, "out", k): v for k, v in outs.items()})
        with session(ctx) as sess:
            initialize(ctx, sess)
            golden = sess.run(tensors)
            module.export(ctx.handle, sess)
    for name, inputs in feed.items():
        golden.update({sig_key(name, "in", k): v for k, v in inputs.items()})
    golden["x"], golden["y"] = feed["default"]["default"], golden[sig_key("default", "out",
                                                                          "default")]
    ctx.expect(os.path.isfile(os.path.join(ctx.handle, "assets", "vocab.txt")),
               "the vocabulary asset was not exported to assets/")
    return {"golden": golden,
            "manifest": {"signatures": {k: {"inputs": i, "outputs": o}
                                        for k, (i, o) in SIGNATURES.items()},
                         "tags": [[], ["train"]], "attached_messages": [MESSAGE_KEY]}}


def create_module_spec(ctx):
    """``hub.create_module_spec(module_fn, tags_and_args=...)``, as the creation guide does."""
    return _export(ctx)


def create_module_spec_in_graph(ctx):
    """The same inside ``with tf.Graph().as_default():`` in TF2 (documented unsupported)."""
    with ctx.tf.Graph().as_default():
        return _export(ctx)


def _sig_inputs(ctx, name):
    ins = SIGNATURES[name][0]
    return {k: ctx.golden(sig_key(name, "in", k)) for k in ins}


def _compare_sig(ctx, name, got, label):
    for key in SIGNATURES[name][1]:
        ctx.expect(key in got, "%s has no output %r: %s" % (label, key, sorted(got)))
        ctx.compare(got[key], sig_key(name, "out", key), "%s[%r]" % (label, key))
    return ctx.result()


def module_load(ctx):
    """``m = hub.Module(handle); outputs = m(inputs)`` in a Session."""
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.Module(ctx.handle)(
            ctx.v1.constant(ctx.golden("x"))))
    return ctx.compare(got)


def module_signature_as_dict(ctx):
    """``m(dict(x1=..., x2=...), signature="sig", as_dict=True)`` and ``m(x, as_dict=True)``."""
    def build():
        tf = ctx.v1
        m = ctx.hub.Module(ctx.handle)
        feed = {k: tf.constant(v) for k, v in _sig_inputs(ctx, "features").items()}
        return (m(feed, signature="features", as_dict=True),
                m(tf.constant(ctx.golden("x")), as_dict=True))

    with ctx.under_test():
        features, default = run_outputs(ctx, build)
    _compare_sig(ctx, "default", default, "m(x, as_dict=True)")
    return _compare_sig(ctx, "features", features, 'm(..., signature="features")')


def module_strings(ctx):
    """String inputs through the vocabulary asset: ``m(tokens, signature="tokens")``."""
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.Module(ctx.handle)(
            ctx.v1.constant(ctx.golden(sig_key("tokens", "in", "default"))),
            signature="tokens", as_dict=True))
    return _compare_sig(ctx, "tokens", got, 'm(tokens, signature="tokens")')


def module_train_tags(ctx):
    """``hub.Module(handle, tags={"train"})``: the train graph (batch statistics, dropout)."""
    def build():
        tf = ctx.v1
        m = ctx.hub.Module(ctx.handle, tags={"train"})
        return (m(tf.constant(ctx.golden("x"))),
                m(tf.constant(ctx.golden(sig_key("tokens", "in", "default"))),
                  signature="tokens", as_dict=True))

    with ctx.under_test():
        train_out, tokens = run_outputs(ctx, build)
    _compare_sig(ctx, "tokens", tokens, "train graph tokens")
    ctx.expect(train_out.shape == ctx.golden("y").shape, "train graph output shape %s"
               % (train_out.shape,))
    ctx.expect(not np.allclose(train_out, ctx.golden("y")),
               "the train graph computes the inference outputs: no batch-norm/dropout")
    return ctx.result(train_graph_differs=True)


def module_attached_message(ctx):
    """``m.get_attached_message(key, tf.train.Example)`` returns what ``hub.attach_message`` put."""
    with fresh_graph(ctx), ctx.under_test():
        m = ctx.hub.Module(ctx.handle)
        message = m.get_attached_message(MESSAGE_KEY, ctx.v1.train.Example)
    ctx.expect(message is not None, "no attached message %r" % MESSAGE_KEY)
    value = message.features.feature["tensorflow"].bytes_list.value
    producer_tf = ctx.manifest.get("producer", {}).get("tensorflow")
    ctx.expect([v.decode() for v in value] == [producer_tf],
               "attached message %s != producer TF %s" % (list(value), producer_tf))
    return ctx.result(attached_message=producer_tf)


def _signature_call(ctx, name, positional=False, tags=None):
    def build():
        m = ctx.hub.load(ctx.handle) if tags is None else ctx.hub.load(ctx.handle, tags=tags)
        inputs = {k: ctx.tf.constant(v) for k, v in _sig_inputs(ctx, name).items()}
        if positional:
            return m.signatures[name](*[inputs[k] for k in sorted(inputs)])
        return m.signatures[name](**inputs)

    with ctx.under_test():
        return run_outputs(ctx, build)


def load_signatures(ctx):
    """``m = hub.load(handle); outputs = m.signatures["default"](default=inputs)``."""
    return _compare_sig(ctx, "default", _signature_call(ctx, "default"), "signatures")


def load_signatures_positional(ctx):
    """``outputs = m.signatures["sig"](inputs)``: positional, as the compatibility table writes."""
    return _compare_sig(ctx, "default", _signature_call(ctx, "default", positional=True),
                        "signatures (positional)")


def load_named_signature(ctx):
    """``tensors_out_dict = m.signatures["sig"](x1=..., x2=...)`` (the migration guide)."""
    return _compare_sig(ctx, "features", _signature_call(ctx, "features"), "signatures")


def load_tags(ctx):
    """``m = hub.load(path, tags={"train"})``: the train graph's signatures."""
    _compare_sig(ctx, "tokens", _signature_call(ctx, "tokens", tags={"train"}),
                 "train graph tokens")
    train = _signature_call(ctx, "default", tags={"train"})
    ctx.expect("default" in train, "the train graph's default signature has no output "
               "'default': %s" % sorted(train))
    train = train["default"]
    ctx.expect(not np.allclose(train, ctx.golden("y")),
               "tags={'train'} loaded the inference graph (outputs equal the goldens)")
    return ctx.result(train_graph_differs=True)


def keras_layer_plain(ctx):
    """``m = hub.KerasLayer(handle); tensor_out = m(tensor_in)`` (hub >= 0.7, migration guide)."""
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.KerasLayer(ctx.handle)(
            ctx.tf.constant(ctx.golden("x"))))
    return ctx.compare(got)


def keras_layer_signature(ctx):
    """``m = hub.KerasLayer(handle, signature="default", output_key="default")``."""
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.KerasLayer(
            ctx.handle, signature="default", output_key="default")(
            ctx.tf.constant(ctx.golden("x"))))
    return ctx.compare(got)


def keras_layer_outputs_as_dict(ctx):
    """``hub.KerasLayer(handle, signature="features", signature_outputs_as_dict=True)``."""
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.KerasLayer(
            ctx.handle, signature="features", signature_outputs_as_dict=True)(
            {k: ctx.tf.constant(v) for k, v in _sig_inputs(ctx, "features").items()}))
    return _compare_sig(ctx, "features", got, "signature_outputs_as_dict")


def keras_layer_tags_strings(ctx):
    """``hub.KerasLayer(handle, tags={"train"}, signature="tokens", output_key="default")``."""
    with ctx.under_test():
        got = run_outputs(ctx, lambda: ctx.hub.KerasLayer(
            ctx.handle, tags={"train"}, signature="tokens", output_key="default")(
            ctx.tf.constant(ctx.golden(sig_key("tokens", "in", "default")))))
    return ctx.compare(got, sig_key("tokens", "out", "default"), "tokens via tags={'train'}")


def saved_model_load(ctx):
    """``tf.saved_model.load(path, tags=[])`` of a TF1 Hub module (migration guide)."""
    load = ctx.v2.saved_model.load
    with ctx.under_test():
        got = run_outputs(ctx, lambda: load(local_path(ctx), tags=[]).signatures["default"](
            default=ctx.tf.constant(ctx.golden("x"))))
    return _compare_sig(ctx, "default", got, "tf.saved_model.load signatures")


def module_fine_tune(ctx):
    """``hub.Module(handle, trainable=True, tags={"train"})`` + an optimizer in a Session.

    ``REGULARIZATION_LOSSES`` are added to the loss and ``UPDATE_OPS`` run with
    each step, as the fine-tuning guide says; checked: the regularization loss
    value, the batch-norm moving averages moved, exactly the variables the
    default signature uses changed (the embedding, used only by ``tokens``, not).
    """
    hub, tf, spec = ctx.hub, ctx.v1, ctx.spec
    x, t = spec.train_data()
    # the fine-tuning guide's graph: the module, its collections, an optimizer, a Session
    with fresh_graph(ctx), ctx.under_test():
        m = hub.Module(ctx.handle, trainable=True, tags={"train"})
        y = m(tf.constant(x))
        reg = tf.losses.get_regularization_losses()
        update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        # applied after the collections were read: its own update ops need inputs it lacks
        ids = m(tf.constant(ctx.golden(sig_key("tokens", "in", "default"))), signature="tokens",
                as_dict=True)["ids"]
        loss = tf.reduce_mean(tf.square(y - t))
        total = loss + tf.add_n(reg) if reg else loss
        with tf.control_dependencies(update_ops):
            train_op = tf.train.GradientDescentOptimizer(spec.learning_rate).minimize(total)
        trained = [v for v in tf.trainable_variables() if "embedding" not in v.name]
        frozen = [v for v in tf.global_variables()
                  if "embedding" in v.name or "moving_" in v.name]
        with session(ctx) as sess:
            initialize(ctx, sess)
            before = variable_values(ctx, trained, sess)
            frozen_before = variable_values(ctx, frozen, sess)
            reg_values = sess.run(reg)
            losses = [sess.run([train_op, total])[1] for _ in range(spec.train_steps)]
            after = variable_values(ctx, trained, sess)
            frozen_after = variable_values(ctx, frozen, sess)
            ids_after = sess.run(ids)
    ctx.compare(ids_after, sig_key("tokens", "out", "ids"), "vocabulary lookup after training")
    w1 = [v for k, v in before.items() if "w1" in k]
    ctx.expect(len(reg_values) == 1 and np.isclose(reg_values[0], spec.l2_loss(w1[0]),
                                                   rtol=1e-4),
               "REGULARIZATION_LOSSES = %s, expected [l2 * sum(w1**2)]" % list(reg_values))
    ctx.expect(len(update_ops) == 2, "UPDATE_OPS has %d ops, expected the 2 moving averages"
               % len(update_ops))
    moved = sorted(k for k in frozen_before
                   if not np.array_equal(frozen_before[k], frozen_after[k]))
    ctx.expect(moved == sorted(k for k in frozen_before if "moving_" in k),
               "variables that changed outside the trained set: %s (expected only the moving "
               "averages)" % moved)
    return ctx.check_training(before, after, losses, regularization_losses=len(reg),
                              update_ops=len(update_ops), moving_averages_updated=moved)


def keras_layer_fine_tune(ctx):
    """``hub.KerasLayer(handle, trainable=True)`` on a TF1 Hub module (documented unsupported)."""
    from ._common import keras_fit
    x, t = ctx.spec.train_data()
    with fresh_graph(ctx), ctx.under_test():
        layer = ctx.hub.KerasLayer(ctx.handle, trainable=True, signature="default",
                                   output_key="default")
        before, after, losses, _reg, settled = keras_fit(ctx, layer, x, t)
    return ctx.check_training(before, after, losses, settled)


def pytest_tfhub_compat_variants():
    """Built-in TF1 Hub format variants (registered through the pytest11 entry point)."""
    return [
        Variant(FORMAT, "create", "hub.create_module_spec", EVERY, create_module_spec,
                "hub.create_module_spec(module_fn, tags_and_args=...); Module.export(path, sess)"),
        Variant(FORMAT, "create", "hub.create_module_spec-in-tf.Graph", EAGER_MODES,
                create_module_spec_in_graph,
                "with tf.Graph().as_default(): hub.create_module_spec(...)", artifact="ingraph"),
        Variant(FORMAT, "load", "hub.Module", GRAPH, module_load,
                "m = hub.Module(handle); outputs = m(inputs)"),
        Variant(FORMAT, "load", "hub.Module-signature-as_dict", GRAPH, module_signature_as_dict,
                'm(dict(x1=..., x2=...), signature="sig", as_dict=True)'),
        Variant(FORMAT, "load", "hub.Module-strings", GRAPH, module_strings,
                'm(strings, signature="tokens")  # vocabulary asset'),
        Variant(FORMAT, "load", "hub.Module-tags-train", GRAPH, module_train_tags,
                'm = hub.Module(handle, tags={"train"})'),
        Variant(FORMAT, "load", "hub.Module-attached-message", GRAPH, module_attached_message,
                "m.get_attached_message(key, message_type)"),
        Variant(FORMAT, "load", "hub.load-signatures", EVERY, load_signatures,
                'm = hub.load(handle); outputs = m.signatures["sig"](**inputs)'),
        Variant(FORMAT, "load", "hub.load-signatures-positional", EVERY,
                load_signatures_positional,
                'm = hub.load(handle); outputs = m.signatures["sig"](inputs)'),
        Variant(FORMAT, "load", "hub.load-named-signature", EVERY, load_named_signature,
                'm.signatures["sig"](x1=..., x2=...)'),
        Variant(FORMAT, "load", "hub.load-tags", EVERY, load_tags,
                'm = hub.load(path, tags={"foo", "bar"})'),
        Variant(FORMAT, "load", "hub.KerasLayer", EVERY, keras_layer_plain,
                "m = hub.KerasLayer(handle); tensor_out = m(tensor_in)"),
        Variant(FORMAT, "load", "hub.KerasLayer-signature", EVERY, keras_layer_signature,
                'm = hub.KerasLayer(handle, signature="sig", output_key="key")'),
        Variant(FORMAT, "load", "hub.KerasLayer-signature_outputs_as_dict", EVERY,
                keras_layer_outputs_as_dict,
                'hub.KerasLayer(handle, signature="sig", signature_outputs_as_dict=True)'),
        Variant(FORMAT, "load", "hub.KerasLayer-tags-strings", EVERY, keras_layer_tags_strings,
                'hub.KerasLayer(handle, tags={"train"}, signature="tokens")'),
        Variant(FORMAT, "load", "tf.saved_model.load", EVERY, saved_model_load,
                "tf.saved_model.load(path)"),
        Variant(FORMAT, "fine_tune", "hub.Module-trainable", GRAPH, module_fine_tune,
                'm = hub.Module(handle, trainable=True, tags=["train"]*is_training)'),
        # the documents' evidence for "TF2: fine-tuning not supported"; no document
        # proposes it in graph modes, so it is not attempted there
        Variant(FORMAT, "fine_tune", "hub.KerasLayer-trainable", ("tf2",), keras_layer_fine_tune,
                "m = hub.KerasLayer(handle, trainable=True); Model.fit(...)"),
    ]


__all__ = ["pytest_tfhub_compat_variants", "FORMAT"]
