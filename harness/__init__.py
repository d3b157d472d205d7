"""tfhub-compat: an executable TF Hub compatibility table.

Layout: ``harness.runtime`` runs inside the TensorFlow environments (the pytest
plugin and case bodies); everything else is host side: ``config`` (matrix.yaml),
``expand``, ``backends`` (provisioning), ``stages`` (one pytest process per
env x mode), ``collect``, ``report`` and ``pipeline`` (the steps in order).
Nothing is imported here, so the in-environment plugin stays light.
"""

__version__ = "0.1.0"
