"""Fine-tuning a SavedModel the two further ways the documents describe.

- ``Estimator-model_fn``: the compatibility table's TF1.15 / compat-mode claim,
  "trained in an Estimator whose model_fn wraps the Model per the custom model_fn
  guide", with the migration guide's ``experimental.share_cluster_devices_in_session``
  set in the Estimator's ``RunConfig``.  Estimator builds its own graph, so it is
  attempted in every mode (TF >= 2.16 has no ``tf.estimator``: that AttributeError is
  the evidence).
- ``re-export``: the TF2 guide's "re-exporting the fine-tuning result":
  ``loaded_obj = hub.load(h)``, ``hub.KerasLayer(loaded_obj, trainable=True)``,
  ``Model.fit``, ``tf.saved_model.save(loaded_obj, export_dir)``; the export is then
  reloaded with ``hub.load`` in another Python process in the same mode and must give
  the fine-tuned outputs (and not the original ones).
"""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

from ..cases import MODES
from ..fixtures import compare
from ._common import fresh_graph, keras_fit, keras_session, local_path
from ._elsewhere import Pending
from ._reusable import check_regularization

EVERY = MODES


# ---- Estimator -------------------------------------------------------------------------

def _run_config(ctx, estimator, model_dir):
    """The migration guide's RunConfig: ``share_cluster_devices_in_session = True``."""
    session_config = ctx.v1.ConfigProto()
    session_config.experimental.share_cluster_devices_in_session = True
    return estimator.RunConfig(model_dir=model_dir, session_config=session_config)


def _model_fn(ctx, estimator, built):
    """A custom model_fn (migration guide) around ``hub.KerasLayer(handle, trainable=True)``.

    Loss = MSE + the Keras model's regularization losses (``hub.KerasLayer`` does not
    fill graph collections); the train op also runs ``model.updates``.  The tensors
    the recording hook needs are left in ``built``.
    """
    tf, v1, spec = ctx.tf, ctx.v1, ctx.spec

    def model_fn(features, labels, mode):
        model = tf.keras.Sequential([ctx.hub.KerasLayer(ctx.handle, trainable=True)])
        training = mode == estimator.ModeKeys.TRAIN
        predictions = model(features, training=training)
        if mode == estimator.ModeKeys.PREDICT:
            return estimator.EstimatorSpec(mode=mode, predictions=predictions)
        reg_losses = list(model.losses)
        loss = tf.reduce_mean(tf.square(predictions - labels))
        if reg_losses:
            loss = loss + tf.add_n(reg_losses)
        optimizer = v1.train.GradientDescentOptimizer(spec.learning_rate)
        minimize = optimizer.minimize(loss, var_list=model.trainable_variables,
                                      global_step=v1.train.get_or_create_global_step())
        train_op = tf.group(minimize, *list(model.updates))
        built.update(loss=loss, variables=list(model.trainable_variables),
                     reg_losses=reg_losses)
        return estimator.EstimatorSpec(mode=mode, predictions=predictions, loss=loss,
                                       train_op=train_op)

    return model_fn


def _recorder(ctx, built, record):
    """A SessionRunHook: trainable values at step 0 and at the end, the loss of each step."""
    v1 = ctx.v1

    class Recorder(v1.train.SessionRunHook):
        def after_create_session(self, session, coord):
            variables = built["variables"]
            record["names"] = [v.op.name for v in variables]
            record["before"] = session.run(variables)
            record["reg"] = [float(r) for r in session.run(built["reg_losses"])]

        def before_run(self, run_context):
            return v1.train.SessionRunArgs(built["loss"])

        def after_run(self, run_context, run_values):
            record["losses"].append(float(run_values.results))

        def end(self, session):
            record["after"] = session.run(built["variables"])

    return Recorder()


def _saved_weights(ctx):
    """The arrays in the SavedModel's own variables checkpoint."""
    reader = ctx.v1.train.load_checkpoint(os.path.join(local_path(ctx), "variables",
                                                       "variables"))
    values = [np.asarray(reader.get_tensor(name))
              for name in sorted(reader.get_variable_to_shape_map())]
    return [v for v in values if v.dtype.kind == "f"]


def estimator_model_fn(ctx):
    """``tf.estimator.Estimator(model_fn)`` fine-tunes ``hub.KerasLayer(handle, trainable=True)``.

    Checks: training starts from the SavedModel's weights, every trainable variable
    changes, the loss falls, the regularization loss reaches the loss, and the
    Estimator's checkpoint holds the fine-tuned values.
    """
    tf, spec = ctx.tf, ctx.spec
    x, t = spec.train_data()
    model_dir = tempfile.mkdtemp(prefix="tfhub-compat-estimator-")
    built, record = {}, {"losses": []}
    try:
        # the custom model_fn guide's code (model_fn, RunConfig, the recording hook's
        # session.run calls run inside Estimator.train)
        with ctx.under_test():
            estimator = tf.estimator  # TF >= 2.16: AttributeError, the evidence
            est = estimator.Estimator(model_fn=_model_fn(ctx, estimator, built),
                                      config=_run_config(ctx, estimator, model_dir))
            est.train(lambda: tf.data.Dataset.from_tensors((x, t)).repeat(),
                      steps=spec.train_steps, hooks=[_recorder(ctx, built, record)])
            names = record["names"]
            checkpoint = {n: est.get_variable_value(n) for n in names}
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    before = dict(zip(names, record["before"]))
    after = dict(zip(names, record["after"]))
    _check_estimator(ctx, before, after, checkpoint, record["reg"])
    return ctx.check_training(before, after, record["losses"], regularization_loss=record["reg"],
                              step_losses=record["losses"], share_cluster_devices_in_session=True)


