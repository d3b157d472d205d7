"""Mode bootstrap: how TensorFlow is driven inside one pytest process.

- ``tf1``: TF 1.x as imported (graph mode).
- ``tf1_eager``: TF 1.15 with ``tf.compat.v1.enable_eager_execution()`` (the migration guide:
  the new ``hub.load`` / ``hub.KerasLayer`` API works in TF 1.15 "in eager and graph mode").
- ``compat``: ``import tensorflow.compat.v1 as tf; tf.disable_v2_behavior()`` in TF2,
  exactly the documents' footnote [1].
- ``tf2``: TF2 eager.

Modes are process-global, which is why every env x mode is its own process.
"""
from __future__ import annotations

import platform
import sys


class EnvImportError(Exception):
    """``import tensorflow`` failed: no case can run in this environment."""


class Runtime(object):
    """What a case body gets: the mode's ``tf`` module, ``hub`` and versions."""

    def __init__(self, mode, tf, hub, hub_error, info):
        self.mode = mode
        self.tf = tf
        self._hub = hub
        self.hub_error = hub_error
        self.info = info

    @property
    def graph_mode(self):
        return self.mode in ("tf1", "compat")

    @property
    def hub(self):
        """``tensorflow_hub``; re-raises its import error inside the case that needs it."""
        if self.hub_error is not None:
            raise self.hub_error
        return self._hub


def bootstrap(mode, device="cpu", backend="venv"):
    """Import TF in ``mode`` and return a ``Runtime``; raise EnvImportError if TF is unusable."""
    try:
        import tensorflow as tf2
    except Exception as exc:  # any failure to import TF makes the whole env unusable
        raise EnvImportError("import tensorflow failed: %s: %s" % (type(exc).__name__, exc))
    major = int(tf2.__version__.split(".")[0])
    if mode == "tf1":
        if major != 1:
            raise EnvImportError("mode tf1 needs TensorFlow 1.x, found %s" % tf2.__version__)
        tf = tf2
    elif mode == "tf1_eager":
        if major != 1:
            raise EnvImportError("mode tf1_eager needs TensorFlow 1.x, found %s" % tf2.__version__)
        tf2.compat.v1.enable_eager_execution()
        tf = tf2
    elif mode == "compat":
        if major < 2:
            raise EnvImportError("mode compat needs TensorFlow 2.x, found %s" % tf2.__version__)
        import tensorflow.compat.v1 as tf
        tf.disable_v2_behavior()
    elif mode == "tf2":
        if major < 2:
            raise EnvImportError("mode tf2 needs TensorFlow 2.x, found %s" % tf2.__version__)
        tf = tf2
    else:
        raise EnvImportError("unknown mode %r" % (mode,))
    hub, hub_error = None, None
    try:
        import tensorflow_hub as hub
    except Exception as exc:  # recorded per case: the library under test cannot import
        hub_error = exc
    info = {
        "python": platform.python_version(),
        "tensorflow": tf2.__version__,
        "tensorflow_hub": getattr(hub, "__version__", None) if hub is not None else
        dist_version("tensorflow-hub"),
        "keras": keras_flavour(tf2),
        "device": device,
        "backend": backend,
    }
    return Runtime(mode, tf, hub, hub_error, info)


def keras_flavour(tf):
    """Which Keras ``tf.keras`` is: ``keras 3.x``, ``tf_keras 2.x`` or ``tf.keras 2.x``."""
    try:
        k = tf.keras
        name = getattr(k, "__name__", "")
    except Exception as exc:  # Keras itself may fail to import
        return "unavailable (%s)" % type(exc).__name__
    if name.startswith("tf_keras"):
        return "tf_keras " + str(dist_version("tf-keras") or dist_version("tf_keras"))
    if name.startswith("keras"):
        return "keras " + str(dist_version("keras"))
    return "tf.keras " + str(getattr(k, "__version__", "?"))


def dist_version(name):
    try:
        if sys.version_info >= (3, 8):
            from importlib import metadata
        else:  # Python 3.7: pkg_resources-free fallback
            import importlib_metadata as metadata  # type: ignore
        return metadata.version(name)
    except Exception:  # not installed / no metadata backport
        return None
