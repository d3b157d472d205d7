"""Stage processes die with the run that started them, however it dies.

The host starts each stage's pytest process in a session of its own (so a stage
timeout can kill its whole group) and names itself in ``TFHUB_COMPAT_PARENT_PID``.
``die_with_parent()`` (called at ``pytest_configure`` in the pytest main and in each
xdist worker) asks Linux to SIGKILL this process when its parent dies
(``PR_SET_PDEATHSIG``), exits at once if the parent is already gone, and names this
process for its own children: the pytest main's xdist workers die with it.  In the
pytest main, the leader of the stage's process group, it also starts a watchdog that
kills the whole group once the main is gone: that takes the processes a case started
(a second process loading a model) with it.

Without this, a host killed by SIGKILL leaves its stages running and recording
cases against a hub server that no longer exists.  The signal fires when the
*thread* that started the child ends: the host waits on each stage process in the
thread that started it, and xdist starts its workers from the pytest main's main
thread.  Elsewhere than on Linux this is a no-op (no ``prctl``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

PARENT_PID = "TFHUB_COMPAT_PARENT_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_ORPHANED = 3
# reads until every copy of the pipe's write end is closed: the group leader is gone
WATCHDOG = "import os, signal, sys\nsys.stdin.buffer.read()\nos.killpg(0, signal.SIGKILL)\n"
_watchdog = []  # (the pipe's write end, the watchdog), kept for this process's life


def die_with_parent(environ=os.environ):
    """SIGKILL this process when its parent (``$TFHUB_COMPAT_PARENT_PID``) dies.

    Does nothing when the variable is not set (pytest started by hand).
    """
    expected = environ.get(PARENT_PID)
    if not expected or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (ImportError, AttributeError, OSError) as exc:  # no safety net, but the cases run
        sys.stderr.write("tfhub-compat: cannot tie this process to its parent: %s\n" % exc)
        return
    # the parent may have died between our fork and prctl: we were reparented already
    if os.getppid() != int(expected):
        sys.stderr.write("tfhub-compat: the process that started this one (pid %s) is gone; "
                         "exiting\n" % expected)
        sys.stderr.flush()
        os._exit(EXIT_ORPHANED)
    environ[PARENT_PID] = str(os.getpid())  # for the children: xdist workers
    if os.getpgrp() == os.getpid():  # never a group this process does not lead
        _watch_group()


def _watch_group():
    """Start the watchdog: its stdin is a pipe whose only writer is this process (the fd
    is not inheritable), so it reads EOF when this process ends, and kills the group."""
    read_end, write_end = os.pipe()  # the write end stays open for this process's life
    _watchdog.append((write_end, subprocess.Popen([sys.executable, "-c", WATCHDOG],
                                                  stdin=read_end, close_fds=True)))
    os.close(read_end)
