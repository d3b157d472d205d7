"""A stage process dies with the process that started it, even when that one is SIGKILLed
(harness.runtime.lifeline, called by the plugin in the pytest main and each xdist worker)."""
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

# host -> "pytest main" -> "xdist worker": each level ties itself to its parent, then starts
# the next with the inherited environment, as the plugin and xdist do
LEVEL = """
import os, subprocess, sys, time
from harness.runtime.lifeline import PARENT_PID, die_with_parent
depth = int(sys.argv[1])
if depth:
    die_with_parent()
    print(os.getpid(), os.environ[PARENT_PID], flush=True)
if depth < 2:
    subprocess.Popen([sys.executable, "-c", sys.argv[2], str(depth + 1), sys.argv[2]],
                     env=dict(os.environ, **({} if depth else {PARENT_PID: str(os.getpid())})))
time.sleep(120)
"""


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # dead, not reaped yet
    except OSError:
        return True


def test_children_die_with_a_sigkilled_parent():
    with subprocess.Popen([sys.executable, "-c", LEVEL, "0", LEVEL], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True, start_new_session=True) as host:
        try:
            main_pid, main_parent = map(int, host.stdout.readline().split())
            worker_pid, worker_parent = map(int, host.stdout.readline().split())
            # each names itself for its children: the worker expects the main as its parent
            assert (main_parent, worker_parent) == (main_pid, worker_pid)
            time.sleep(0.5)
            assert not _gone(main_pid) and not _gone(worker_pid)
            os.kill(host.pid, signal.SIGKILL)  # the host alone, not its group
            host.wait()
            deadline = time.monotonic() + 10
            while not (_gone(main_pid) and _gone(worker_pid)):
                assert time.monotonic() < deadline, "a child outlived its SIGKILLed parent"
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):  # never leave sleepers behind
                os.killpg(host.pid, signal.SIGKILL)


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
