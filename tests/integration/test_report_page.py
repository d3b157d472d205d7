"""The report page as a person uses it: index.html opened in headless Chromium.

Two runs are rendered from real recorded cases (tests/resources/diff: 80 cases of two
default-matrix runs), the second with a hostile exception message; the page's own script
must draw the tables, apply the filter and the drill-down named in the URL hash, show the
changes and the history, and keep the hostile text inert.  A third run, of the versions
matrix (matrices/versions.yaml) over three TF releases, has a release grid: a real mouse
click on one of its squares (Chrome DevTools protocol over --remote-debugging-pipe) must
open that square's cases.  A screenshot of the page is saved as reports/report-page.png
(the README's picture comes from a default-matrix run).
"""
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

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


def _summary(url):
    with open(os.path.join(os.path.dirname(url[len("file://"):]), "summary.json")) as fh:
        return json.load(fh)


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


def test_ranges_in_a_documents_cell(page):
    url, _, _ = page
    dom = chromium.dom(url)
    cells = [c for c in _summary(url)["cells"] if c.get("ranges")]
    assert cells  # the recorded runs span TF 1.15, 2.15 and 2.21
    for cell in cells:
        key = f"doc:{cell['format']}/{cell['operation']}/{cell['column']}"
        start = dom.index(f'data-key="{key}"')
        td = dom[start:dom.index("</td>", start)]
        ranges = re.findall(r'data-testid="range"[^>]*>(.*?)</div>', td, re.S)
        texts = [re.sub(r"<[^>]+>", "", r).strip() for r in ranges]
        expected = [r["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                    for r in cell["ranges"]]
        assert texts == expected, key
        whole = cell["all_calls"]
        assert f"all variants: {whole['passed']}/{whole['attempted']}" in td, key


# ---------------------------------------------------------------- a real click on the grid

class _Browser:
    """Chromium driven over the DevTools protocol on a pipe (fds 3 and 4 in the child:
    NUL-terminated JSON messages), so a test can click like a person."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="tfhub-chromium-")
        cmd_r, self._cmd = os.pipe()
        self._res, res_w = os.pipe()

        def onto_3_and_4():  # in the child: the two pipe ends become fds 3 and 4
            a, b = os.dup(cmd_r), os.dup(res_w)
            while a < 5 or b < 5:
                a, b = (os.dup(a) if a < 5 else a), (os.dup(b) if b < 5 else b)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [chromium.binary(), *chromium.FLAGS, f"--user-data-dir={self.profile}",
             "--remote-debugging-pipe", "about:blank"], pass_fds=(3, 4),
            preexec_fn=onto_3_and_4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(res_w)
        self._buf, self._id, self.session = b"", 0, None

    def send(self, method, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._res, 1 << 16)
                assert chunk, "Chromium closed its DevTools pipe"
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def open(self, url, width=1400, height=1000):
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while self.js("document.body && document.body.dataset.ready") != "1":
            assert time.monotonic() < deadline, "the page's script never finished"
            time.sleep(0.1)

    def js(self, expression):
        reply = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def click(self, selector):
        """A mouse press and release at the middle of the element (scrolled into view)."""
        box = self.js(f"(function(){{var e=document.querySelector({json.dumps(selector)});"
                      "e.scrollIntoView({block:'center'});var r=e.getBoundingClientRect();"
                      "return [r.left+r.width/2,r.top+r.height/2];})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                      button="left", clickCount=1)

    def screenshot(self, path):
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self):
        try:
            self.send("Browser.close")
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self._cmd)
            os.close(self._res)
            shutil.rmtree(self.profile, ignore_errors=True)


RELEASE_ENVS = {"tf1.15-hub015": ("1.15", "1.15.5", "0.12.0", ("tf1", "tf1_eager")),
                "tf2.15-hub015": ("2.15", "2.15.1", "0.15.0", ("compat", "tf2")),
                "tf2.15-hub016": ("2.15", "2.15.1", "0.16.1", ("compat", "tf2")),
                "tf2.21-tfkeras": ("2.21", "2.21.0", "0.16.1", ("compat", "tf2"))}
GRID_CELL = "g:saved_model/2.15/1.15"


def _release_records():
    """A versions-matrix run in miniature: every env's health check and SavedModel, loaded
    (hub.load, hub.KerasLayer) and fine-tuned by every env; TF 1.15 cannot load what
    TF 2.15 and later made."""
    def record(env, mode, op, api, producer=None, pmode=None):
        release, tf, hub, _ = RELEASE_ENVS[env]
        fmt = "environment" if op == "health" else "saved_model"
        model = "env" if op == "health" else "mlp"
        case_id = f"{env}/{mode}/{fmt}/{op}/{api}/{model}" + (f"@{producer}/{pmode}"
                                                               if producer else "")
        bad = producer is not None and release == "1.15" and RELEASE_ENVS[producer][0] != "1.15"
        return {"case_id": case_id, "env_id": env, "mode": mode, "format": fmt,
                "column": "tf1" if mode in ("tf1", "tf1_eager", "compat") else "tf2",
                "operation": op, "api": api, "model": model,
                "model_kind": None if op == "health" else "mlp",
                "producer_env": producer or env, "producer_mode": pmode or mode,
                "stage": "consume" if producer else "create", "via": "path",
                "outcome": "error" if bad else "passed",
                "error_type": "tensorflow.python.framework.errors_impl.NotFoundError"
                if bad else None,
                "message": "Op type not registered 'DisableCopyOnRead' in binary running on vm."
                if bad else None, "traceback": None, "duration_s": 0.5,
                "max_abs_err": None if bad else 0.0, "max_rel_err": None if bad else 0.0,
                "python": "3.11.7", "tensorflow": tf, "tensorflow_hub": hub,
                "keras": "tf_keras 2.21.0" if "tfkeras" in env else "keras 2.15.0",
                "backend": "venv", "device": "cpu", "details": {}, "schema_version": 1,
                "run_id": "grid1", "repro": "nox -s matrix -- --case " + case_id}
    out = []
    for env, (_, _, _, modes) in RELEASE_ENVS.items():
        for mode in modes:
            out.append(record(env, mode, "health", "import-tensorflow_hub"))
            out.append(record(env, mode, "create", "tf.saved_model.save"))
            for producer, (_, _, _, pmodes) in RELEASE_ENVS.items():
                for pmode in pmodes:
                    for op, api in (("load", "hub.load"), ("load", "hub.KerasLayer"),
                                    ("fine_tune", "hub.KerasLayer-trainable-fit")):
                        out.append(record(env, mode, op, api, producer, pmode))
    return out


@pytest.fixture(scope="module")
def grid_page(tmp_path_factory):
    matrix = config.load(os.path.join(ROOT, "matrices", "versions.yaml"))
    run_dir = tmp_path_factory.mktemp("reports") / "grid1"
    run_dir.mkdir()
    records = _release_records()
    envs = {e: {"versions": {"python": "3.11.7", "tensorflow": tf, "tensorflow-hub": hub},
                "release": release, "modes": list(modes), "backend": "venv", "device": "cpu"}
            for e, (release, tf, hub, modes) in RELEASE_ENVS.items()}
    write_reports(str(run_dir), records, matrix,
                  {"run_id": "grid1", "started_at": "2026-12-01T00:00:00Z",
                   "git_commit": "abc123"}, envs)
    return (run_dir / "index.html").as_uri(), records


def test_clicking_a_grid_square_shows_its_cases(grid_page):
    url, records = grid_page
    grids = _summary(url)["grid"]
    assert [g["format"] for g in grids] == ["saved_model"]
    assert grids[0]["releases"] == ["1.15", "2.15", "2.21"]
    browser = _Browser()
    try:
        browser.open(url)
        squares = browser.js("document.querySelectorAll('[data-testid=grid-cell]').length")
        assert squares == len(grids[0]["cells"]) == 9
        assert browser.js("document.getElementById('drill').hidden") is True
        browser.click(f'td[data-key="{GRID_CELL}"]')
        assert browser.js("document.getElementById('drill').hidden") is False
        assert browser.js("document.getElementById('drill-title').textContent") == GRID_CELL
        assert "open=" + GRID_CELL in browser.js("location.hash")
        shown = browser.js("Array.prototype.map.call(document.querySelectorAll("
                           "'#drill-rows tr[data-testid=drilldown-row]'),function(r){"
                           "return [r.dataset.case,r.dataset.extra==='1'];})")
        summary_text = browser.js("document.getElementById('drill-summary').textContent")
        browser.screenshot(os.path.join(os.path.dirname(url[len("file://"):]), "grid.png"))
    finally:
        browser.close()
    between = [r for r in records if r["env_id"] == "tf1.15-hub015" and r["format"] ==
               "saved_model" and r["operation"] != "create"
               and r["producer_env"] in ("tf2.15-hub015", "tf2.15-hub016")]
    counted = {r["case_id"] for r in between if r["api"] == "hub.load"}
    assert {c for c, extra in shown if not extra} == counted and len(counted) == 8
    assert {c for c, extra in shown if extra} == {r["case_id"] for r in between} - counted
    assert [extra for _, extra in shown] == sorted(extra for _, extra in shown)  # counted first
    assert "0/8 passed" in summary_text and "DisableCopyOnRead" in summary_text
