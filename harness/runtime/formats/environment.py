"""Environment health: is each documented API usable here at all?

One case per check per env x mode, in the create stage, with no model
(``ctx.spec`` is None, ``ctx.handle`` is not used); the case id reads
``<env>/<mode>/environment/health/<api>/env``.  Each check is the one line a
reader of the documents would write.  It passes when that line works and lets
the real exception propagate when it does not (recorded as ``error`` with the
library's own type and message: ``ModuleNotFoundError: No module named
'pkg_resources'``, ``AttributeError: module 'tensorflow_hub' has no attribute
'Module'``, ...).  Nothing is caught and converted; ``ctx.expect`` is only for
"it exists but does the wrong thing".  Versions go into ``details`` first, so a
check that raises still says what it ran against.

What cannot fail is not a check: which Keras ``tf.keras`` is and which one hub
builds on are facts about the env (``facts``), written once per env x mode
beside the records and shown with the env's versions in the report.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings

import numpy as np

from ..cases import MODES, Variant
from ..modes import dist_version

FORMAT = "environment"
OPERATION = "health"
TF2_ONLY = ("tf2",)
# the attributes of ``tensorflow_hub`` the documents use, in either column
HUB_ATTRIBUTES = ("Module", "create_module_spec", "load", "KerasLayer", "resolve",
                  "load_module_spec", "attach_message", "add_signature")


def _note(ctx, **details):
    """Record ``details`` now, so they survive an exception raised later in the check."""
    ctx.details.update(details)


def _versions(ctx):
    """The versions every check records: TF (and the mode's module) and the installed hub."""
    return {"tensorflow": ctx.rt.info.get("tensorflow"),
            "tensorflow_hub": dist_version("tensorflow-hub"), "mode": ctx.rt.mode}


def import_hub(ctx):
    """``import tensorflow_hub as hub``: the import error of the library, re-raised as is.

    tensorflow_hub 0.13-0.15 import ``pkg_resources`` at import time; with
    setuptools >= 82 (which dropped it) the import fails here.
    """
    _note(ctx, setuptools=dist_version("setuptools"), **_versions(ctx))
    hub = ctx.hub  # its import error is the library's answer
    return ctx.result(hub_version=getattr(hub, "__version__", None),
                      hub_file=getattr(hub, "__file__", None))


def import_pkg_resources(ctx):
    """``import pkg_resources``: what tensorflow_hub >= 0.13 needs at import.

    setuptools 82 removed ``pkg_resources``; the setuptools version is recorded
    before the import (None when it is not installed), and any warning the
    import gives (setuptools >= 81 announces the removal) is kept in details.
    """
    _note(ctx, setuptools=dist_version("setuptools"), python=ctx.rt.info.get("python"))
    already = "pkg_resources" in sys.modules
    with warnings.catch_warnings(record=True) as caught, ctx.under_test():
        warnings.simplefilter("always")
        import pkg_resources
    return ctx.result(already_imported=already, pkg_resources_file=pkg_resources.__file__,
                      warnings=["%s: %s" % (w.category.__name__, w.message) for w in caught])


def _hub_attribute(name):
    """A check that ``hub.<name>`` exists (AttributeError as is when it does not)."""

    def check(ctx):
        _note(ctx, **_versions(ctx))
        with ctx.under_test():
            obj = getattr(ctx.hub, name)
        return ctx.result(defined_in=getattr(obj, "__module__", None),
                          kind=type(obj).__name__)

    check.__name__ = "hub_" + name
    check.__doc__ = "``hub.%s`` is there (tensorflow_hub 0.16 removed the TF1 APIs)." % name
    return check


def estimator(ctx):
    """``tf.estimator.Estimator`` in the mode's ``tf`` (TF >= 2.16 has no ``tf.estimator``)."""
    _note(ctx, tensorflow_estimator=dist_version("tensorflow-estimator")
          or dist_version("tensorflow_estimator"), **_versions(ctx))
    with ctx.under_test():
        cls = ctx.tf.estimator.Estimator
    return ctx.result(defined_in=getattr(cls, "__module__", None))


def saved_model_save(ctx):
    """``tf.saved_model.save`` as a user of the mode reaches it.

    The documents: "The TF2 API tf.saved_model.save() can be called from within
    compat mode".  A compat-mode user has ``import tensorflow.compat.v1 as tf``,
    so the name they can call is ``tf.compat.v1.saved_model.save`` (``ctx.tf``
    is that module in compat mode, TF 1.x itself in tf1, TF2 in tf2); reaching
    for ``tensorflow.saved_model.save`` instead would test a different line than
    the one the user writes.  An AttributeError there is the finding.  Whether
    it is the very function ``tensorflow.saved_model.save`` (the TF2 API in a TF2
    install) is recorded as ``same_as_top_level``.
    """
    _note(ctx, **_versions(ctx))
    with ctx.under_test():
        save = ctx.tf.saved_model.save
    top = sys.modules.get("tensorflow")
    top_save = getattr(getattr(top, "saved_model", None), "save", None)
    return ctx.result(defined_in=getattr(save, "__module__", None),
                      same_as_top_level=save is top_save)


def _config_option(experimental):
    """``session_config[.experimental].share_cluster_devices_in_session = True`` (migration
    guide: needed for Estimator training with parameter servers; not experimental since TF 2.2)."""
    def run(ctx):
        with ctx.under_test():
            config = ctx.v1.ConfigProto()
            target = config.experimental if experimental else config
            target.share_cluster_devices_in_session = True
        return ctx.result(tensorflow=ctx.rt.info["tensorflow"])

    return run


def _tiny_saved_model(tf, path):
    """A TF2 SavedModel of ``x -> x * v`` (v = 2.0), saved with ``tf.saved_model.save``."""

    class Times(tf.Module):
        def __init__(self):
            super(Times, self).__init__()
            self.v = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return x * self.v

    tf.saved_model.save(Times(), path)


def keras_layer_in_sequential(ctx):
    """``tf.keras.Sequential([hub.KerasLayer(path)])`` builds and computes (TF2 mode).

    A throwaway SavedModel (``x * 2``) is written to a temporary directory.  With
    Keras 3 as ``tf.keras`` (TF >= 2.16 without ``TF_USE_LEGACY_KERAS=1``) the
    Sequential refuses the layer ("Only instances of `keras.Layer` can be added
    to a Sequential model"); that error is the result.
    """
    tf = ctx.tf
    _note(ctx, keras=ctx.rt.info.get("keras"),
          TF_USE_LEGACY_KERAS=os.environ.get("TF_USE_LEGACY_KERAS"), **_versions(ctx))
    hub = ctx.hub
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    path = tempfile.mkdtemp(prefix="tfhub_compat_health_")
    try:
        _tiny_saved_model(tf, path)  # set-up (tf.saved_model.save has its own check)
        with ctx.under_test():
            model = tf.keras.Sequential([hub.KerasLayer(path)])
            y = model(tf.constant(x))
    finally:
        shutil.rmtree(path, ignore_errors=True)
    y = np.asarray(y)
    ctx.expect(np.allclose(y, 2.0 * x),
               "Sequential([hub.KerasLayer]) of x*2 gave %s for %s" % (y.tolist(), x.tolist()))
    return ctx.result(output=y.tolist())


def _class_path(cls):
    return "%s.%s" % (cls.__module__, cls.__name__) if cls is not None else None


def _keras_layer_class(tf):
    """``tf.keras.layers.Layer`` as ``module.Name`` (which Keras it is, whatever the
    module's ``__name__``: ``tf.keras`` is re-bound to ``tensorflow.keras`` once Keras has
    been used in TF 2.15), or why Keras cannot be imported: informational only."""
    try:
        return _class_path(tf.keras.layers.Layer)
    except Exception as exc:  # informational: a broken Keras is reported, not raised
        return "unavailable (%s: %s)" % (type(exc).__name__, exc)


def facts(runtime):
    """What cannot fail, so is no check: which Keras ``tf.keras`` is, and which one hub uses.

    ``keras`` is the run's Keras (``modes.keras_flavour`` at bootstrap);
    ``tf_keras_layer`` is the class ``tf.keras.layers.Layer`` of the mode's ``tf``
    module; ``hub_keras_layer_base`` is the base class of ``hub.KerasLayer``
    (tensorflow_hub 0.16 builds on ``tf_keras`` when it is installed), or why
    hub is unavailable.  A ``hub.KerasLayer`` only fits in ``tf.keras`` models when
    the two are the same Keras.
    """
    found = {"tensorflow": runtime.info.get("tensorflow"),
             "tensorflow_hub": dist_version("tensorflow-hub"), "mode": runtime.mode,
             "keras": runtime.info.get("keras"),
             "tf_keras_layer": _keras_layer_class(runtime.tf),
             "TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS"),
             "keras_dist": dist_version("keras"), "tf_keras_dist": dist_version("tf-keras")}
    if runtime.hub_error is not None:
        found["hub_keras_layer_base"] = "unavailable (%s)" % type(runtime.hub_error).__name__
    else:
        bases = getattr(getattr(runtime.hub, "KerasLayer", None), "__mro__", ())[1:2]
        found["hub_keras_layer_base"] = _class_path(bases[0]) if bases else None
    return found


