"""A real small run (tf115 only, installs in the repo's .envs, reports in tmp_path) to
interrupt, and what is left of it in /proc."""
import glob
import os
import signal
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tf115_matrix(tmp_path):
    return narrowed_matrix(tmp_path, ("tf115",))


def narrowed_matrix(tmp_path, env_ids):
    """matrix.yaml with only ``env_ids``: installs in the repo's .envs, reports in tmp_path."""
    with open(os.path.join(ROOT, "matrix.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(envs_dir=os.path.join(ROOT, ".envs"),
                           reports_dir=str(tmp_path / "reports"))
    for model in raw["models"]:
        model["definition"] = os.path.join(ROOT, model["definition"])
    raw["envs"] = [e for e in raw["envs"] if e["id"] in env_ids]
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path / "matrix.yaml"


def default_signals():
    """In a child (``preexec_fn``): Ctrl-C, SIGTERM and SIGHUP at their default dispositions,
    however this test session was started (``cmd &`` ignores SIGINT, nohup SIGHUP)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def stop(proc):
    """SIGTERM (a clean stop), SIGKILL after 15 s; its pipes closed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def start_run(matrix, run_id, **popen):
    return subprocess.Popen([sys.executable, "-m", "harness", "run", "--matrix", str(matrix),
                             "--run-id", run_id], cwd=ROOT, text=True,
                            preexec_fn=default_signals, **popen)


def wait_until(ready, proc, timeout=600, why=""):
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {why}"
        assert time.monotonic() < deadline, f"timed out waiting for {why}"
        time.sleep(0.2)


def consume_running(run_dir):
    return bool(glob.glob(str(run_dir / "logs" / "consume.*.log")))


def processes_mentioning(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if text in cmdline:
            found.append((pid, cmdline))
    return found


def session_of(pid):
    """The session id of a live process (None: gone, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[3])


def processes_in_sessions(sessions):
    """Live processes of these sessions: a stage's pytest main, its xdist workers and
    whatever they started (a stage is a session of its own)."""
    return [pid for pid in filter(str.isdigit, os.listdir("/proc"))
            if session_of(pid) in sessions]


def stage_sessions(run_dir):
    """The sessions of the run's live stage processes (their pytest mains name the run dir)."""
    return {session_of(pid) for pid, _ in processes_mentioning(str(run_dir))} - {None}
