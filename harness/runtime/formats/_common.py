"""Helpers shared by the format adapters: graph sessions, Keras models, training loops."""
from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np

from ..fixtures import check_training, compare, load_golden


class Context(object):
    """Everything a variant body needs; built once per case by the plugin."""

    def __init__(self, case, runtime, spec, tolerance):
        self.case = case
        self.rt = runtime
        self.tf = runtime.tf
        self.v1 = runtime.tf.compat.v1
        self.spec = spec
        self.atol = float(tolerance.get("atol", 1e-5))
        self.rtol = float(tolerance.get("rtol", 1e-5))

    @property
    def hub(self):
        return self.rt.hub

    @property
    def what(self):
        return "%s/%s/%s producer=%s-%s" % (self.case.format, self.case.operation,
                                            self.case.api, self.case.producer_env,
                                            self.case.producer_mode)

    def compare_golden(self, outputs):
        x, y = load_golden(self.case)
        max_abs, max_rel = compare(outputs, y, self.atol, self.rtol, self.what)
        return {"max_abs_err": max_abs, "max_rel_err": max_rel}

    def check_training(self, before, after, losses):
        return {"details": check_training(before, after, losses, self.what)}


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


def evaluate(ctx, tensors, sess=None):
    """Numpy values of ``tensors``: sess.run in graph mode, .numpy() in eager."""
    if ctx.rt.graph_mode:
        return sess.run(tensors)
    if isinstance(tensors, dict):
        return {k: np.asarray(v) for k, v in tensors.items()}
    if isinstance(tensors, (list, tuple)):
        return [np.asarray(v) for v in tensors]
    return np.asarray(tensors)


def variable_values(ctx, variables, sess=None):
    """{name: value} of variables, in either mode."""
    names = [v.name for v in variables]
    if ctx.rt.graph_mode:
        values = sess.run(list(variables))
    else:
        values = [v.numpy() for v in variables]
    return dict(zip(names, values))


def keras_fit(ctx, layer, x, t):
    """Wrap ``layer`` in a ``tf.keras.Sequential`` and train it with ``Model.fit``."""
    tf, spec = ctx.tf, ctx.spec
    model = tf.keras.Sequential([layer])
    model.compile(optimizer=tf.keras.optimizers.SGD(spec.learning_rate), loss="mse")
    model.build((None, spec.input_dim))
    get = tf.keras.backend.batch_get_value
    weights = list(layer.trainable_weights)
    before = dict(zip([w.name for w in weights], get(weights)))
    history = model.fit(x, t, epochs=spec.train_steps, batch_size=len(x), verbose=0,
                        shuffle=False)
    after = dict(zip([w.name for w in weights], get(weights)))
    result = ctx.check_training(before, after, history.history["loss"])
    result["details"]["model_losses"] = len(model.losses)
    return result
