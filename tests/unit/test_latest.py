"""reports/latest: always one complete run, replaced atomically, even with two processes
refreshing it at once; an older run's report or a --case repro never replaces it."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from harness.hubserver import latest_store
from harness.report import latest as latest_mod
from harness.report import refresh_latest
from harness.report.history import earlier_runs
from harness.report.latest import FILES, keep_reason

REFRESHES = 150  # per writer process
RESOURCES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources")


def _run(reports, run_id, started="2026-12-01T00:00:00Z", pad=20_000, complete=True):
    path = reports / run_id
    path.mkdir(parents=True)
    summary = {"run": {"run_id": run_id, "started_at": started, "complete": complete},
               "cells": [], "pad": "x" * pad}
    for name in FILES:
        (path / name).write_text(json.dumps(dict(summary, file=name)) + "\n")
    return str(path)


def _writer(runs, n, out):
    errors = []
    for i in range(n):
        try:
            refresh_latest(runs[i % len(runs)])
        except Exception as exc:  # noqa: BLE001 (counted: the test wants none)
            errors.append(repr(exc))
    out.put(("writer", errors))


def _reader(reports, stop, out):
    """Holds latest's directory for each snapshot, as a reader of several files must."""
    latest = os.path.join(reports, "latest")
    seen = {"snapshots": 0, "missing": 0, "mixed": 0, "errors": []}
    while not stop.is_set() or seen["snapshots"] < 20:
        seen["snapshots"] += 1
        try:
            fd = os.open(latest, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            seen["missing"] += 1
            continue
        try:
            runs = set()
            for name in FILES + ("RUN",):
                with open(os.open(name, os.O_RDONLY, dir_fd=fd)) as fh:
                    text = fh.read()
                runs.add(text.strip() if name == "RUN" else json.loads(text)["run"]["run_id"])
            seen["mixed"] += len(runs) != 1
            with open(os.path.join(latest, "summary.json")) as fh:  # by path: whole
                json.load(fh)
        except FileNotFoundError:
            seen["missing"] += 1
        except Exception as exc:  # noqa: BLE001
            seen["errors"].append(repr(exc))
        finally:
            os.close(fd)
    out.put(("reader", seen))


def test_two_processes_refreshing_latest_and_a_reader(tmp_path):
    reports = tmp_path / "reports"
    first = [_run(reports, f"w1-{i}") for i in range(2)]
    second = [_run(reports, f"w2-{i}") for i in range(2)]
    refresh_latest(first[0])
    ctx = multiprocessing.get_context("fork")
    out, stop = ctx.Queue(), ctx.Event()
    reader = ctx.Process(target=_reader, args=(str(reports), stop, out))
    writers = [ctx.Process(target=_writer, args=(runs, REFRESHES, out))
               for runs in (first, second)]
    for proc in [reader] + writers:
        proc.start()
    try:
        results = [out.get(timeout=120) for _ in writers]
        stop.set()
        results.append(out.get(timeout=120))
    finally:
        stop.set()
        for proc in [reader] + writers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    assert [errors for kind, errors in results if kind == "writer"] == [[], []]
    seen = next(r for kind, r in results if kind == "reader")
    assert (seen["missing"], seen["mixed"], seen["errors"]) == (0, 0, []), seen
    assert seen["snapshots"] >= 20
    # latest is a symlink to a complete copy; history and the hub server read through it
    latest = reports / "latest"
    assert latest.is_symlink() and os.readlink(latest).startswith(".latest-")
    assert sorted(os.listdir(latest)) == sorted(FILES + ("RUN",))
    run_id = (latest / "RUN").read_text().strip()
    assert run_id in {"w1-0", "w1-1", "w2-0", "w2-1"}
    assert json.loads((latest / "summary.json").read_text())["run"]["run_id"] == run_id
    assert latest_store(str(reports)) == os.path.join(str(reports), run_id, "store")
    assert sorted(os.path.basename(p) for p, _ in earlier_runs(str(reports), "none")) == \
        ["w1-0", "w1-1", "w2-0", "w2-1"]
    copies = [n for n in os.listdir(reports) if n.startswith(".latest-")]
    assert 1 < len(copies) <= 2 * REFRESHES + 1  # replaced ones stay for their grace period
    assert not [n for n in os.listdir(reports) if n.endswith((".link", ".tmp"))]


def test_replaced_copies_are_removed_after_the_grace_period(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    a, b = _run(reports, "a"), _run(reports, "b")
    refresh_latest(a)
    refresh_latest(b)
    copies = sorted(n for n in os.listdir(reports) if n.startswith(".latest-"))
    assert len(copies) == 2  # a's copy is kept: a reader may hold it
    monkeypatch.setattr(latest_mod, "GRACE_S", 0.0)
    time.sleep(0.01)
    refresh_latest(a)
    left = [n for n in os.listdir(reports) if n.startswith(".latest-")]
    assert left == [os.readlink(reports / "latest")] and left[0].startswith(".latest-a-")


def test_a_real_latest_directory_of_an_older_version_is_migrated(tmp_path):
    reports = tmp_path / "reports"
    run = _run(reports, "new")
    old = reports / "latest"
    old.mkdir()
    for name in FILES:
        (old / name).write_text("old\n")
    (old / "RUN").write_text("old\n")
    refresh_latest(run)
    assert old.is_symlink() and (old / "RUN").read_text() == "new\n"
    assert sorted(n for n in os.listdir(reports) if not n.startswith(".latest-")) == \
        [".latest.lock", "latest", "new"]


def test_keep_reason_case_runs_and_older_runs(tmp_path):
    reports = tmp_path / "reports"
    old = _run(reports, "old", started="2026-12-01T00:00:00Z")
    _run(reports, "new", started="2026-12-02T00:00:00Z")
    _run(reports, "newer-broken", started="2026-12-03T00:00:00Z", complete=False)
    case = {"stages": [{"prefix": "create.tf115.tf1", "select": ["tf115/tf1/x"]}]}
    whole = {"stages": [{"prefix": "create.tf115.tf1", "select": None}]}
    assert keep_reason(old, str(reports), "2026-12-01T00:00:00Z", whole) == "run new is newer"
    newest = str(reports / "new")
    assert keep_reason(newest, str(reports), "2026-12-02T00:00:00Z", whole) is None
    narrowed = "not a run of the whole matrix (--env, --mode, --case or --model)"
    assert keep_reason(newest, str(reports), "2026-12-02T00:00:00Z", case) == narrowed
    for option, value in (("envs", ["tf115"]), ("modes", ["tf2"]), ("models", ["/m"])):
        only = dict(whole, options={"envs": [], "modes": [], "models": [], option: value})
        assert keep_reason(newest, str(reports), "2026-12-02T00:00:00Z", only) == narrowed
    assert keep_reason(newest, str(reports), None, None) is None


def _records_run(reports, run_id, started, select=None):
    run_dir = reports / run_id
    (run_dir / "records").mkdir(parents=True)
    with open(os.path.join(RESOURCES, "records.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    ok = [r for r in records if r["outcome"] in ("passed", "failed", "error")]
    (run_dir / "records" / "a.gw0.jsonl").write_text(
        "".join(json.dumps(dict(r, run_id=run_id)) + "\n" for r in ok))
    if select is not None:  # its stage collected nothing more than what it recorded
        (run_dir / "records" / "create.tf115.tf1.collected.json").write_text("[]")
    (run_dir / "run.json").write_text(json.dumps(
        {"run_id": run_id, "started_at": started, "interrupted": False,
         "stages": [] if select is None else [{"stage": "create", "env_id": "tf115",
                                               "mode": "tf1", "prefix": "create.tf115.tf1",
                                               "select": select}]}))
    return run_dir


@pytest.mark.parametrize("select", [None, ["tf115/tf1/x"]])
def test_harness_report_of_an_older_or_case_run_leaves_latest(default_matrix_path, tmp_path,
                                                              select):
    reports = tmp_path / "reports"
    newer = _records_run(reports, "r2", "2026-12-02T00:00:00Z")
    older = _records_run(reports, "r1", "2026-12-01T00:00:00Z", select)

    def report(run_dir):
        return subprocess.run([sys.executable, "-m", "harness", "report", "--matrix",
                               default_matrix_path, str(run_dir)], capture_output=True,
                              text=True, timeout=300)

    proc = report(newer)
    assert proc.returncode == 0, proc.stderr
    assert (reports / "latest" / "RUN").read_text() == "r2\n"
    if select:  # a --case run, even the newest one, never replaces it
        newest = _records_run(reports, "r3", "2026-12-03T00:00:00Z", select)
        proc = report(newest)
        assert proc.returncode == 0, proc.stderr
        assert (reports / "latest" / "RUN").read_text() == "r2\n"
    proc = report(older)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert (reports / "latest" / "RUN").read_text() == "r2\n"


def test_an_older_run_refreshing_after_a_newer_one_leaves_latest(tmp_path):
    reports = tmp_path / "reports"
    old = _run(reports, "old", started="2026-12-01T00:00:00Z")
    new = _run(reports, "new", started="2026-12-02T00:00:00Z")
    refresh_latest(new)
    refresh_latest(old)  # it decided to refresh before the newer run had finished
    assert (reports / "latest" / "RUN").read_text().strip() == "new"
