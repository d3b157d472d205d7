"""Run one stage (create or consume) of one env x mode: its own pytest process.

The plugin writes a record per case as it finishes.  Whatever the process does
not record (a worker that died, a stage that timed out, an environment that was
never provisioned) is filled in here as ``crashed`` / ``timeout`` /
``env_error`` records, so every planned case ends with exactly one record.
"""
from __future__ import annotations

import glob
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

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
    started = time.monotonic()
    plan = stage_plan(matrix, run, stage, run_id, paths.store, paths.records, select, extra)
    prefix = plan["prefix"]
    plan_path = os.path.join(paths.sub("plans"), prefix + ".json")
    write_json(plan_path, plan, indent=2, sort_keys=True)
    os.makedirs(paths.records, exist_ok=True)
    planned = {c.case_id: c for c in plan_cases(plan, registry.variants())}
    host = RecordWriter(os.path.join(paths.records, prefix + ".host.jsonl"))
    if isinstance(prov, ProvisionError):
        for case in planned.values():
            host.write(_synthetic(case, plan, ENV_ERROR, "ProvisionError", str(prov)))
        return StageResult(run, stage, time.monotonic() - started, None,
                           Counter({ENV_ERROR: len(planned)}))

    log_path = os.path.join(paths.sub("logs"), prefix + ".log")
    returncode, timed_out = _pytest(matrix, run, prov, plan_path, paths, prefix, log_path)
    recorded = read_records(paths.records, prefix)
    expected = _collected(paths.records, prefix)
    if expected is None:  # the process never finished collecting: fall back to the host's plan
        expected = list(planned)
    done = {r["case_id"] for r in recorded}
    missing = [cid for cid in expected if cid not in done]
    if missing:
        tail = _tail(log_path)
        outcome, etype = (TIMEOUT, "StageTimeout") if timed_out else (CRASHED, "ProcessCrashed")
        why = (f"stage timed out after {matrix.settings.stage_timeout_s}s" if timed_out else
               f"{INTERRUPTED_MESSAGE}{_interrupted_by}) before this case ran"
               if INTERRUPTED.is_set()
               else f"pytest exited with {returncode} without recording this case")
        for cid in missing:
            case = planned.get(cid) or parse_case_id(cid)
            host.write(_synthetic(case, plan, outcome, etype, f"{why}; log {log_path}: {tail}",
                                  prov.versions))
    counts = Counter(r["outcome"] for r in read_records(paths.records, prefix))
    return StageResult(run, stage, time.monotonic() - started, returncode, counts, log_path)


def _pytest(matrix: Matrix, run: EnvRun, prov: Provisioned, plan_path: str, paths: RunPaths,
            prefix: str, log_path: str) -> tuple[int | None, bool]:
    work = paths.sub(os.path.join("work", prefix))
    with open(os.path.join(work, "test_tfhub_compat.py"), "w") as fh:
        fh.write(SUITE)
    with open(os.path.join(work, "pytest.ini"), "w") as fh:
        fh.write(PYTEST_INI)
    workers = matrix.settings.workers
    # -c/--rootdir: never pick up a project's pytest configuration above the work dir
    argv = prov.argv("-m", "pytest", "test_tfhub_compat.py", f"--tfhub-plan={plan_path}",
                     "-c", os.path.join(work, "pytest.ini"), f"--rootdir={work}", "-q",
                     "--color=no", "-rfE", *(("-n", str(workers)) if workers else ()))
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "TF_USE_LEGACY_KERAS")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1",
               TFHUB_CACHE_DIR=paths.sub("tfhub_cache"),
               TFHUB_COMPAT_PARENT_PID=str(os.getpid()))  # the stage dies with this process
    loopback = "127.0.0.1,localhost"  # the hub server: never through a proxy
    env["NO_PROXY"] = env["no_proxy"] = ",".join(
        v for v in (env.get("NO_PROXY") or env.get("no_proxy"), loopback) if v)
    if run.env.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(dict(run.env.env_vars))
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(shlex.quote(a) for a in argv) + "\n")
        log.flush()
        if INTERRUPTED.is_set():
            return None, False
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        with _lock:
            _running.add(proc)
        try:
            return proc.wait(timeout=matrix.settings.stage_timeout_s), False
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.wait()
            return None, True
        except BaseException:  # Ctrl-C in this thread: stop the group, keep what was recorded
            _kill(proc)
            proc.wait()
            raise
        finally:
            with _lock:
                _running.discard(proc)


def read_records(records_dir: str, prefix: str = "") -> list[dict]:
    """Records of the files ``<prefix>.<worker>.jsonl`` (every file without a prefix).

    A prefix is a whole name part: ``create.tf115.tf1`` never reads ``create.tf115.tf1_eager``.
    """
    found = []
    pattern = f"{prefix}.*.jsonl" if prefix else "*.jsonl"
    for path in sorted(glob.glob(os.path.join(records_dir, pattern))):
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
    try:
        with open(os.path.join(records_dir, prefix + ".collected.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            lines = [ln.rstrip() for ln in fh if ln.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(lines[-LOG_TAIL:])


def _synthetic(case: Case, plan: dict, outcome: str, error_type: str, message: str,
               versions: dict[str, str] | None = None) -> dict:
    versions = versions or {}
    info = {"device": plan["env"]["device"], "backend": plan["env"]["backend"],
            "python": versions.get("python"),
            "tensorflow": versions.get("tensorflow") or versions.get("tensorflow-cpu"),
            "tensorflow_hub": versions.get("tensorflow-hub")}
    repro = plan["repro"].format(case_id=shlex.quote(case.case_id))
    return make_record(case, info, run_id=plan["run_id"], outcome=outcome,
                       error_type=error_type, message=message, duration_s=0.0, repro=repro)
