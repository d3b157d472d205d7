"""``reports/latest``: the newest complete run's report files, replaced atomically.

``latest`` is a symlink to a complete copy ``.latest-<run-id>-<random>/`` (``RUN``,
``results.jsonl``, ``summary.json``, ``compat.md``, ``index.html``) beside it.  A refresh
writes a new copy, points a new symlink at it and ``os.replace``-s ``latest`` with it, so
``latest`` is never missing and never a mix of two runs; a replaced copy is removed by a
later refresh once it has been replaced for ``GRACE_S`` (a reader may still hold it).
Refreshes take ``.latest.lock`` so two processes never remove each other's copy.  A reader
that reads several files resolves ``latest`` once (``os.path.realpath``, a directory fd,
``cd``): every path through the symlink is resolved anew.  A real ``latest/`` directory of
an older version is swapped for the symlink (``renameat2(RENAME_EXCHANGE)`` where the
kernel has it) and removed.

Which run may replace it is the caller's decision (``keep_reason``): a complete run of
the whole matrix that is the newest such run under the reports directory; a run narrowed
by ``--env``, ``--mode``, ``--case`` or ``--model`` and ``harness report`` of an older run
leave it as it is.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import secrets
import shutil
import time
from typing import Any

LATEST = "latest"
FILES = ("results.jsonl", "summary.json", "compat.md", "docs-table.md", "index.html")
COPY_PREFIX = ".latest-"
LOCK = ".latest.lock"
# a replaced copy is kept for readers that resolved latest before the refresh: for
# GRACE_S after it was replaced (whatever the number of refreshes meanwhile: a count cap
# would pull a copy from under a slow reader when refreshes come fast)
GRACE_S = 120.0


def refresh_latest(run_dir: str) -> str:
    """Point ``<reports>/latest`` at a fresh complete copy of the run's report files."""
    reports = os.path.dirname(os.path.abspath(run_dir))
    latest = os.path.join(reports, LATEST)
    if os.path.realpath(run_dir) == os.path.realpath(latest):
        return latest
    run_id = os.path.basename(os.path.abspath(run_dir))
    with open(os.path.join(reports, LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if _started(latest) > _started(run_dir):  # a newer run got here first
            return latest
        name = f"{COPY_PREFIX}{run_id}-{secrets.token_hex(4)}"
        copy = os.path.join(reports, name)
        os.makedirs(copy)
        for file in FILES:
            shutil.copy2(os.path.join(run_dir, file), os.path.join(copy, file))
        with open(os.path.join(copy, "RUN"), "w") as fh:
            fh.write(run_id + "\n")
        link = os.path.join(reports, f".{name}.link")
        os.symlink(name, link)  # relative: the reports directory can move
        previous = os.readlink(latest) if os.path.islink(latest) else None
        if os.path.isdir(latest) and not os.path.islink(latest):
            _migrate(latest, link)
        else:
            os.replace(link, latest)
        if previous and os.path.isdir(os.path.join(reports, previous)):
            os.utime(os.path.join(reports, previous))  # its grace period starts now
        _remove_old_copies(reports, name)
    return latest


def _started(run_dir: str) -> str:
    """``run.started_at`` of a run's (or latest's) summary.json ("" when unknown)."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as fh:
            return str((json.load(fh).get("run") or {}).get("started_at") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _migrate(latest: str, link: str) -> None:
    """An older version's real ``latest/`` directory becomes the symlink ``link``."""
    if _exchange(link, latest):  # ``link`` is now the old directory
        shutil.rmtree(link, ignore_errors=True)
        return
    old = f"{link}.old"  # no RENAME_EXCHANGE: latest is missing for one rename
    os.rename(latest, old)
    os.replace(link, latest)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that
    is not available."""
    try:
        renameat2: Any = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b),
                     rename_exchange) == 0


def _remove_old_copies(reports: str, current: str) -> None:
    """Remove the copies replaced more than ``GRACE_S`` ago, and the links of interrupted
    refreshes; under the lock."""
    now, copies = time.time(), []
    for name in os.listdir(reports):
        path = os.path.join(reports, name)
        if name.startswith(f".{COPY_PREFIX}") and name.endswith((".link", ".link.old")):
            if os.path.islink(path):
                os.unlink(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
        elif name.startswith(COPY_PREFIX) and name != current and os.path.isdir(path):
            copies.append((os.stat(path).st_mtime, name))
    for replaced, name in copies:
        if now - replaced > GRACE_S:
            shutil.rmtree(os.path.join(reports, name), ignore_errors=True)


def keep_reason(run_dir: str, reports_dir: str, started_at: str | None,
                run_file: dict[str, Any] | None) -> str | None:
    """Why a complete run must leave ``latest`` as it is (None: it may replace it): it ran
    only ``--case`` selections (``run_file``: its run.json), or a complete run of a whole
    selection under ``reports_dir`` started after it."""
    from .completeness import read_run_file
    from .history import earlier_runs
    if _narrowed(run_file):
        return "not a run of the whole matrix (--env, --mode, --case or --model)"
    if not started_at:
        return None
    newer = [path for path, summary in earlier_runs(reports_dir, run_dir)
             if str((summary.get("run") or {}).get("started_at") or "") > started_at
             and (summary.get("run") or {}).get("complete") is not False
             and not _narrowed(read_run_file(path))]
    if newer:
        return f"run {os.path.basename(newer[-1])} is newer"
    return None


def _narrowed(run_file: dict[str, Any] | None) -> bool:
    """A run.json of a run that was not the whole matrix: ``--case`` selections, or
    options narrowing it (``--env``, ``--mode``, ``--case``, ``--model``)."""
    stages = (run_file or {}).get("stages") or []
    options = (run_file or {}).get("options") or {}
    return any(isinstance(s, dict) and s.get("select") is not None for s in stages) or \
        any(options.get(k) for k in ("envs", "modes", "case", "models"))
