"""Stopping a run: Ctrl-C, SIGTERM (``timeout``, a CI cancel) and SIGHUP (a lost terminal).

All three raise ``KeyboardInterrupt`` in the main thread, so a run stops the same way
whichever it gets: the stage process groups are killed, the report of what was
measured is written, and the exit status is 128 + the signal's number (130, 143, 129).
Once a run is stopping, a further SIGTERM or SIGHUP is ignored so that the report
gets written (a CI cancel sends SIGINT, then SIGTERM); a second Ctrl-C still aborts
it, and SIGKILL cannot be handled at all (the stages die with the host anyway:
``harness.runtime.lifeline``).
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from typing import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: the run stops as it does on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupted_by(exc: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped the run ("Ctrl-C", "SIGTERM", "SIGHUP") and its exit status."""
    if isinstance(exc, Terminated):
        return signal.Signals(exc.signum).name, 128 + exc.signum
    return "Ctrl-C", 128 + signal.SIGINT


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside: SIGTERM and SIGHUP raise ``Terminated`` as Ctrl-C raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():  # handlers need it
        yield
        return
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            _quiet_terminal()
        if signum != signal.SIGINT and stopping.is_set():
            return  # already writing the report of what was measured
        stopping.set()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    # a signal ignored when we started stays ignored (nohup: SIGHUP; `cmd &`: SIGINT)
    old = {signum: signal.signal(signum, stop) for signum in HANDLED
           if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def _quiet_terminal() -> None:
    """The terminal is gone: writing to it fails (EIO) and would lose the report, so
    stdout and stderr go to /dev/null when they were a terminal (files and pipes stay)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)