def mode_bootstrap(ctx):
    """The mode is what the documents say: ``compat`` is ``import tensorflow.compat.v1 as
    tf; tf.disable_v2_behavior()`` (footnote [1]: graph mode, ``tf`` is ``compat.v1``),
    ``tf1`` TF 1.x graph mode, ``tf1_eager`` TF 1.15 eager, ``tf2`` TF2 eager."""
    tf, mode = ctx.tf, ctx.rt.mode
    with ctx.under_test():
        eager = bool(tf.executing_eagerly())
    _note(ctx, executing_eagerly=eager, tf_module=tf.__name__, **_versions(ctx))
    ctx.expect(eager == (mode in ("tf1_eager", "tf2")),
               "tf.executing_eagerly() is %s in mode %s" % (eager, mode))
    ctx.expect(mode != "compat" or tf.__name__.endswith("compat.v1"),
               "compat mode's tf is %s, not tensorflow.compat.v1" % tf.__name__)
    return ctx.result()


def _variant(api, run, call, modes=MODES):
    return Variant(FORMAT, OPERATION, api, tuple(modes), run, call, kinds=())


def pytest_tfhub_compat_variants():
    """The environment health checks (registered through the pytest11 entry point)."""
    checks = [
        _variant("import-tensorflow_hub", import_hub, "import tensorflow_hub as hub"),
        _variant("pkg_resources", import_pkg_resources, "import pkg_resources"),
    ]
    checks += [_variant("hub." + name, _hub_attribute(name), "hub." + name)
               for name in HUB_ATTRIBUTES]
    checks += [
        _variant("tf.estimator", estimator, "tf.estimator.Estimator"),
        _variant("tf.saved_model.save", saved_model_save, "tf.saved_model.save"),
        _variant("ConfigProto.experimental.share_cluster_devices_in_session",
                 _config_option(True),
                 "session_config.experimental.share_cluster_devices_in_session = True"),
        _variant("ConfigProto.share_cluster_devices_in_session", _config_option(False),
                 "session_config.share_cluster_devices_in_session = True  # TF >= 2.2"),
        _variant("hub.KerasLayer-in-tf.keras.Sequential", keras_layer_in_sequential,
                 "tf.keras.Sequential([hub.KerasLayer(handle)])", TF2_ONLY),
        _variant("mode-bootstrap", mode_bootstrap,
                 "import tensorflow.compat.v1 as tf; tf.disable_v2_behavior()  # compat"),
    ]
    return checks


__all__ = ["pytest_tfhub_compat_variants", "FORMAT"]
