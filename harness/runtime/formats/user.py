"""A user's own model (``kind: user``): import it once, then load and fine-tune it everywhere.

*Import* (the create stage) loads the user's directory or URL with
``hub.load``, makes inputs for every serving signature (and for ``__call__``
when the object is callable) from their shapes and dtypes, or takes them from
the user's ``.npz``, runs the model and stores those outputs.  The first env x
mode (matrix order) whose import passed becomes the reference: every consumer
compares its outputs with it.
"""
from __future__ import annotations

import numpy as np

from ..cases import Variant
from ..records import HarnessFault
from . import _reusable
from ._common import fresh_graph, initialize, keras_fit, prepare_dir, run_outputs, session
from ._reusable import EVERY, compare_signatures, sig_key, signature_goldens

USER = ("user",)
GRAPH = ("tf1", "compat")
PASSES = 10  # forward passes averaged for the loss before and after a graph fine-tune
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]


def make_inputs(tf, specs, seed, batch):
    """Deterministic inputs for ``{name: TensorSpec}``: unknown dims become ``batch``."""
    rng = np.random.RandomState(seed)
    out = {}
    for name in sorted(specs):
        ts = specs[name]
        dims = ts.shape.as_list() if ts.shape.rank is not None else [None]
        shape = [batch if d is None else d for d in dims]
        dtype = tf.as_dtype(ts.dtype)
        if dtype.is_floating:
            value = rng.randn(*shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            value = rng.randint(0, 10, size=shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_bool:
            value = rng.randint(0, 2, size=shape).astype(bool)
        elif dtype == tf.string:
            value = np.array([WORDS[i % len(WORDS)] for i in range(int(np.prod(shape)))],
                             dtype=np.bytes_).reshape(shape)
        else:
            raise HarnessFault("cannot make inputs of dtype %s for input %r: give the model "
                               "an inputs .npz (--model-inputs)" % (dtype.name, name))
        out[name] = value
    return out


def input_specs(tf, fn, name):
    """``{input name: TensorSpec}`` of a signature function.

    TF 2.x has ``structured_input_signature``; TF 1.15's signature functions have
    none, but name their inputs (``_arg_keywords``) in the order of ``fn.inputs``.
    """
    structured = getattr(fn, "structured_input_signature", None)
    if structured is not None:
        return structured[1]
    names = getattr(fn, "_arg_keywords", None)
    if not names:
        raise HarnessFault("cannot tell the inputs of signature %r: give the model an "
                           "inputs .npz (--model-inputs)" % name)
    return {n: tf.TensorSpec(t.shape, t.dtype) for n, t in zip(names, fn.inputs)}


def _call_function(obj):
    """The concrete ``__call__`` for one tensor argument (``training=False`` if traced)."""
    call = obj.__call__ if callable(obj) else None
    fns = getattr(call, "concrete_functions", None) or []
    for fn in sorted(fns, key=lambda f: str(f.structured_input_signature)):
        args, kwargs = fn.structured_input_signature
        if args and hasattr(args[0], "dtype") and kwargs.get("training", False) is False \
                and (len(args) < 2 or args[1] in (False, None)):
            return fn
    return None


def import_model(ctx):
    """``obj = hub.load(handle)``; run every serving signature (and ``obj(x)``) once."""
    tf, spec = ctx.tf, ctx.spec
    prepare_dir(ctx.case.model_dir)
    given = {}
    if spec.inputs:
        with np.load(spec.inputs) as data:
            given = {k: data[k] for k in data.files}
    feeds = {}

    def build():
        obj = ctx.hub.load(spec.handle)
        names = [spec.signature] if spec.signature else sorted(obj.signatures)
        tensors = {}
        for name in names:
            fn = obj.signatures[name]
            specs = input_specs(tf, fn, name)
            # made only for the inputs the user's .npz does not give
            made = make_inputs(tf, {k: v for k, v in specs.items() if k not in given},
                               spec.seed, spec.batch)
            feeds[name] = {k: given[k] if k in given else made[k] for k in specs}
            outs = fn(**{k: tf.constant(v) for k, v in feeds[name].items()})
            tensors.update({sig_key(name, "out", k): v for k, v in outs.items()})
        call = _call_function(obj) if ctx.case.format != "tf1_hub" else None
        if call is not None:
            arg = call.structured_input_signature[0][0]
            x = given["x"] if "x" in given else \
                make_inputs(tf, {"x": arg}, spec.seed, spec.batch)["x"]
            y = obj(tf.constant(x))
            if hasattr(y, "dtype"):  # obj(x) -> a dict or a tuple: no "call" to compare
                feeds[""], tensors["y"] = {"x": x}, y
        return tensors

    with ctx.under_test():  # hub.load, its signatures and __call__ (inputs: HarnessFault)
        golden = run_outputs(ctx, build)
    ctx.expect(golden, "%s has no serving signatures and no __call__ to run" % spec.handle)
    for name, inputs in feeds.items():
        for k, v in inputs.items():
            golden["x" if not name else sig_key(name, "in", k)] = v
    caps = (["signatures"] if any(n for n in feeds) else []) + (["call"] if "" in feeds else [])
    return {"golden": golden, "manifest": {"handle": spec.handle, "capabilities": caps,
                                           "signatures": sorted(n for n in feeds if n)}}


def _float_outputs(outputs):
    return [v for v in outputs.values() if v.dtype.is_floating]


def module_signatures(ctx):
    """``m = hub.Module(handle); m(inputs, signature=sig, as_dict=True)`` for every signature."""
    sigs = signature_goldens(ctx.golden())

    def build():
        m = ctx.hub.Module(ctx.handle)
        return {n: m({k: ctx.v1.constant(v) for k, v in ins.items()}, signature=n,
                     as_dict=True)
                for n, (ins, _o) in sigs.items()}

    with ctx.under_test():
        got = run_outputs(ctx, build)
    return compare_signatures(ctx, sigs, got)


def keras_layer_outputs_as_dict(ctx):
    """``hub.KerasLayer(handle, signature=sig, signature_outputs_as_dict=True)`` per signature."""
    sigs = signature_goldens(ctx.golden())

    def build():
        return {n: ctx.hub.KerasLayer(ctx.handle, signature=n, signature_outputs_as_dict=True)(
            {k: ctx.tf.constant(v) for k, v in ins.items()}) for n, (ins, _o) in sigs.items()}

    with ctx.under_test():
        got = run_outputs(ctx, build)
    return compare_signatures(ctx, sigs, got)


def keras_layer_fit(ctx):
    """``hub.KerasLayer(handle, trainable=True)`` + a ``Dense`` head, trained with ``Model.fit``."""
    tf, x = ctx.tf, ctx.golden("x")
    t = np.random.RandomState(ctx.spec.seed).randn(len(x), 1).astype(np.float32)
    with fresh_graph(ctx), ctx.under_test():
        layer = ctx.hub.KerasLayer(ctx.handle, trainable=True)
        head = [tf.keras.layers.Flatten(), tf.keras.layers.Dense(1)]
        before, after, losses, _reg, settled = keras_fit(ctx, layer, x, t, head)
    return ctx.check_training(before, after, losses, settled, every=False,
                              trainable=len(before))


def module_fine_tune(ctx):
    """``hub.Module(handle, trainable=True, tags={"train"} if it has one)`` + an optimizer."""
    hub, tf, spec = ctx.hub, ctx.v1, ctx.spec
    sigs = signature_goldens(ctx.golden())
    name = sorted(sigs)[0]
    with fresh_graph(ctx), ctx.under_test():
        tags = {"train"} if {"train"} in [set(t) for t in
                                          hub.load_module_spec(ctx.handle).get_tags()] else None
        m = hub.Module(ctx.handle, trainable=True, tags=tags)
        outs = m({k: tf.constant(v) for k, v in sigs[name][0].items()}, signature=name,
                 as_dict=True)
        floats = _float_outputs(outs)
        ctx.expect(floats, "signature %r has no float output to train on" % name)
        loss = tf.add_n([tf.reduce_mean(tf.square(v)) for v in floats])
        train_op = tf.train.GradientDescentOptimizer(spec.learning_rate).minimize(loss)
        variables = tf.trainable_variables()
        with session(ctx) as sess:
            initialize(ctx, sess)
            def mean_loss():
                return np.mean([sess.run(loss) for _ in range(PASSES)])

            before = dict(zip([v.name for v in variables], sess.run(variables)))
            loss_before = mean_loss()
            losses = [sess.run([train_op, loss])[1] for _ in range(spec.train_steps)]
            after = dict(zip([v.name for v in variables], sess.run(variables)))
            settled = (loss_before, mean_loss(),
                       "mean loss of %d passes before and after training" % PASSES)
    return ctx.check_training(before, after, losses, settled, every=False,
                              trainable=len(before))


def pytest_tfhub_compat_variants():
    """Import, load and fine-tune variants for users' models, in every format (the SavedModel
    formats' shared loads in ``_reusable`` take ``kind: user`` too)."""
    found = []
    for fmt in ("tf1_hub", "saved_model", "keras_saved_model"):
        found.append(Variant(fmt, "create", "import", EVERY, import_model,
                             "obj = hub.load(handle)  # reference run", kinds=USER))
    found += [
        Variant("tf1_hub", "load", "hub.load-signatures", EVERY, _reusable.signatures,
                'obj = hub.load(handle); obj.signatures[sig](**inputs)', kinds=USER,
                needs="signatures"),
        Variant("tf1_hub", "load", "hub.Module", GRAPH, module_signatures,
                'm = hub.Module(handle); m(inputs, signature=sig, as_dict=True)', kinds=USER,
                needs="signatures"),
        Variant("tf1_hub", "load", "hub.KerasLayer-signature_outputs_as_dict", EVERY,
                keras_layer_outputs_as_dict,
                "hub.KerasLayer(handle, signature=sig, signature_outputs_as_dict=True)",
                kinds=USER, needs="signatures"),
        Variant("tf1_hub", "fine_tune", "hub.Module-trainable", GRAPH, module_fine_tune,
                'hub.Module(handle, trainable=True, tags={"train"})', kinds=USER,
                needs="signatures"),
    ]
    for fmt in ("saved_model", "keras_saved_model"):
        found.append(Variant(fmt, "fine_tune", "hub.KerasLayer-trainable-fit", EVERY,
                             keras_layer_fit, "hub.KerasLayer(handle, trainable=True) + fit",
                             kinds=USER, needs="call"))
    return found


__all__ = ["pytest_tfhub_compat_variants", "make_inputs"]
