"""Run one stage (create or consume) of one env x mode: its own pytest process.

The plugin writes a record per case as it finishes.  Whatever the process does
not record (a worker that died, a stage that timed out, an environment that was
never provisioned) is filled in here as ``crashed`` / ``timeout`` /
``env_error`` records, so every planned case ends with exactly one record.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .backends import Provisioned, ProvisionError
from .config import Matrix
from .expand import EnvRun, stage_plan
from .jsonio import write_json
from .runtime.cases import Case, parse_case_id, plan_cases
from .runtime.records import CRASHED, ENV_ERROR, TIMEOUT, RecordWriter, make_record

SUITE = "from harness.runtime.suite import test_case  # noqa: F401\n"
PYTEST_INI = ("[pytest]\naddopts = -p no:cacheprovider\n"
              "filterwarnings = ignore::DeprecationWarning\n")
LOG_TAIL = 15
# the message of the record of a case an interrupted run never ran begins so (then the
# signal's name: "Ctrl-C)", "SIGTERM)", "SIGHUP)"); report.completeness tells them by it
INTERRUPTED_MESSAGE = "the run was interrupted ("
_running: set[subprocess.Popen] = set()
_lock = threading.Lock()
INTERRUPTED = threading.Event()
_interrupted_by = "Ctrl-C"


def interrupt_all(by: str = "Ctrl-C") -> None:
    """Ctrl-C, SIGTERM or SIGHUP (``by``): kill every running stage process group (they
    run in their own sessions)."""
    global _interrupted_by
    if not INTERRUPTED.is_set():
        _interrupted_by = by
    INTERRUPTED.set()
    with _lock:
        for proc in list(_running):
            _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass


@dataclass
class RunPaths:
    root: str  # reports/<run-id>

    @property
    def records(self) -> str:
        return os.path.join(self.root, "records")

    @property
    def store(self) -> str:
        return os.path.join(self.root, "store")

    def sub(self, name: str) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path


@dataclass
class StageResult:
    run: EnvRun
    stage: str
    seconds: float
    returncode: int | None
    counts: Counter = field(default_factory=Counter)
    log: str = ""


def run_stage(matrix: Matrix, run: EnvRun, stage: str, prov: Provisioned | ProvisionError,
              paths: RunPaths, run_id: str, select: list[str] | None = None,
              extra: dict | None = None) -> StageResult:
    """Run the stage's cases that have no record yet (all of them, unless it is resumed).

    A case that hangs is killed alone (``CaseWatch``); when the stage's process ends with
    cases unrecorded after recording at least one new case (its pytest main was the
    process killed, or xdist stopped replacing workers), it starts again for those.
    """
    started = time.monotonic()
    plan = stage_plan(matrix, run, stage, run_id, paths.store, paths.records, select, extra)
    prefix = plan["prefix"]
    plan_path = os.path.join(paths.sub("plans"), prefix + ".json")
    write_json(plan_path, plan, indent=2, sort_keys=True)
    os.makedirs(paths.records, exist_ok=True)
    planned = {c.case_id: c for c in plan_cases(plan, registry.variants())}
    host = RecordWriter(os.path.join(paths.records, prefix + ".host.jsonl"))
    for stale in stage_files(paths.records, prefix, ".running.json"):
        os.remove(stale)  # left by a killed run: that case has no record and runs again
    done = recorded_ids(paths.records, prefix)
    expected = _collected(paths.records, prefix) or list(planned)
    if isinstance(prov, ProvisionError):
        for case in planned.values():
            if case.case_id not in done:
                host.write(_synthetic(case, plan, ENV_ERROR, "ProvisionError", str(prov)))
        return _result(run, stage, started, None, paths, prefix)
    if done and all(cid in done for cid in expected):  # resumed: nothing left to run
        shutil.rmtree(os.path.join(paths.root, "tmp", prefix), ignore_errors=True)
        return _result(run, stage, started, None, paths, prefix)

    log_path = os.path.join(paths.sub("logs"), prefix + ".log")
    tmp = paths.sub(os.path.join("tmp", prefix))  # whatever the cases leave: removed below
    watch = CaseWatch(matrix.settings.case_timeout_s, paths.records, prefix, host,
                      plan, planned, prov.versions, log_path)
    deadline = started + matrix.settings.stage_timeout_s
    launch, returncode, timed_out = 0, None, False
    try:
        while True:
            todo = [cid for cid in expected if cid not in done]
            if done:  # only what has no record: a resumed stage, or one started again
                launch_path = os.path.join(paths.sub(os.path.join("work", prefix)),
                                           f"plan.{launch}.json")
                write_json(launch_path, dict(plan, select=todo), indent=2, sort_keys=True)
            else:
                launch_path = plan_path
            named = len(watch.named)
            junit = os.path.join(paths.sub("junit"),
                                 prefix + (f".{launch}" if launch else "") + ".xml")
            returncode, timed_out = _pytest(matrix, run, prov, launch_path, paths, prefix,
                                            log_path, tmp, deadline, watch, junit)
            if not timed_out:
                watch.check()  # the process that just ended may have died under a case
            done = recorded_ids(paths.records, prefix)
            expected = _collected(paths.records, prefix) or expected
            missing = [cid for cid in expected if cid not in done]
            # again only when the process ended because of a case it named (killed for its
            # timeout, or died under it): a process that fails by itself would fail again
            if not missing or timed_out or INTERRUPTED.is_set() or len(watch.named) == named:
                break
            launch += 1
            with open(log_path, "a") as log:
                log.write(f"tfhub-compat: the stage's process ended (exit {returncode}) with "
                          f"{len(missing)} cases unrecorded; starting it again for them\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if missing:
        tail = _tail(log_path)
        limit = matrix.settings.stage_timeout_s
        for cid in missing:
            case = planned.get(cid) or parse_case_id(cid)
            if timed_out:
                outcome, etype = TIMEOUT, "StageTimeout"
                why = (f"the stage timed out after {limit}s while this case ran"
                       if cid in watch.at_timeout else
                       f"the stage timed out after {limit}s before this case ran")
            elif INTERRUPTED.is_set():
                outcome, etype = CRASHED, "ProcessCrashed"
                why = f"{INTERRUPTED_MESSAGE}{_interrupted_by}) before this case ran"
            else:
                outcome, etype = CRASHED, "ProcessCrashed"
                why = f"pytest exited with {returncode} without recording this case"
            host.write(_synthetic(case, plan, outcome, etype, f"{why}; log {log_path}: {tail}",
                                  prov.versions))
    return _result(run, stage, started, returncode, paths, prefix, log_path)


def _result(run: EnvRun, stage: str, started: float, returncode: int | None, paths: RunPaths,
            prefix: str, log_path: str = "") -> StageResult:
    counts = Counter(r["outcome"] for r in read_records(paths.records, prefix))
    return StageResult(run, stage, time.monotonic() - started, returncode, counts, log_path)


class CaseWatch:
    """Kills a case that runs longer than ``case_timeout_s`` and records it ``timeout``;
    records a case whose process died under it ``crashed``: each names itself, and the
    stage goes on (xdist replaces a dead worker; ``run_stage`` restarts a dead main).

    It reads the marker each worker writes while it runs a case
    (``<prefix>.<worker>.running.json``: case id, pid, start time) and kills the
    worker's whole process tree from here, outside: a case hung in TensorFlow's C++
    code runs no Python signal handler.
    """

    POLL_S = 0.5

    def __init__(self, timeout_s: int, records: str, prefix: str, host: RecordWriter,
                 plan: dict, planned: dict[str, Case], versions: dict[str, str],
                 log_path: str) -> None:
        self.timeout_s, self.records, self.prefix, self.host = timeout_s, records, prefix, host
        self.plan, self.planned, self.versions, self.log_path = plan, planned, versions, log_path
        self.killed: set[int] = set()  # pids this watch killed: never "died on their own"
        self.named: list[str] = []  # the cases it recorded timeout or crashed
        self.at_timeout: set[str] = set()  # the cases that ran when the stage timed out

    def markers(self) -> list[tuple[str, dict]]:
        found = []
        for path in stage_files(self.records, self.prefix, ".running.json"):
            marker = _read_json(path)
            if marker is not None:  # (None: replaced or removed while we looked)
                found.append((path, marker))
        return found

    def check(self) -> None:
        for path, marker in self.markers():
            pid, cid, worker = int(marker["pid"]), marker["case_id"], marker["worker"]
            ran = time.time() - float(marker["started_at"])
            if pid in self.killed:  # it had moved on to this case when it was killed
                outcome, etype = CRASHED, "ProcessCrashed"
                why = (f"its process (pid {pid}, worker {worker}) was killed for another "
                       f"case's timeout just as it started this case; log {self.log_path}")
            elif not _alive(pid):
                if INTERRUPTED.is_set():  # the run is stopping: its placeholders say so
                    continue
                outcome, etype = CRASHED, "ProcessCrashed"
                why = (f"the process running this case (pid {pid}, worker {worker}) died "
                       f"while it ran; log {self.log_path}: {_tail(self.log_path)}")
            elif ran > self.timeout_s and _read_json(path) == marker:  # (still this case)
                kill_tree(pid)
                self.killed.add(pid)
                _wait_gone(pid)
                outcome, etype = TIMEOUT, "CaseTimeout"
                why = (f"the case ran longer than case_timeout_s ({self.timeout_s}s) and was "
                       f"killed with its process (pid {pid}, worker {worker}); the stage "
                       f"went on without it; log {self.log_path}")
            else:
                continue
            if _read_json(path) == marker:  # else: the next case it started, next time
                with contextlib.suppress(OSError):
                    os.remove(path)
            if cid not in recorded_ids(self.records, self.prefix):
                self.named.append(cid)
                case = self.planned.get(cid) or parse_case_id(cid)
                self.host.write(_synthetic(case, self.plan, outcome, etype, why,
                                           self.versions, duration_s=round(ran, 3)))

    def stage_timed_out(self) -> None:
        self.at_timeout = {m["case_id"] for _, m in self.markers()}


def _read_json(path: str) -> Any:
    """A JSON file's value (None: missing, or cut or replaced while we read it)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _stat(pid: int | str) -> list[str]:
    """``/proc/<pid>/stat`` after the command name: state, ppid, ... ([]: no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    state = _stat(pid)
    return bool(state) and state[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (the other processes a case started)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        state = _stat(entry)
        if len(state) > 1:
            children.setdefault(int(state[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    for p in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)


def _pytest(matrix: Matrix, run: EnvRun, prov: Provisioned, plan_path: str, paths: RunPaths,
            prefix: str, log_path: str, tmp: str, deadline: float, watch: CaseWatch,
            junit: str) -> tuple[int | None, bool]:
    """One pytest process of the stage: (its exit status, whether the stage timed out);
    its cases as JUnit XML in ``junit`` (a case that did not pass is a failed test)."""
    work = paths.sub(os.path.join("work", prefix))
    with open(os.path.join(work, "test_tfhub_compat.py"), "w") as fh:
        fh.write(SUITE)
    with open(os.path.join(work, "pytest.ini"), "w") as fh:
        fh.write(PYTEST_INI)
    workers = matrix.settings.workers
    # -c/--rootdir: never pick up a project's pytest configuration above the work dir
    argv = prov.argv("-m", "pytest", "test_tfhub_compat.py", f"--tfhub-plan={plan_path}",
                     "-c", os.path.join(work, "pytest.ini"), f"--rootdir={work}", "-q",
                     "--color=no", "-rfE", f"--junitxml={junit}",
                     "-o", f"junit_suite_name={prefix}",
                     *(("-n", str(workers)) if workers else ()))
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "TF_USE_LEGACY_KERAS")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1",
               TFHUB_CACHE_DIR=paths.sub("tfhub_cache"), TMPDIR=tmp,
               TFHUB_COMPAT_PARENT_PID=str(os.getpid()))  # the stage dies with this process
    loopback = "127.0.0.1,localhost"  # the hub server: never through a proxy
    env["NO_PROXY"] = env["no_proxy"] = ",".join(
        v for v in (env.get("NO_PROXY") or env.get("no_proxy"), loopback) if v)
    if run.env.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(dict(run.env.env_vars))
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(shlex.quote(a) for a in argv) + "\n")
        log.flush()
        if INTERRUPTED.is_set():
            return None, False
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        with _lock:
            _running.add(proc)
        try:
            while True:
                try:
                    return proc.wait(timeout=max(0.0, min(watch.POLL_S,
                                                          deadline - time.monotonic()))), False
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        watch.stage_timed_out()
                        _kill(proc)
                        proc.wait()
                        return None, True
                    watch.check()
        except BaseException:  # Ctrl-C in this thread: stop the group, keep what was recorded
            _kill(proc)
            proc.wait()
            raise
        finally:
            with _lock:
                _running.discard(proc)


def stage_files(records_dir: str, prefix: str, suffix: str) -> list[str]:
    """The files ``<prefix>.<worker><suffix>`` of a stage (or of every stage whose prefix
    starts with ``prefix``'s whole name parts: ``create``), never another env's: env ids
    may hold dots (``create.x.tf2.gw0.jsonl`` is not env ``x.tf2``'s ``create.x.tf2.compat
    .gw0.jsonl``), a worker's name holds none."""
    head = os.path.join(records_dir, prefix + ".")
    whole = len(prefix.split(".")) >= 3  # stage, env and mode: only the worker is left
    return [path for path in glob.glob(glob.escape(head) + "*" + suffix)
            if not whole or "." not in path[len(head):-len(suffix)]]


def recorded_ids(records_dir: str, prefix: str) -> set[str]:
    return {r["case_id"] for r in read_records(records_dir, prefix)}


def read_records(records_dir: str, prefix: str = "") -> list[dict]:
    """Records of the files ``<prefix>.<worker>.jsonl`` (every file without a prefix).

    A prefix is a whole name part: ``create.tf115.tf1`` never reads ``create.tf115.tf1_eager``.
    """
    found = []
    paths = stage_files(records_dir, prefix, ".jsonl") if prefix else \
        glob.glob(os.path.join(records_dir, "*.jsonl"))
    for path in sorted(paths):
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        found.append(json.loads(line))
                    except ValueError:  # a line cut by a killed process: the case is re-counted
                        continue
    return found


def read_facts(records_dir: str) -> dict[str, dict[str, dict]]:
    """{env id: {mode: facts}}: what the create stages found true of each env x mode and
    cannot fail (``<prefix>.facts.<worker>.json``; the workers of one stage agree)."""
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(glob.glob(os.path.join(records_dir, "*.facts.*.json"))):
        try:
            with open(path) as fh:
                facts = json.load(fh)
        except (OSError, ValueError):  # a file cut by a killed process: no facts from it
            continue
        found.setdefault(facts.pop("env_id"), {})[facts["mode"]] = facts
    return found


def _collected(records_dir: str, prefix: str) -> list[str] | None:
    return _read_json(os.path.join(records_dir, prefix + ".collected.json"))


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            lines = [ln.rstrip() for ln in fh if ln.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(lines[-LOG_TAIL:])


def _synthetic(case: Case, plan: dict, outcome: str, error_type: str, message: str,
               versions: dict[str, str] | None = None, duration_s: float = 0.0) -> dict:
    versions = versions or {}
    info = {"device": plan["env"]["device"], "backend": plan["env"]["backend"],
            "python": versions.get("python"),
            "tensorflow": versions.get("tensorflow") or versions.get("tensorflow-cpu"),
            "tensorflow_hub": versions.get("tensorflow-hub")}
    repro = plan["repro"].format(case_id=shlex.quote(case.case_id))
    return make_record(case, info, run_id=plan["run_id"], outcome=outcome,
                       error_type=error_type, message=message, duration_s=duration_s, repro=repro)
