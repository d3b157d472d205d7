"""Helpers shared by the format adapters: graph sessions, Keras models, training loops."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys

import numpy as np

from ..cases import MODEL_SUBDIR
from ..fixtures import check_training, compare, load_golden
from ..records import CheckFailed, HarnessFault


class Context(object):
    """Everything a variant body needs; built once per case by the plugin.

    A variant marks the documented call(s) it tests with ``with ctx.under_test():``.
    Only an exception raised inside such a region is the library's answer (``error``);
    one raised anywhere else in the case (set-up, conversions, checks, the store, the
    harness's hub server) is a harness bug (``harness_error``).

    ``handle`` is what the documents call ``handle``: the stored model directory,
    or a user's directory / URL, or ``url`` when a case sets it (the same model
    served by the harness's hub server at ``hub_url``).  ``compare`` may be called
    several times in one case (several signatures or outputs): the worst error is
    what gets recorded.
    """

    def __init__(self, case, runtime, spec, tolerance, manifest=None, hub_url=None):
        self.case = case
        self.hub_url = hub_url
        self.url = None
        self.rt = runtime
        self.tf = runtime.tf
        # the TF1 API: in compat mode ``tf`` is it already (TF 2.0's tensorflow.compat.v1 has
        # no compat.v1 of its own; later releases alias it)
        self.v1 = getattr(runtime.tf.compat, "v1", None) or runtime.tf
        self.spec = spec
        self.manifest = manifest or {}
        self.atol = float(tolerance.get("atol", 1e-5))
        self.rtol = float(tolerance.get("rtol", 1e-5))
        self.errors = {"max_abs_err": 0.0, "max_rel_err": 0.0}
        self.details = {}
        self._golden = None
        self._raised_under_test = []

    @property
    def v2(self):
        """The TF2 API (``tf.compat.v2``): TF 2.0's tensorflow.compat.v1 has no compat.v2,
        the top-level package always has it (TF 1.15 included)."""
        return getattr(self.tf.compat, "v2", None) or sys.modules["tensorflow"].compat.v2

    @contextlib.contextmanager
    def under_test(self):
        """The documented call(s) under test: what they raise is the library's answer.

        ``CheckFailed`` (a wrong result) and ``HarnessFault`` (the harness's own failure,
        e.g. a helper process that died) keep their meaning inside the region.
        """
        try:
            yield
        except (CheckFailed, HarnessFault):
            raise
        except Exception as exc:
            self._raised_under_test.append(exc)
            raise

    def raised_under_test(self, exc):
        """Whether ``exc`` came out of an ``under_test`` region of this case."""
        return any(exc is seen for seen in self._raised_under_test)

    @property
    def hub(self):
        """``tensorflow_hub``: its import error, where it cannot import, is the library's
        answer to every case that needs it (``import tensorflow_hub`` is the documents'
        first call), wherever the case reaches for ``hub``."""
        with self.under_test():
            return self.rt.hub

    @property
    def handle(self):
        return (self.url or self.manifest.get("handle")
                or os.path.join(self.case.model_dir, MODEL_SUBDIR))

    @property
    def what(self):
        return "%s/%s/%s producer=%s-%s" % (self.case.format, self.case.operation,
                                            self.case.api, self.case.producer_env,
                                            self.case.producer_mode)

    def golden(self, key=None):
        """The producer's golden arrays (all of them, or one by key)."""
        if self._golden is None:
            self._golden = load_golden(self.case)
        if key is None:
            return self._golden
        if key not in self._golden:
            raise HarnessFault("the producer recorded no golden %r (it has %s)"
                               % (key, sorted(self._golden)))
        return self._golden[key]

    def compare(self, outputs, key="y", label=None):
        """Compare ``outputs`` with golden ``key``; keep the worst error; raise CheckFailed."""
        __tracebackhide__ = True
        what = self.what if label is None and key == "y" else \
            "%s %s" % (self.what, label or key)
        max_abs, max_rel = compare(outputs, self.golden(key), self.atol, self.rtol, what)
        self.errors["max_abs_err"] = max(self.errors["max_abs_err"], max_abs)
        self.errors["max_rel_err"] = max(self.errors["max_rel_err"], max_rel)
        return self.result()

    def result(self, **details):
        """What a variant returns: the worst errors so far and every detail noted."""
        self.details.update(details)
        out = dict(self.errors)
        out["details"] = dict(self.details)
        return out

    def check_training(self, before, after, losses, settled=None, every=True, **details):
        self.details.update(check_training(before, after, losses, self.what, settled, every))
        return self.result(**details)

    def expect(self, condition, message):
        """A documented behaviour did not hold: the case is ``failed`` with ``message``."""
        __tracebackhide__ = True
        if not condition:
            raise CheckFailed("%s [%s]" % (message, self.what))


@contextlib.contextmanager
def fresh_graph(ctx):
    """A new default graph (graph modes) or nothing (eager); Keras state reset."""
    tf = ctx.tf
    keras = getattr(tf, "keras", None)
    if ctx.rt.graph_mode:
        with tf.Graph().as_default() as graph:
            yield graph
    else:
        yield None
    try:
        if keras is not None:
            keras.backend.clear_session()
    except Exception:  # clearing Keras state is best effort between cases; not under test
        pass


def session(ctx):
    """A ``tf.compat.v1.Session`` for the current default graph (the TF1 APIs need one)."""
    return ctx.v1.Session()


def initialize(ctx, sess):
    v1 = ctx.v1
    sess.run([v1.global_variables_initializer(), v1.tables_initializer()])


def prepare_dir(path):
    """An empty directory for a model being created (a re-run replaces the old one)."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def keras_session(ctx):
    """Keras's own Session in graph modes (``tf.keras`` 2 and tf-keras keep one), or None:
    eager modes, and Keras 3, which has no graph mode and no ``backend.get_session``."""
    if not ctx.rt.graph_mode:
        return None
    get_session = getattr(ctx.v1.keras.backend, "get_session", None)
    return get_session() if get_session is not None else None


def evaluate(ctx, tensors, sess=None):
    """Numpy values of ``tensors``: sess.run in graph mode, .numpy() in eager."""
    if ctx.rt.graph_mode:
        return sess.run(tensors)
    if isinstance(tensors, dict):
        return {k: evaluate(ctx, v) for k, v in tensors.items()}
    if isinstance(tensors, (list, tuple)):
        return [evaluate(ctx, v) for v in tensors]
    if hasattr(tensors, "numpy"):  # tensors and variables (TF 1.15 eager's restored
        return tensors.numpy()    # UninitializedVariable has no __array__)
    return np.asarray(tensors)


def variable_values(ctx, variables, sess=None):
    """{name: value} of variables, in either mode."""
    names = [v.name for v in variables]
    if ctx.rt.graph_mode:
        values = sess.run(list(variables))
    else:
        values = [v.numpy() for v in variables]
    return dict(zip(names, values))


def run_outputs(ctx, build):
    """Numpy values of what ``build()`` returns, in any mode (a Session in graph modes)."""
    with fresh_graph(ctx):
        outputs = build()
        if ctx.rt.graph_mode:
            with session(ctx) as sess:
                initialize(ctx, sess)
                return sess.run(outputs)
        return evaluate(ctx, outputs)


def local_path(ctx):
    """The handle as a directory (``hub.resolve`` downloads a URL handle into the cache)."""
    handle = ctx.handle
    if "://" in handle:
        return ctx.hub.resolve(handle)
    return handle


def keras_fit(ctx, layer, x, t, head=()):
    """Wrap ``layer`` (+ ``head`` layers) in a ``tf.keras.Sequential``; ``Model.fit``.

    Checks what the TF2 guide promises of ``hub.KerasLayer(..., trainable=True)``:
    the SavedModel's trainable weights are trained (every one changes, the loss
    falls) and its regularization losses reach ``model.losses``. Returns the weights
    before and after, the per-step losses, the regularization losses and ``settled``:
    ``Model.evaluate`` with the initial and the trained weights, the loss without
    dropout's noise. Both are evaluated after ``fit`` (the initial weights put back,
    then the trained ones): an ``evaluate`` before ``fit`` changes the graph ``fit``
    builds in compat mode ("Connecting to invalid output 1 of source node").
    """
    tf, spec = ctx.tf, ctx.spec
    model = tf.keras.Sequential([layer] + list(head))
    model.compile(optimizer=tf.keras.optimizers.SGD(spec.learning_rate), loss="mse")
    model.build((None,) + tuple(x.shape[1:]))
    get = tf.keras.backend.batch_get_value
    weights = list(layer.trainable_weights)
    before = dict(zip([w.name for w in weights], get(weights)))
    reg = [float(v) for v in get(list(model.losses))] if model.losses else []
    initial = model.get_weights()
    history = model.fit(x, t, epochs=spec.train_steps, batch_size=len(x), verbose=0,
                        shuffle=False)
    after = dict(zip([w.name for w in weights], get(weights)))
    trained = model.get_weights()
    model.set_weights(initial)
    loss_before = model.evaluate(x, t, batch_size=len(x), verbose=0)
    model.set_weights(trained)
    settled = (loss_before, model.evaluate(x, t, batch_size=len(x), verbose=0),
               "Model.evaluate with the initial and the trained weights")
    return before, after, history.history["loss"], reg, settled
