"""The report page: structure, escaping of hostile text, cell keys, metadata, size."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess

import pytest

from harness import config
from harness.report.html import render_html
from harness.report.summary import summarize

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources")
HOSTILE = "<script>alert(1)</script>"
RUN = {"run_id": "r1", "git_commit": "abc123", "host": "buildhost", "started_at":
       "2026-11-21T20:50:12Z", "finished_at": "2026-11-21T21:00:12Z", "duration_s": 600.0}
ENVS = {"tf115": {"versions": {"python": "3.7.16", "tensorflow": "1.15.5",
                               "tensorflow-hub": "0.12.0", "protobuf": "3.20.3",
                               "numpy": "1.18.5"}, "backend": "venv", "device": "cpu",
                  "modes": ["tf1", "tf1_eager"], "keras": "tf.keras 2.2.4-tf"},
        "tf221-keras3": {"versions": {"python": "3.12.3", "tensorflow": "2.21.0",
                                      "tensorflow-hub": "0.16.1", "keras": "3.12.0",
                                      "nvidia-cudnn-cu12": "9.3.0"},
                         "backend": "venv", "device": "gpu", "modes": ["compat", "tf2"]},
        "broken": {"versions": {}, "provisioned": "error", "backend": "venv"}}


def _records() -> list[dict]:
    with open(os.path.join(RESOURCES, "records.jsonl")) as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture
def matrix(default_matrix_path):
    return config.load(default_matrix_path)


def _page(matrix, records, run=None, extra=None):
    summary = summarize(records, matrix, dict(run or RUN), copy.deepcopy(ENVS))
    summary.update(extra or {})
    return summary, render_html(summary, records)


def _data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert match, "no embedded data"
    text = match.group(1)
    assert not set("<>&") & set(text)
    return json.loads(text)


def test_structure_self_contained(matrix):
    summary, page = _page(matrix, _records())
    assert page.startswith("<!DOCTYPE html>")
    for testid in ("doc-table", "matrix-table", "filter", "drilldown", "legend",
                   "run-metadata", "env-table", "filter-format", "filter-operation",
                   "filter-outcome"):
        assert f'data-testid="{testid}"' in page, testid
    # one documents' table per format in the data
    formats = {c["format"] for c in summary["cells"]}
    assert len(re.findall(r'data-testid="doc-table"', page)) == len(formats)
    for fmt in formats:
        assert f'data-format="{fmt}"' in page
    # the drill-down rows are made by the script with this testid
    assert "drilldown-row" in page
    # no network: no external script, stylesheet, image or font
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "<link" not in page and "@import" not in page
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page
    for label in ("Loading / Inference", "Fine-tuning", "Creation",
                  "TF1 / TF1 compat mode in TF2", "TF2"):
        assert label in page
    for verdict in ("as documented", "regression", "undocumented support"):
        assert verdict in page


def test_hostile_text_stays_inert(matrix):
    records = _records()
    bad = dict(records[-1], case_id=f"tf115/tf1/saved_model/load/{HOSTILE}/mlp@tf115/tf1",
               api=HOSTILE, outcome="error", error_type="<img src=x onerror=alert(2)>",
               message=f"{HOSTILE} & </script><b>x</b>", traceback=f"Traceback\n{HOSTILE}",
               env_id="tf115", mode="tf1", format="saved_model", operation="load",
               model_kind="mlp", via="path", repro=f"nox -s matrix -- --case '{HOSTILE}'")
    envs_run = dict(RUN, host=HOSTILE, run_id="r<1>")
    summary, page = _page(matrix, records + [bad], run=envs_run)
    assert HOSTILE not in page
    assert "<img src=x" not in page
    assert "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # host, escaped in the HTML
    data = _data(page)
    messages = [data["strings"][c["m"]] for c in data["cases"] if "m" in c]
    assert f"{HOSTILE} & </script><b>x</b>" in messages  # intact once parsed
    case = next(c for c in data["cases"] if c["id"] == bad["case_id"])
    assert case["x"] == bad["repro"]
    assert f"m:saved_model/load/{HOSTILE}@tf115/tf1" in data["cells"]
    assert len(re.findall(r"<script", page)) == 2  # the data and the page's own script


def test_every_cell_key_present(matrix):
    records = _records()
    summary, page = _page(matrix, records)
    data = _data(page)
    for cell in summary["cells"]:
        key = f"doc:{cell['format']}/{cell['operation']}/{cell['column']}"
        assert key in data["doc"], key
        assert f'data-key="{key}"' in page, key
        doc = data["doc"][key]
        assert (doc["p"], doc["a"], doc["i"]) == (cell["passed"], cell["attempted"],
                                                   cell["infra"]), key
    ids = [c["id"] for c in data["cases"]]
    assert sorted(ids) == sorted(r["case_id"] for r in records)
    for rec in records:
        api = rec["api"] + (f" ({rec['model']})" if rec.get("model_kind") == "user" else "")
        key = f"m:{rec['format']}/{rec['operation']}/{api}@{rec['env_id']}/{rec['mode']}"
        assert key in data["cells"], key
        assert rec["case_id"] in [ids[i] for i in data["cells"][key]["c"]]
    rows = {f"{r['format']}/{r['operation']}/{r['api']}" for r in data["rows"]}
    cols = {c["key"] for c in data["cols"]}
    assert {k[2:].split("@")[0] for k in data["cells"]} == rows
    assert {k.split("@")[1] for k in data["cells"]} == cols


def test_metadata_and_infrastructure_labels(matrix):
    records = _records()
    _, page = _page(matrix, records)
    for text in ("r1", "abc123", "buildhost", "2026-11-21T20:50:12Z", "tensorflow 1.15.5",
                 "tensorflow-hub 0.12.0", "protobuf 3.20.3", "numpy 1.18.5", "python 3.7.16",
                 "keras 3.12.0", "nvidia-cudnn-cu12 9.3.0", "venv", "gpu", "tf.keras 2.2.4-tf"):
        assert text in page, text
    assert 'class="infra-row"' in page  # the env that could not be provisioned
    assert 'data-testid="banner-infra"' in page
    assert "crashed" in page and "env_error" in page
    assert "(infrastructure)" in page  # the drill-down's label for infra outcomes
    data = _data(page)
    infra_only = [c for c in data["cells"].values() if c["i"] and not c["a"]]
    assert infra_only  # rendered "infra", coloured o-infra, never as unsupported
    for rec in records:
        if rec["outcome"] in ("crashed", "env_error"):
            case = next(c for c in data["cases"] if c["id"] == rec["case_id"])
            assert case["o"] == rec["outcome"]
    cols = {c["key"]: c for c in data["cols"]}
    assert cols["tf115/tf1"]["tf"] == "1.15.5" and cols["tf115/tf1"]["hub"] == "0.12.0"
    assert cols["tf115/tf1"]["device"] == "cpu" and cols["tf115/tf1"]["backend"] == "venv"


def test_empty_run_shows_error_banner(matrix):
    _, page = _page(matrix, [])
    assert 'data-testid="banner-empty"' in page
    assert "executed no case" in page
    assert 'data-testid="banner-infra"' not in page
    data = _data(page)
    assert data["cases"] == [] and data["rows"] == []
    assert data["doc"]  # the documents' cells still have keys (all unknown)


def _synthetic(n: int, distinct: bool) -> list[dict]:
    records = []
    for i in range(n):
        fmt = ("tf1_hub", "saved_model", "keras_saved_model")[i % 3]
        records.append({
            "case_id": f"env{i % 50}/tf2/{fmt}/load/api-{i % 40}/mlp@p{i % 7}/tf2#{i}",
            "env_id": f"env{i % 50}", "mode": "tf2", "column": "tf2", "format": fmt,
            "operation": "load", "api": f"api-{i % 40}", "model": "mlp", "model_kind": "mlp",
            "producer_env": f"p{i % 7}", "producer_mode": "tf2", "outcome": "error",
            "error_type": "ValueError", "via": "path", "duration_s": 1.0, "max_abs_err": None,
            "message": (f"case {i} " if distinct else "same ") + "x" * 2000,
            "traceback": "\n".join(f'  File "/a/b{j}.py", line {j}, in f{i}' + "y" * 150
                                   for j in range(60)),
            "repro": f"nox -s matrix -- --case env{i % 50}/tf2/{fmt}/load/api-{i % 40}/mlp"
                     f"@p{i % 7}/tf2#{i}"})
    return records


@pytest.mark.parametrize("distinct", [False, True])
def test_size_bound(distinct):
    records = _synthetic(5000, distinct)
    # a minimal summary: the page's size comes from the records (summarize is not under test)
    page = render_html({"run": RUN, "envs": ENVS, "totals": {"cases": len(records)}}, records)
    assert len(page.encode()) < 5_000_000
    data = _data(page)
    for case in data["cases"]:
        assert len(data["strings"][case["m"]]) <= 500
        if "tb" in case:
            assert len(data["strings"][case["tb"]].splitlines()) <= 9
    assert any("tb" in c for c in data["cases"])  # tracebacks kept where the budget allows


def test_traceback_keeps_head_and_tail(matrix):
    records = _synthetic(3, False)
    data = _data(_page(matrix, records)[1])
    tb = data["strings"][data["cases"][0]["tb"]].splitlines()
    assert tb[0].startswith('  File "/a/b0.py"') and tb[-1].startswith('  File "/a/b59.py"')
    assert "52 lines" in tb[3]


CHANGES = {
    "baseline": {"run_id": "full4", "path": "reports/full4"},
    "cells": [{"format": "tf1_hub", "operation": "load", "column": "tf2", "before": "supported",
               "after": "partial", "before_count": "5/5", "after_count": "4/5",
               "change": "regression"},
              {"format": "saved_model", "operation": "load", "column": "tf1",
               "before": "partial", "after": "supported", "before_count": "1/2",
               "after_count": "2/2", "change": "fix"}],
    "cases": {"regressions": [{"case_id": "tf221-keras3/tf2/tf1_hub/load/hub.load/mlp",
                               "before": "passed", "after": "error", "error_type": "KeyError",
                               "message": HOSTILE, "repro": "nox -s matrix -- --case x"}],
              "fixes": [], "changed": [{"case_id": "tf115/tf1/a", "before": "failed",
                                        "after": "error", "error_type": None, "message": "",
                                        "repro": None}],
              "new": [], "vanished": [{"case_id": "gone/1", "before": "passed", "after": None,
                                       "error_type": None, "message": "", "repro": None}]},
    "counts": {"cell_regressions": 1, "cell_fixes": 1, "regressions": 1, "fixes": 0,
               "changed": 1, "new": 0, "vanished": 1}}
HISTORY = {
    "runs": [{"run_id": "full4", "started_at": "2026-11-20", "git_commit": "aaa"},
             {"run_id": "r1", "started_at": "2026-11-21", "git_commit": "abc123"}],
    "cells": {"tf1_hub/load/tf2": ["supported", "partial"],
              "saved_model/load/tf1": [None, "supported"]},
    "env_passed": {"tf115/tf1": [{"passed": 10, "attempted": 12}, {"passed": 11,
                                                                   "attempted": 12}],
                   "new/tf2": [None, {"passed": 3, "attempted": 4}]}}


def test_changes_and_history(matrix):
    _, page = _page(matrix, _records(), extra={"changes": CHANGES, "history": HISTORY})
    assert 'data-testid="changes"' in page and "Changes since full4" in page
    assert HOSTILE not in page
    order = [page.index(f'data-testid="changes-{g}"') for g in ("regressions", "changed",
                                                                "vanished")]
    assert order == sorted(order)
    assert page.index('class="ch-regression"') < page.index('class="ch-fix"')
    assert 'href="#open=case:tf221-keras3/tf2/tf1_hub/load/hub.load/mlp"' in page
    assert 'data-testid="history-chart"' in page and "<svg" in page
    strips = re.findall(r'<span class="strip" data-testid="history-strip">(.*?)</span></span>',
                        page)
    assert strips and all(s.count('class="sq') == 2 for s in strips)
    assert 'class="sq l-none"' in page  # a run without that cell
    assert page.count("<polyline") == 2
    _, plain = _page(matrix, _records())
    assert 'data-testid="changes"' not in plain and 'data-testid="history"' not in plain


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_script_parses(matrix, tmp_path):
    page = _page(matrix, _records())[1]
    script = re.findall(r"<script>(.*?)</script>", page, re.S)[-1]
    path = tmp_path / "page.js"
    path.write_text(script)
    subprocess.run(["node", "--check", str(path)], check=True)


def test_env_vars_shown_by_name_with_published_values(matrix):
    envs = copy.deepcopy(ENVS)
    envs["tf115"]["env_vars"] = {"TF_USE_LEGACY_KERAS": "1", "HUB_TOKEN": "<hidden>"}
    summary = summarize(_records(), matrix, dict(RUN), envs)
    page = render_html(summary, _records())
    assert "<td>HUB_TOKEN=&lt;hidden&gt;, TF_USE_LEGACY_KERAS=1</td>" in page


def test_page_assets_ship_in_the_wheel(tmp_path):
    """page.html / page.css / page.js are package data: in the harness wheel, and the page
    is made from them (no placeholder left)."""
    import zipfile

    from harness.wheel import build_wheel

    wheel, _ = build_wheel(str(tmp_path))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("page.html", "page.css", "page.js"):
        assert f"harness/report/page/{name}" in names, name
    page = render_html({"run": RUN, "envs": ENVS, "totals": {}}, [])
    assert not re.search(r"\$(run_id|css|nav|top|bottom|data|script)\b", page)
