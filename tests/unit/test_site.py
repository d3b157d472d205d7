"""The published site: ``harness publish``, and ``harness report --baseline URL`` /
``--history PATH|URL`` reading it, against a real static HTTP server on 127.0.0.1.

Runs are built from tests/resources/records.jsonl (its infrastructure outcomes left out,
so a report's exit status is its changes' alone) by ``harness report``.
"""
import contextlib
import functools
import gzip
import http.server
import json
import os
import socket
import threading

import pytest

from harness.cli import main
from harness.errors import UserError
from harness.report import site

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources")
INFRA = ("crashed", "timeout", "env_error", "harness_error")


def _sample():
    with open(os.path.join(RESOURCES, "records.jsonl")) as fh:
        return [r for r in map(json.loads, fh) if r["outcome"] not in INFRA]


def _regressed():
    """The sample with its first passed tf115 load case turned into an error."""
    records = _sample()
    victim = next(r for r in records if r["env_id"] == "tf115" and r["operation"] == "load"
                  and r["outcome"] == "passed")
    victim.update(outcome="error", error_type="ValueError", message="synthetic")
    return records, victim["case_id"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serve(directory):
    """``directory`` served at the URL yielded (ends with "/")."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def report(default_matrix_path, capsys):
    """``report(dir, run_id, started_at, records, *args)``: a run directory as `harness run`
    leaves it, its report built by `harness report ... *args`; returns (exit, out, err)."""
    def build(run_dir, run_id, started_at, records, *args):
        os.makedirs(os.path.join(run_dir, "records"), exist_ok=True)
        with open(os.path.join(run_dir, "records", "consume.gw0.jsonl"), "w") as fh:
            fh.writelines(json.dumps({**r, "run_id": run_id}) + "\n" for r in records)
        summary = os.path.join(run_dir, "summary.json")
        if not os.path.exists(summary):
            with open(summary, "w") as fh:
                json.dump({"cells": [], "run": {"run_id": run_id, "started_at": started_at,
                                                "git_commit": "abc123"}}, fh)
        code = main(["report", "--matrix", default_matrix_path, str(run_dir), *args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return build


def _summary(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as fh:
        return json.load(fh)


def _index(site_dir):
    with open(os.path.join(site_dir, "runs", "index.json")) as fh:
        return json.load(fh)


@pytest.fixture
def published(tmp_path, report):
    """A site with runs r1 and r2 (the sample, twice) published; returns its directory."""
    reports, site_dir = tmp_path / "reports", tmp_path / "site"
    for run_id, started in (("r1", "2026-12-01T01:00:00Z"), ("r2", "2026-12-02T01:00:00Z")):
        assert report(reports / run_id, run_id, started, _sample())[0] == 0
        site.publish(str(reports / run_id), str(site_dir))
    return site_dir


def test_publish_writes_the_layout_newest_first_and_is_idempotent(tmp_path, published):
    index = _index(published)
    assert index["schema_version"] == 1
    assert [e["run_id"] for e in index["runs"]] == ["r2", "r1"]
    first = index["runs"][0]
    assert first["complete"] is True and first["started_at"] == "2026-12-02T01:00:00Z"
    assert first["cases"] == len(_sample()) and sum(first["counts"].values()) == len(_sample())
    assert first["envs"] == []  # the sample's report has no env metadata
    for run_id in ("r1", "r2"):
        assert sorted(os.listdir(published / "runs" / run_id)) == sorted(site.RUN_FILES)
        with gzip.open(published / "runs" / run_id / "results.jsonl.gz", "rb") as fh, \
                open(tmp_path / "reports" / run_id / "results.jsonl", "rb") as raw:
            assert fh.read() == raw.read()
        # no timestamp in the gzip header: the same run gives the same bytes
        assert (published / "runs" / run_id / "results.jsonl.gz").read_bytes()[4:8] == bytes(4)
    front = (published / "index.html").read_bytes()
    assert front == (published / "runs" / "r2" / "index.html").read_bytes()
    before = {p: p.read_bytes() for p in published.rglob("*") if p.is_file()}
    # the same run again, and the older one again: one entry each, the same files
    for run_id in ("r2", "r1"):
        site.publish(str(tmp_path / "reports" / run_id), str(published))
    assert {p: p.read_bytes() for p in published.rglob("*") if p.is_file()} == before
    # --keep-history 1: the older run's directory goes
    assert main(["publish", str(tmp_path / "reports" / "r2"), "--site", str(published),
                 "--keep-history", "1"]) == 0
    assert [e["run_id"] for e in _index(published)["runs"]] == ["r2"]
    assert sorted(os.listdir(published / "runs")) == ["index.json", "r2"]


def test_publish_refuses_a_host_path_and_a_run_without_report(tmp_path, report):
    run_dir = tmp_path / "reports" / "r1"
    assert report(run_dir, "r1", "2026-12-01T01:00:00Z", _sample())[0] == 0
    (run_dir / "compat.md").write_text(f"made in {run_dir}/store\n")
    with pytest.raises(UserError, match=r"its compat.md holds the host path .*; rebuild the "
                                        r"report \(harness report"):
        site.publish(str(run_dir), str(tmp_path / "site"))
    assert not (tmp_path / "site" / "runs" / "index.json").exists()
    with pytest.raises(UserError, match="no summary.json; build the report first"):
        site.publish(str(tmp_path / "nowhere"), str(tmp_path / "site"))


def test_baseline_by_run_url_site_root_and_summary_url(tmp_path, published, report):
    records, victim = _regressed()
    run_dir = tmp_path / "runner" / "r3"  # a fresh runner: no earlier run under reports/
    with _serve(published) as url:
        for baseline in (url + "runs/r1/", url, url + "runs/r2/summary.json"):
            code, out, err = report(run_dir, "r3", "2026-12-03T01:00:00Z", records,
                                    "--baseline", baseline, "--fail-on", "regression")
            expected = "r2" if baseline == url else baseline.split("/")[-2]
            assert code == 1, (baseline, err)
            assert f"regressions since run {expected}: " in err and "1 cases" in err
            changes = _summary(run_dir)["changes"]
            assert changes["baseline"]["run_id"] == expected
            assert changes["baseline"]["case_level"] is True
            assert changes["baseline"]["path"] == f"{url}runs/{expected}/summary.json"
            assert [c["case_id"] for c in changes["cases"]["regressions"]] == [victim]
            assert f"## Changes since run {expected}" in out


def test_baseline_without_results_is_cell_level(tmp_path, published, report):
    os.remove(published / "runs" / "r2" / "results.jsonl.gz")
    records, _ = _regressed()
    with _serve(published) as url:
        code, out, _ = report(tmp_path / "r3", "r3", "2026-12-03T01:00:00Z", records,
                              "--baseline", url)
    changes = _summary(tmp_path / "r3")["changes"]
    assert code == 0 and changes["baseline"]["case_level"] is False
    assert changes["counts"]["regressions"] == 0 and "Cell level only" in out


def test_a_site_with_no_run_yet_is_no_baseline(tmp_path, report):
    empty = tmp_path / "empty"
    empty.mkdir()
    with _serve(empty) as url:
        code, out, err = report(tmp_path / "r1", "r1", "2026-12-01T01:00:00Z", _sample(),
                                "--baseline", url, "--history", url,
                                "--fail-on", "regression")
    summary = _summary(tmp_path / "r1")
    assert (code, err) == (0, "")
    assert "changes" not in summary
    assert summary["no_baseline"] == (f"no earlier published run ({url}runs/index.json does "
                                      "not exist yet: a first run)")
    assert "Nothing to compare with: no earlier published run" in out
    assert "Nothing to compare with: no earlier published run" in \
        (tmp_path / "r1" / "index.html").read_text()
    assert [r["run_id"] for r in summary["history"]["runs"]] == ["r1"]


def test_the_newest_earlier_run_is_the_baseline_not_this_run(tmp_path, published, report):
    reports = tmp_path / "reports"
    with _serve(published) as url:
        # r2 rebuilt after it was published: the site's own newest run is no baseline for it
        assert report(reports / "r2", "r2", "2026-12-02T01:00:00Z", _sample(),
                      "--baseline", url)[0] == 0
        # r1 rebuilt: r2 started later, so there is no earlier run
        code, out, _ = report(reports / "r1", "r1", "2026-12-01T01:00:00Z", _sample(),
                              "--baseline", url, "--history", url)
    assert _summary(reports / "r2")["changes"]["baseline"]["run_id"] == "r1"
    summary = _summary(reports / "r1")
    assert code == 0 and "changes" not in summary
    assert summary["no_baseline"] == ("no earlier published run of the same environments in "
                                      f"{url}runs/index.json")
    assert [r["run_id"] for r in summary["history"]["runs"]] == ["r1"]


def test_history_from_a_site(tmp_path, published, report):
    runner = tmp_path / "runner"
    with _serve(published) as url:
        code, out, _ = report(runner / "r3", "r3", "2026-12-03T01:00:00Z", _sample(),
                              "--history", url)
    assert code == 0
    history = _summary(runner / "r3")["history"]
    assert [r["run_id"] for r in history["runs"]] == ["r1", "r2", "r3"]
    assert all(len(levels) == 3 for levels in history["cells"].values())
    assert "## History (3 runs, oldest first)" in out
    # a site directory reads the same; the default is the run's own reports directory
    report(runner / "r3", "r3", "2026-12-03T01:00:00Z", _sample(), "--history",
           str(published))
    assert len(_summary(runner / "r3")["history"]["runs"]) == 3
    report(runner / "r3", "r3", "2026-12-03T01:00:00Z", _sample(), "--history",
           str(tmp_path / "reports"))  # another reports directory
    assert [r["run_id"] for r in _summary(runner / "r3")["history"]["runs"]] == [
        "r1", "r2", "r3"]
    report(runner / "r3", "r3", "2026-12-03T01:00:00Z", _sample())
    assert [r["run_id"] for r in _summary(runner / "r3")["history"]["runs"]] == ["r3"]


def test_history_takes_the_last_runs_the_index_lists(tmp_path, published):
    index = _index(published)
    entries = [{**index["runs"][0], "run_id": f"x{i:02d}",
                "started_at": f"2026-11-{i + 1:02d}T00:00:00Z"} for i in range(29, -1, -1)]
    index["runs"] = index["runs"] + entries  # 32 runs, newest first; x.. have no files
    (published / "runs" / "index.json").write_text(json.dumps(index))
    (published / "runs" / "x29").mkdir()
    (published / "runs" / "x29" / "summary.json").write_text(
        (published / "runs" / "r1" / "summary.json").read_text())
    found = site.earlier(str(published), {"run_id": "r3", "started_at": "2026-12-03"}, [],
                         limit=3)
    # r2, r1, x29 listed; x29's summary is r1's copy; runs gone from the site are left out
    assert [s["run"]["run_id"] for s in found] == ["r1", "r1", "r2"]
    assert len(site.earlier(str(published), {"run_id": "r3"}, [])) == 3


def test_publish_from_mirrors_the_live_site(tmp_path, published, report):
    live = {p.relative_to(published): p.read_bytes() for p in published.rglob("*")
            if p.is_file()}
    runner, new_site = tmp_path / "runner", tmp_path / "deploy"
    assert report(runner / "r3", "r3", "2026-12-03T01:00:00Z", _sample())[0] == 0
    with _serve(published) as url:
        for _ in range(2):  # twice: the same site
            assert main(["publish", str(runner / "r3"), "--site", str(new_site),
                         "--from", url]) == 0
    assert [e["run_id"] for e in _index(new_site)["runs"]] == ["r3", "r2", "r1"]
    for rel, data in live.items():
        if rel.parts[0] == "runs" and rel.name != "index.json":
            assert (new_site / rel).read_bytes() == data
    assert (new_site / "index.html").read_bytes() == \
        (runner / "r3" / "index.html").read_bytes()
    # --keep-history 2 downloads only what it keeps
    with _serve(published) as url:
        assert main(["publish", str(runner / "r3"), "--site", str(tmp_path / "two"),
                     "--from", url, "--keep-history", "2"]) == 0
    assert sorted(os.listdir(tmp_path / "two" / "runs")) == ["index.json", "r2", "r3"]


def test_publish_from_a_site_with_no_run_yet(tmp_path, report):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report(tmp_path / "r1", "r1", "2026-12-01T01:00:00Z", _sample())[0] == 0
    with _serve(empty) as url:
        assert main(["publish", str(tmp_path / "r1"), "--site", str(tmp_path / "out"),
                     "--from", url]) == 0
    assert [e["run_id"] for e in _index(tmp_path / "out")["runs"]] == ["r1"]


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_urls_are_one_line_exit_2(tmp_path, published, report, capsys):
    bad = tmp_path / "bad"
    (bad / "runs").mkdir(parents=True)
    (bad / "runs" / "index.json").write_text("<html>not json</html>")
    dead = f"http://127.0.0.1:{_closed_port()}/"
    with _serve(published) as url, _serve(bad) as bad_url:
        cases = [
            (["--baseline", dead], f"--baseline {dead}: {dead}runs/index.json: cannot "
                                   "download it: "),
            (["--baseline", bad_url], f"{bad_url}runs/index.json is not JSON ("),
            (["--baseline", url + "runs/nope/"], f"{url}runs/nope/summary.json does not "
                                                 "exist; pass the root of a site"),
            (["--history", bad_url], f"--history {bad_url}: {bad_url}runs/index.json is not "
                                     "JSON"),
            (["--history", str(tmp_path / "nowhere")], "no such site or reports directory"),
        ]
        for args, message in cases:
            code, out, err = report(tmp_path / "r3", "r3", "2026-12-03T01:00:00Z", _sample(),
                                    *args)
            assert code == 2 and out == "", args
            assert len(err.strip().splitlines()) == 1 and message in err, err
        code = main(["publish", str(tmp_path / "reports" / "r1"), "--site",
                     str(tmp_path / "x"), "--from", dead])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: --from {dead}: ") and "check the URL" in err


def test_local_published_run_and_site_directory_as_baseline(tmp_path, published, report):
    records, victim = _regressed()
    for baseline in (str(published / "runs" / "r1"), str(published)):
        code, _, _ = report(tmp_path / "r3", "r3", "2026-12-03T01:00:00Z", records,
                            "--baseline", baseline)
        changes = _summary(tmp_path / "r3")["changes"]
        assert code == 0 and changes["baseline"]["case_level"] is True
        assert [c["case_id"] for c in changes["cases"]["regressions"]] == [victim]
        assert str(tmp_path) not in changes["baseline"]["path"]  # redacted


def test_downloads_keep_to_settings_fetch(published):
    from harness.usermodels import FetchLimits
    size = (published / "runs" / "index.json").stat().st_size
    with _serve(published) as url:
        small = site.Site(url, "--history " + url, FetchLimits(max_download_mb=size / 2 / 2**20))
        with pytest.raises(UserError, match=r"runs/index.json: it sent more than .* MiB "
                                            r"\(settings.fetch.max_download_mb\); check the"):
            small.runs()
        enough = site.Site(url, "--history " + url, FetchLimits(max_download_mb=size / 2**20))
        assert [e["run_id"] for e in enough.runs()] == ["r2", "r1"]
