"""SIGTERM and SIGHUP stop `harness` as Ctrl-C does: the interrupted command still finishes
its report, a further SIGTERM/SIGHUP while it does is ignored, and the exit status is
128 + the signal (a stand-in for `harness run`; the real one: tests/integration)."""
import os
import pty
import signal
import subprocess
import sys

import pytest

from harness import interrupts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# `harness validate` whose work is a sleep; interrupted, it prints and writes its "report"
FAKE_RUN = """
import fcntl, sys, termios, time
from harness import cli
if sys.argv[2] == "tty":
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # this session's terminal: its hangup is our SIGHUP
def dispatch(args):
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("stopping", flush=True)  # after a hangup this write must not fail
        time.sleep(1)  # a second SIGTERM arrives here: ignored
        with open(sys.argv[1], "w") as fh:
            fh.write("report")
        raise
cli._dispatch = dispatch
sys.exit(cli.main(["validate"]))
"""


def test_sigterm_stops_like_ctrl_c_and_exits_143(tmp_path):
    report = tmp_path / "report"
    with subprocess.Popen([sys.executable, "-c", FAKE_RUN, str(report), "pipe"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == "stopping\n"
        proc.send_signal(signal.SIGTERM)  # `timeout` or a CI cancel insisting
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert report.read_text() == "report"
    assert "interrupted: records written so far are kept" in err and "Traceback" not in err


def test_a_lost_terminal_stops_like_ctrl_c_and_exits_129(tmp_path):
    report = tmp_path / "report"
    master, slave = pty.openpty()
    with subprocess.Popen([sys.executable, "-c", FAKE_RUN, str(report), "tty"], cwd=ROOT,
                          stdin=slave, stdout=slave, stderr=slave,
                          start_new_session=True) as proc:
        os.close(slave)
        seen = b""
        while b"ready" not in seen:
            seen += os.read(master, 1024)
        os.close(master)  # the terminal goes away: the kernel sends SIGHUP
        assert proc.wait(timeout=60) == 129
    assert report.read_text() == "report"  # its output went to /dev/null, not to an EIO


def test_exit_status_names_the_signal():
    assert interrupts.interrupted_by(KeyboardInterrupt()) == ("Ctrl-C", 130)
    assert interrupts.interrupted_by(interrupts.Terminated(signal.SIGTERM)) == ("SIGTERM", 143)
    assert interrupts.interrupted_by(interrupts.Terminated(signal.SIGHUP)) == ("SIGHUP", 129)


def test_handlers_are_restored_and_ignored_signals_stay_ignored():
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        term = signal.getsignal(signal.SIGTERM)
        with interrupts.stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not term
            with pytest.raises(interrupts.Terminated):
                os.kill(os.getpid(), signal.SIGTERM)
                signal.sigtimedwait([], 0)  # let the handler run here, whatever the platform
        assert signal.getsignal(signal.SIGTERM) is term
    finally:
        signal.signal(signal.SIGHUP, before)
