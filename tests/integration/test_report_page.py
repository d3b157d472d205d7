"""The report page as a person uses it: index.html opened in headless Chromium.

Two runs are rendered from real recorded cases (tests/resources/diff: 80 cases of two
default-matrix runs), the second with a hostile exception message; the page's own script
must draw the tables, apply the filter and the drill-down named in the URL hash, show the
changes and the history, and keep the hostile text inert.  A screenshot of the page is
saved as reports/report-page.png (the README's picture comes from a default-matrix run).
"""
import json
import os
import re

import pytest

from harness import config
from harness.report import write_reports

from . import chromium

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIFF = os.path.join(ROOT, "tests", "resources", "diff")
HOSTILE = '<script>alert("pwned")</script> & <img src=x onerror=alert(1)>'
DOC_CELL = "doc:saved_model/load/tf1"


def _records(name):
    with open(os.path.join(DIFF, name + ".records.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def _envs(records):
    return {r["env_id"]: {"versions": {"python": r["python"], "tensorflow": r["tensorflow"],
                                       "tensorflow-hub": r["tensorflow_hub"]},
                          "backend": r["backend"], "device": r["device"]}
            for r in records if r.get("python")}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    matrix = config.load(os.path.join(ROOT, "matrix.yaml"))
    reports = tmp_path_factory.mktemp("reports")
    runs = {}
    for name, started in (("full4", "2026-11-21T20:00:00Z"), ("full5", "2026-11-21T21:00:00Z")):
        records = _records(name)
        if name == "full5":
            bad = dict(records[-1], case_id=records[-1]["case_id"] + "-hostile",
                       outcome="error", error_type="ValueError", message=HOSTILE,
                       traceback="Traceback (most recent call last):\n" + HOSTILE)
            records.append(bad)
        run_dir = reports / name
        run_dir.mkdir()
        write_reports(str(run_dir), records, matrix,
                      {"run_id": name, "started_at": started, "git_commit": "abc123"},
                      _envs(records), baseline="auto")
        runs[name] = (run_dir, records)
    run_dir, records = runs["full5"]
    return (run_dir / "index.html").as_uri(), records, bad


def _matrix_rows(dom):
    body = dom.split('id="matrix-table"', 1)[1].split("</table>", 1)[0].split("<tbody", 1)[1]
    return re.findall(r"<tr[ >].*?</tr>", body, re.S)


def test_tables_and_metadata_are_drawn(page):
    url, records, _ = page
    dom = chromium.dom(url)
    assert 'data-ready="1"' in dom  # the page's script ran to the end
    assert dom.count('data-testid="doc-table"') == 3  # tf1_hub, saved_model, keras_saved_model
    rows = _matrix_rows(dom)
    assert len(rows) == len({(r["format"], r["operation"], r["api"]) for r in records
                             if r.get("model_kind") != "user"})
    assert 'data-testid="run-metadata"' in dom and "abc123" in dom
    assert "2.21.0" in dom and "1.15.5" in dom  # the installed versions per env


def test_filter_from_the_hash(page):
    url, _, _ = page
    everything = _matrix_rows(chromium.dom(url))
    rows = _matrix_rows(chromium.dom(url + "#filter=GradientTape"))
    assert rows and len(rows) < len(everything)
    assert all("GradientTape" in row for row in rows)


def test_drill_down_lists_the_cells_cases(page):
    url, records, _ = page
    dom = chromium.dom(url + "#open=" + DOC_CELL)
    aside = re.search(r"<aside[^>]*id=\"drill\"[^>]*>", dom).group(0)
    assert "hidden" not in aside
    shown = set(re.findall(r'data-testid="drilldown-row"[^>]*data-case="([^"]+)"', dom)) | \
        set(re.findall(r'data-case="([^"]+)"[^>]*data-testid="drilldown-row"', dom))
    expected = {r["case_id"] for r in records if (r["format"], r["operation"], r["column"]) ==
                ("saved_model", "load", "tf1") and r.get("model_kind") != "user"}
    assert shown == expected
    assert "nox -s matrix -- --case" in dom  # the repro command of each case


def test_hostile_text_stays_text(page):
    url, _, bad = page
    dom = chromium.dom(url + "#open=case:" + bad["case_id"])
    assert "&lt;script&gt;alert(\"pwned\")&lt;/script&gt;" in dom  # shown, as text
    assert "<script>alert" not in dom and "<img src=x" not in dom
    assert dom.count("<script") == 2  # the page's data and its code, nothing injected


def test_changes_and_history(page):
    url, _, _ = page
    dom = chromium.dom(url)
    assert 'data-testid="changes"' in dom and "full4" in dom
    changed = dom.split('data-testid="changes-changed"', 1)[1].split("</details>", 1)[0]
    assert changed.count('data-testid="change-case"') == 10  # failed -> error, setuptools 82
    assert 'data-testid="history-strip"' in dom and 'data-testid="history-chart"' in dom


def test_screenshot_for_the_readme(page):
    url, _, _ = page
    os.makedirs(os.path.join(ROOT, "reports"), exist_ok=True)
    path = chromium.screenshot(url + "#open=" + DOC_CELL,
                               os.path.join(ROOT, "reports", "report-page.png"))
    with open(path, "rb") as fh:
        head = fh.read(8)
    assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 20_000
