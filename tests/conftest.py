import os

import pytest

pytest_plugins = ["pytester"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")


@pytest.fixture
def default_matrix_path():
    return os.path.join(ROOT, "matrix.yaml")
