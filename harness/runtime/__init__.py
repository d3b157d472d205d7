"""In-environment runtime: the pytest plugin and the case bodies.

Everything under ``harness.runtime`` runs inside the TensorFlow environments,
from Python 3.7 + TF 1.15 to the newest TF 2.x: standard library, pytest,
pytest-xdist, numpy, tensorflow and tensorflow_hub only, Python 3.7 syntax,
and TensorFlow imported only when a case runs.
"""
