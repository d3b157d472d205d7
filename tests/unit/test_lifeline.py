"""A stage's processes die with the host that started it, even when the host is SIGKILLed
(harness.runtime.lifeline, called by the plugin in the pytest main and each xdist worker;
the main's process group follows it)."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.runtime.lifeline import EXIT_ORPHANED, PARENT_PID, die_with_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl: Linux only")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# host -> "pytest main" (a session of its own) -> "xdist worker" -> "helper" (a process a
# case started, which does not know about any of this): the main and the worker tie
# themselves to their parents, then start the next level with the inherited environment,
# as the plugin, xdist and a case do; each prints its pid and what it left in the variable
LEVEL = """
import os, subprocess, sys, time
from harness.runtime.lifeline import PARENT_PID, die_with_parent
depth = int(sys.argv[1])
if depth in (1, 2):
    die_with_parent()
if depth:
    print(os.getpid(), os.environ[PARENT_PID], flush=True)
if depth < 3:
    subprocess.Popen([sys.executable, "-c", sys.argv[2], str(depth + 1), sys.argv[2]],
                     env=dict(os.environ, **({} if depth else {PARENT_PID: str(os.getpid())})),
                     start_new_session=depth == 0)
time.sleep(120)
"""


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # dead, not reaped yet
    except OSError:
        return True


def test_children_die_with_a_sigkilled_parent():
    main = None
    with subprocess.Popen([sys.executable, "-c", LEVEL, "0", LEVEL], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True, start_new_session=True) as host:
        try:
            (main, main_var), (worker, worker_var), (helper, _) = (
                map(int, host.stdout.readline().split()) for _ in range(3))
            # each names itself for its children: the worker expects the main as its parent
            assert (main_var, worker_var) == (main, worker)
            time.sleep(0.5)
            assert not any(map(_gone, (main, worker, helper)))
            os.kill(host.pid, signal.SIGKILL)  # the host alone, not its group
            host.wait()
            deadline = time.monotonic() + 10
            while not all(map(_gone, (main, worker, helper))):
                assert time.monotonic() < deadline, "a process outlived its SIGKILLed host"
                time.sleep(0.05)
        finally:
            for group in (host.pid, main):  # never leave sleepers behind
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.killpg(group, signal.SIGKILL)


def test_exits_at_once_when_the_parent_is_already_gone():
    gone = subprocess.Popen(["true"])
    gone.wait()  # the pid of a process that is not our parent any more
    code = "from harness.runtime.lifeline import die_with_parent; die_with_parent(); print('ran')"
    env = dict(os.environ, **{PARENT_PID: str(gone.pid)})
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == EXIT_ORPHANED and "ran" not in proc.stdout
    assert f"(pid {gone.pid}) is gone" in proc.stderr


def test_without_the_variable_nothing_happens():
    environ = {}
    die_with_parent(environ)  # pytest started by hand: no parent to die with
    assert environ == {}