def _check_estimator(ctx, before, after, checkpoint, reg):
    """Started from the SavedModel's weights; the checkpoint holds the trained ones."""
    saved = _saved_weights(ctx)
    fresh = [n for n, v in sorted(before.items())
             if not any(w.shape == v.shape and np.array_equal(w, v) for w in saved)]
    ctx.expect(not fresh, "at step 0 the Estimator's variables %s do not hold the SavedModel's "
                          "weights" % fresh)
    stale = [n for n in sorted(after) if not np.allclose(checkpoint[n], after[n])]
    ctx.expect(not stale, "the Estimator's checkpoint does not hold the trained %s" % stale)
    check_regularization(ctx, reg, before, "model.losses")


# ---- re-export -------------------------------------------------------------------------

def _initialize_loaded(ctx):
    """Graph modes: ``hub.load`` made variables (the trainable ones and e.g. a
    Checkpoint's ``save_counter``) that must be initialized (restored from the
    SavedModel) in the session ``Model.fit`` will use: Keras's own session.  Keras
    itself initializes only the layer's weights, and ``tf.saved_model.save`` saves them all.
    Keras 3 keeps no session (it has no graph mode): nothing to initialize, and the
    documented calls that follow say what Keras 3 does with the layer.
    """
    sess = keras_session(ctx)
    if sess is not None:
        v1 = ctx.v1
        sess.run([v1.global_variables_initializer(), v1.tables_initializer()])


def _save_trained(ctx, loaded_obj, export_dir):
    """``tf.saved_model.save(loaded_obj, export_dir)``; in a graph, inside Keras's session
    (the one ``Model.fit`` trained in), so the saver writes the trained values."""
    sess = keras_session(ctx)
    if sess is not None:
        with sess.as_default():
            ctx.tf.saved_model.save(loaded_obj, export_dir)
    else:
        ctx.tf.saved_model.save(loaded_obj, export_dir)


def re_export(ctx):
    """The TF2 guide's re-export of a fine-tuned ``hub.load`` object, reloaded elsewhere."""
    tf, spec = ctx.tf, ctx.spec
    x, t = spec.train_data()
    xg = ctx.golden("x")
    work = tempfile.mkdtemp(prefix="tfhub-compat-reexport-")
    export_dir = os.path.join(work, "finetuned_model_export")
    try:
        # the guide's calls; in graph modes, with what a TF1 user does with variables
        # (initialize them in the session Keras trains in)
        with fresh_graph(ctx), ctx.under_test():
            loaded_obj = ctx.hub.load(ctx.handle)
            _initialize_loaded(ctx)
            hub_layer = ctx.hub.KerasLayer(loaded_obj, trainable=True)
            before, after, losses, reg, settled = keras_fit(ctx, hub_layer, x, t)
            tuned = tf.keras.backend.batch_get_value(
                [hub_layer(tf.constant(xg), training=False)])[0]
            _save_trained(ctx, loaded_obj, export_dir)
        pending = Pending(ctx.rt.mode, export_dir, xg)
        pending.wait()
        with ctx.under_test():  # hub.load(export_dir)(x) in a fresh process
            reloaded = pending.result()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    shift = _check_reloaded(ctx, np.asarray(tuned), reloaded)
    return ctx.check_training(before, after, losses, settled, regularization_loss=reg,
                              step_losses=[float(v) for v in losses],
                              reloaded_in_another_process=True, max_shift_from_original=shift)


def _check_reloaded(ctx, tuned, reloaded):
    """The reloaded export gives the fine-tuned outputs, not the original model's."""
    original = ctx.golden("y")
    ctx.expect(not np.allclose(tuned, original, atol=ctx.atol, rtol=ctx.rtol),
               "the fine-tuned model's outputs equal the original's: nothing was fine-tuned")
    ctx.expect(not np.allclose(reloaded, original, atol=ctx.atol, rtol=ctx.rtol),
               "the re-exported SavedModel gives the original (not fine-tuned) outputs")
    max_abs, max_rel = compare(reloaded, tuned, ctx.atol, ctx.rtol,
                               "%s reloaded export vs fine-tuned model" % ctx.what)
    ctx.errors["max_abs_err"] = max(ctx.errors["max_abs_err"], max_abs)
    ctx.errors["max_rel_err"] = max(ctx.errors["max_rel_err"], max_rel)
    return float(np.max(np.abs(np.asarray(reloaded, np.float64) - original)))


def variants(fmt, Variant):
    """The Estimator and re-export fine-tune variants, registered under format ``fmt``."""
    return [
        Variant(fmt, "fine_tune", "Estimator-model_fn", EVERY, estimator_model_fn,
                "tf.estimator.Estimator(model_fn wrapping hub.KerasLayer(handle, "
                "trainable=True)), session_config.share_cluster_devices_in_session",
                kinds=("mlp",)),
        Variant(fmt, "fine_tune", "re-export", EVERY, re_export,
                "loaded_obj = hub.load(h); hub.KerasLayer(loaded_obj, trainable=True); "
                "model.fit(...); tf.saved_model.save(loaded_obj, export_dir)",
                kinds=("mlp",)),
    ]
