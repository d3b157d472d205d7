import json
import os
import signal

import pytest

pytest_plugins = ["pytester"]

# The tests send Ctrl-C / SIGHUP to the processes they start, which inherit this one's
# ignored signals: a suite started in the background (`cmd &` ignores SIGINT) or under
# nohup (SIGHUP) would see them ignored. Restore the defaults, whoever started us.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.SIG_DFL)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")


@pytest.fixture
def default_matrix_path():
    return os.path.join(ROOT, "matrix.yaml")


def _refuse(token):
    raise ValueError(f"not strict JSON: {token}")


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def strict_loads(text):
    """``text`` parsed as strict JSON (NaN / Infinity refused) in which no value is the
    string "nan" (a missing value must be null)."""
    value = json.loads(text, parse_constant=_refuse)
    nan = [s for s in _strings(value) if s.strip().lower() == "nan"]
    assert not nan, f"a value is the string {nan[0]!r}"
    return value


@pytest.fixture
def strict_json():
    return strict_loads
