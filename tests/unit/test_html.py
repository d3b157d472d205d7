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
from harness.report.html import expand_runs, render_html, runs
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


def _raw(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert match, "no embedded data"
    text = match.group(1)
    assert not set("<>&") & set(text)
    return json.loads(text)


def _data(page: str) -> dict:
    """The embedded data as the script reads it: whole case ids (front-coded: ``k`` UTF-16
    units shared with the previous id) and every cell's case list expanded."""
    data = _raw(page)
    previous = ""
    for case in data["cases"]:
        head = previous.encode("utf-16-le")[:2 * case.pop("k", 0)].decode("utf-16-le")
        case["id"] = previous = head + case["id"]
    for group in ("cells", "doc", "gcells"):
        for cell in data[group].values():
            cell["c"] = expand_runs(cell["c"])
    return data


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


# ---------------------------------------------------------------- tallies, compact data

def test_runs_round_trip():
    for indices in ([], [0], [3], [0, 1, 2, 3], [1, 2, 5, 7, 8, 9, 20], list(range(50))):
        assert expand_runs(runs(indices)) == indices, indices
    assert runs([4, 5, 6, 9]) == [4, -2, 9]
    # two ascending lists one after the other (a grid cell: counted, then the others)
    assert expand_runs(runs([7, 8, 9]) + runs([1, 2, 30])) == [7, 8, 9, 1, 2, 30]


def test_ids_front_coded_in_utf16_units(matrix):
    records = _synthetic(4, False)
    for i, rec in enumerate(records):  # a non-BMP character: two UTF-16 units in the script
        rec["case_id"] = f"env0/tf2/saved_model/load/api-😀-{i}/mlp@p0/tf2"
    page = _page(matrix, records)[1]
    raw = _raw(page)["cases"]
    assert raw[0].get("k", 0) == 0 and all(c["k"] > 20 for c in raw[1:])
    assert sorted(c["id"] for c in _data(page)["cases"]) == sorted(r["case_id"]
                                                                   for r in records)


def test_tallies_are_computed_once_in_python(matrix):
    records = _records()
    summary, page = _page(matrix, records)
    data = _data(page)
    by_id = {r["case_id"]: r for r in records}
    for key, cell in data["cells"].items():
        outcomes: dict[str, int] = {}
        for i in cell["c"]:
            o = by_id[data["cases"][i]["id"]]["outcome"]
            outcomes[o] = outcomes.get(o, 0) + 1
        assert cell["o"] == outcomes, key
        assert cell["p"] == outcomes.get("passed", 0), key
        assert cell["a"] == sum(outcomes.get(o, 0) for o in ("passed", "failed", "error")), key
        assert cell["i"] == sum(outcomes.get(o, 0) for o in ("crashed", "timeout", "env_error",
                                                             "harness_error")), key
        assert cell["s"] == outcomes.get("skipped", 0), key
    for cell in summary["cells"]:
        doc = data["doc"][f"doc:{cell['format']}/{cell['operation']}/{cell['column']}"]
        assert (doc["p"], doc["a"], doc["i"], doc["lv"]) == (
            cell["passed"], cell["attempted"], cell["infra"], cell["observed"])
        whole = cell["all_calls"]
        assert doc["all"] == {"p": whole["passed"], "a": whole["attempted"],
                              "i": whole["infra"]}
        assert doc["calls"] == cell["calls"]
    script = re.findall(r"<script>(.*?)</script>", page, re.S)[-1]
    assert "||0)+1" not in script  # the script counts nothing (it did: counts[o]||0)+1)


# ---------------------------------------------------------------- the new sections

RELEASE_ENVS = {"tf1.15-a": {"release": "1.15", "versions": {"tensorflow": "1.15.5"}},
                "tf2.15-a": {"release": "2.15", "versions": {"tensorflow": "2.15.1"}},
                "tf2.15-b": {"release": "2.15", "versions": {"tensorflow": "2.15.1"}},
                "tf2.21-a": {"release": "2.21", "versions": {"tensorflow": "2.21.0"}}}
MODES_OF = {"tf1.15-a": ("tf1",), "tf2.15-a": ("compat", "tf2"), "tf2.15-b": ("tf2",),
            "tf2.21-a": ("tf2",)}


def _release_records() -> list[dict]:
    """saved_model cases between three releases: hub.load (the grid's call), another load
    variant, a fine-tune and the creates (never in a grid cell)."""
    out = []
    for env, modes in MODES_OF.items():
        for mode in modes:
            column = "tf1" if mode in ("tf1", "compat") else "tf2"
            out.append({"case_id": f"{env}/{mode}/saved_model/create/tf.saved_model.save/mlp",
                        "env_id": env, "mode": mode, "column": column,
                        "format": "saved_model", "operation": "create",
                        "api": "tf.saved_model.save", "model": "mlp", "model_kind": "mlp",
                        "producer_env": env, "producer_mode": mode, "outcome": "passed",
                        "via": "path"})
            for penv, pmodes in MODES_OF.items():
                for pmode in pmodes:
                    for op, api in (("load", "hub.load"), ("load", "hub.KerasLayer"),
                                    ("fine_tune", "hub.KerasLayer-trainable-fit")):
                        newer = RELEASE_ENVS[penv]["release"] > RELEASE_ENVS[env]["release"]
                        bad = newer and env == "tf1.15-a"
                        out.append({
                            "case_id": f"{env}/{mode}/saved_model/{op}/{api}/mlp@{penv}/{pmode}",
                            "env_id": env, "mode": mode, "column": column,
                            "format": "saved_model", "operation": op, "api": api,
                            "model": "mlp", "model_kind": "mlp", "producer_env": penv,
                            "producer_mode": pmode, "via": "path",
                            "outcome": "error" if bad else "passed",
                            "error_type": "NotFoundError" if bad else None,
                            "message": "Op type not registered 'DisableCopyOnRead'" if bad
                            else None})
    return out


def _grid_summary(records: list[dict]) -> list[dict]:
    """summary.json's grid as summary.py builds it (counted: hub.load in both columns)."""
    def rel(env: str) -> str:
        return RELEASE_ENVS[env]["release"]
    cells: dict[tuple, list] = {}
    for r in records:
        if r["operation"] == "load" and r["api"] == "hub.load":
            cells.setdefault((rel(r["producer_env"]), rel(r["env_id"])), []).append(r)
    out = []
    for (producer, consumer), rs in sorted(cells.items()):
        passed = sum(r["outcome"] == "passed" for r in rs)
        out.append({"producer": producer, "consumer": consumer, "passed": passed,
                    "attempted": len(rs), "infra": 0,
                    "observed": "supported" if passed == len(rs) else
                    "unsupported" if not passed else "partial",
                    "error": None if passed else f"NotFoundError: {HOSTILE}"})
    return [{"format": "saved_model", "title": "TF2 SavedModel",
             "api": {"tf1": "hub.load", "tf2": "hub.load"},
             "releases": ["1.15", "2.15", "2.21"], "cells": out}]


RANGES = [{"from": "1.15", "to": "2.15", "status": "supported", "qualifier": None,
           "error": None, "passed": 10, "attempted": 10, "releases": ["1.15", "2.15"],
           "text": "TF 1.15–2.15"},
          {"from": "2.16", "to": "2.21", "status": "unsupported", "qualifier": None,
           "error": f"ValueError: {HOSTILE}", "passed": 0, "attempted": 6,
           "releases": ["2.16", "2.21"], "text": f"from TF 2.16: ValueError: {HOSTILE}"}]
CONDITIONS = [{"failure": "ValueError: x", "error_type": "ValueError", "cases": 6,
               "condition": [{"dim": "release", "op": "≥", "value": "2.16"}],
               "text": "consumer TF ≥ 2.16 → ValueError: x", "exact": True, "matched": 6,
               "missed": 0, "over": 0, "example": "tf2.21-a/tf2/saved_model/load/hub.load/mlp"},
              {"failure": "KeyError: y", "error_type": "KeyError", "cases": 3,
               "condition": [{"dim": "keras", "op": "=", "value": "Keras 3"}],
               "text": "Keras = Keras 3 → KeyError: y (covers 2 of 3, also 1 other)",
               "exact": False, "matched": 2, "missed": 1, "over": 1, "example": "c/1"}]
BREAKERS = [{"failure": "ModuleNotFoundError: No module named 'pkg_resources'",
             "error_type": "ModuleNotFoundError", "cases": 4,
             "condition": [{"dim": "setuptools", "op": "≥", "value": "82"}],
             "text": "setuptools ≥ 82 → ModuleNotFoundError: No module named 'pkg_resources'",
             "exact": True, "matched": 4, "missed": 0, "over": 0, "example": "b/1"}]
DOCS_TABLE = {
    "columns": ["TF1 / TF1 compat mode in TF2", "TF2"],
    "formats": [{"format": "saved_model", "title": "TF2 SavedModel",
                 "rows": [{"operation": "load", "title": "Loading / Inference", "cells": [
                     {"column": "tf1", "text": "Fully supported<br>TF 1.15–2.15; `hub.load`",
                      "notes": [1, 2]},
                     {"column": "tf2", "text": f"Not supported {HOSTILE}", "notes": []}]}]},
                {"format": "tf1_hub", "title": "TF1 Hub format", "header": "TF1/ compat [1]",
                 "rows": [{"operation": "load", "title": "Loading / Inference", "cells": [
                     {"column": "tf1", "text": "supported — TF 1.15–2.15 (tensorflow_hub ≤ "
                                               "0.15)", "notes": [2]},
                     {"column": "tf2", "text": "partial", "notes": []}]}]}],
    "footnotes": [{"n": 1, "text": "compat mode: `import tensorflow.compat.v1 as tf`"},
                  {"n": 2, "text": f"an error {HOSTILE}"}]}


def _release_page(matrix, with_new: bool = True):
    records = _release_records()
    summary = summarize(records, matrix, dict(RUN), copy.deepcopy(RELEASE_ENVS))
    if with_new:
        summary["grid"] = _grid_summary(records)
        summary["docs_table"] = DOCS_TABLE
        cell = next(c for c in summary["cells"] if (c["format"], c["operation"],
                                                    c["column"]) == ("saved_model", "load",
                                                                     "tf1"))
        cell.update(ranges=RANGES, conditions=CONDITIONS, breakers=BREAKERS)
    else:
        summary.pop("grid", None)
        summary.pop("docs_table", None)
        for cell in summary["cells"]:
            for key in ("ranges", "conditions", "breakers", "calls", "all_calls"):
                cell.pop(key, None)
    return records, summary, render_html(summary, records)


def _doc_td(page: str, key: str) -> str:
    start = page.index(f'data-key="{key}"')
    return page[start:page.index("</td>", start)]


def test_documents_cell_shows_ranges_conditions_breakers(matrix):
    _, summary, page = _release_page(matrix)
    assert HOSTILE not in page
    td = _doc_td(page, "doc:saved_model/load/tf1")
    assert td.count('data-testid="range"') == 2
    assert "TF 1.15–2.15" in td and "from TF 2.16: ValueError: &lt;script&gt;" in td
    assert 'class="range r-unsupported"' in td
    assert td.count('data-testid="condition"') == 2
    assert "consumer TF ≥ 2.16 → ValueError: x" in td
    assert "(covers 2 of 3, also 1 other)" in td  # an inexact one with its counts
    assert 'class="condition inexact"' in td and "matched 2, missed 1, over 1" in td
    assert 'data-key="case:tf2.21-a/tf2/saved_model/load/hub.load/mlp"' in td  # its example
    assert td.count('data-testid="breaker"') == 1 and "environment breaker" in td
    assert "setuptools ≥ 82 → ModuleNotFoundError" in td and "(4 cases)" in td
    cell = next(c for c in summary["cells"] if (c["format"], c["operation"], c["column"]) ==
                ("saved_model", "load", "tf1"))
    whole = cell["all_calls"]
    assert f'all variants: {whole["passed"]}/{whole["attempted"]}' in td
    assert cell["calls"] and _data(page)["doc"]["doc:saved_model/load/tf1"]["calls"] == \
        cell["calls"]
    # the verdict stays the level of the counted calls, not the breakers'
    assert 'data-testid="verdict"' in td


def test_corrected_documents_table(matrix):
    _, _, page = _release_page(matrix)
    assert 'href="#corrected"' in page and 'data-testid="corrected"' in page
    section = page[page.index('<section id="corrected"'):]
    section = section[:section.index("</section>")]
    assert section.count('data-testid="corrected-table"') == 2
    assert 'data-format="saved_model"' in section and 'data-format="tf1_hub"' in section
    assert "Fully supported<br>TF 1.15–2.15; <code>hub.load</code>" in section
    assert 'href="#fn-1" class="fn">[1]</a></sup><sup><a href="#fn-2"' in section
    assert "<th>TF1/ compat [1]</th>" in section  # a format's own first column header
    assert "<th>TF1 / TF1 compat mode in TF2</th><th>TF2</th>" in section
    assert 'data-testid="footnotes"' in section and 'id="fn-2" value="2"' in section
    assert "<code>import tensorflow.compat.v1 as tf</code>" in section
    assert "&lt;script&gt;" in section and HOSTILE not in section


def test_release_grid_data(matrix):
    records, summary, page = _release_page(matrix)
    assert 'data-testid="grid"' in page and 'href="#grid"' in page
    assert 'id="grid-maps"' in page
    data = _data(page)
    assert data["grid"] == [{"format": "saved_model", "title": "TF2 SavedModel",
                             "api": {"tf1": "hub.load", "tf2": "hub.load"},
                             "releases": ["1.15", "2.15", "2.21"]}]
    assert {c["release"] for c in data["cols"]} == {"1.15", "2.15", "2.21"}
    assert len(data["gcells"]) == len(summary["grid"][0]["cells"]) == 9
    cell = data["gcells"]["g:saved_model/2.15/1.15"]
    assert (cell["p"], cell["a"], cell["lv"]) == (0, 3, "unsupported")
    assert data["strings"][cell["e"]] == f"NotFoundError: {HOSTILE}"
    ids = [data["cases"][i]["id"] for i in cell["c"]]
    counted = {r["case_id"] for r in records if r["env_id"] == "tf1.15-a"
               and r["producer_env"] in ("tf2.15-a", "tf2.15-b") and r["api"] == "hub.load"}
    others = {r["case_id"] for r in records if r["env_id"] == "tf1.15-a"
              and r["producer_env"] in ("tf2.15-a", "tf2.15-b") and r["api"] != "hub.load"
              and r["operation"] != "create"}
    assert cell["k"] == 3 and set(ids[:3]) == counted and set(ids[3:]) == others
    assert cell["o"] == {"error": 9}
    same = data["gcells"]["g:saved_model/2.15/2.15"]  # two envs of one release, both modes
    assert same["k"] == same["a"] == 9 and same["lv"] == "supported"


def test_new_sections_absent_render_nothing(matrix):
    _, _, page = _release_page(matrix, with_new=False)
    for text in ('id="corrected"', 'id="grid"', 'href="#grid"', 'href="#corrected"',
                 'data-testid="range"', 'data-testid="condition"', 'data-testid="breaker"',
                 'data-testid="all-calls"', 'id="grid-maps"'):
        assert text not in page, text
    data = _data(page)
    assert data["grid"] == [] and data["gcells"] == {}
    assert 'data-testid="doc-table"' in page and 'data-testid="matrix-table"' in page


def test_versions_run_size():
    """~30,000 cases of a versions run (47 envs x 2 modes, ~23 producer releases) with a
    grid of 23 x 23 releases x 3 formats: the page stays a few MB."""
    releases = ["1.15"] + [f"2.{i}" for i in range(22)]
    envs = {f"tf{r}-{f}": {"release": r, "versions": {"tensorflow": r + ".0"}}
            for r in releases for f in ("a", "b")}
    records = []
    for env in envs:
        for mode in ("compat", "tf2"):
            for n in range(330):
                fmt = ("tf1_hub", "saved_model", "keras_saved_model")[n % 3]
                producer = f"tf{releases[n % 23]}-a"
                api = f"api-{n // 23}"
                bad = n % 5 == 0
                records.append({
                    "case_id": f"{env}/{mode}/{fmt}/load/{api}/mlp@{producer}/tf2",
                    "env_id": env, "mode": mode, "column": "tf1" if mode == "compat" else "tf2",
                    "format": fmt, "operation": "load", "api": api, "model": "mlp",
                    "model_kind": "mlp", "producer_env": producer, "producer_mode": "tf2",
                    "outcome": "error" if bad else "passed", "duration_s": 1.25,
                    "error_type": "NotFoundError" if bad else None,
                    "message": f"Op type not registered {n % 7}" if bad else None,
                    "traceback": "Traceback\n" + "\n".join(f"  line {j}" for j in range(20))
                    if bad else None, "max_abs_err": None if bad else 0.0, "via": "path",
                    "repro": f"nox -s matrix -- --case {env}/{mode}/{fmt}/load/{api}/mlp"
                             f"@{producer}/tf2"})
    grid = [{"format": fmt, "title": fmt, "api": {"tf1": "api-0", "tf2": "api-0"},
             "releases": releases,
             "cells": [{"producer": p, "consumer": c, "passed": 1, "attempted": 2, "infra": 0,
                        "observed": "partial", "error": "NotFoundError: Op type not registered"}
                       for p in releases for c in releases]}
            for fmt in ("tf1_hub", "saved_model", "keras_saved_model")]
    assert len(records) > 29_000
    page = render_html({"run": RUN, "envs": envs, "totals": {"cases": len(records)},
                        "grid": grid}, records)
    assert len(page.encode()) < 4_500_000
    data = _data(page)
    assert len(data["gcells"]) == 3 * 23 * 23
    assert sum(len(c["c"]) for c in data["gcells"].values()) == len(records)


def test_many_conditions_fold_behind_a_click(matrix):
    records = _release_records()
    summary = summarize(records, matrix, dict(RUN), copy.deepcopy(RELEASE_ENVS))
    cell = next(c for c in summary["cells"] if c["format"] == "saved_model"
                and c["operation"] == "load" and c["column"] == "tf2")
    cell["conditions"] = [dict(CONDITIONS[0], text=f"condition {i}") for i in range(8)]
    td = _doc_td(render_html(summary, records), "doc:saved_model/load/tf2")
    assert td.count('data-testid="condition"') == 8
    shown, folded = td.split('<details class="more">')
    assert shown.count('data-testid="condition"') == 5
    assert "<summary>3 more conditions</summary>" in folded and "condition 7" in folded
