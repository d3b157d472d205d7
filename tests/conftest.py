import contextlib
import json
import os
import shutil
import signal
import tempfile

import pytest

pytest_plugins = ["pytester"]

# The tests send Ctrl-C / SIGHUP to the processes they start, which inherit this one's
# ignored signals: a suite started in the background (`cmd &` ignores SIGINT) or under
# nohup (SIGHUP) would see them ignored. Restore the defaults, whoever started us.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.SIG_DFL)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


@pytest.fixture(scope="session", autouse=True)
def no_leftovers(tmp_path_factory):
    """Whatever a test does or suffers, it leaves no process and no temporary directory.

    This process becomes the subreaper of everything the tests start (an orphan is
    reparented here, not to init), and the system's temporary directory is one of the
    session's own (TMPDIR, inherited by every child); at the end, every process still
    below this one is killed and that directory is removed.
    """
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the tests' own clean-up only
        pass
    tmp = str(tmp_path_factory.mktemp("tmpdir"))
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"], tempfile.tempdir = tmp, None
    yield
    left = _descendants(os.getpid())
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    if saved is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved
    tempfile.tempdir = None
    shutil.rmtree(tmp, ignore_errors=True)
    if left:
        print(f"\nconftest: killed {len(left)} processes the tests left behind: {left}")


def _descendants(pid):
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found
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
