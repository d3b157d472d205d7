"""The report page ``reports/<run-id>/index.html``: one self-contained file.

The page is made from real files next to this module (``page/``, shipped in the wheel):
``page.html``, the one template (``string.Template``: ``$top``, ``$data``, ...), with
``page.css`` and ``page.js`` inlined into it.  No network, no CDN: the page opens from
``file://`` and from a static site.  Static parts (run metadata, the documents' table,
changes, history) are rendered here with every text escaped; the full matrix and every
drill-down are rendered by the script from data embedded as JSON in ``<script
type="application/json" id="data">`` (``<``, ``>`` and ``&`` written as ``\\u003c``,
``\\u003e``, ``\\u0026``) and put into the DOM with ``textContent`` only, so a record's
text can never become markup.

Cell keys (``#open=<key>`` opens a cell's cases; ``#filter=TEXT`` fills the matrix filter):

- ``doc:<format>/<operation>/<column>`` — a documents' table cell (path and by-handle cases);
- ``m:<format>/<operation>/<api>@<env>/<mode>`` — a matrix cell (every producer);
- ``case:<case_id>`` — one case.
"""
from __future__ import annotations

import html
from collections import defaultdict
from importlib import resources
from string import Template
from typing import Any, Iterable

from ..jsonio import dumps
from ..runtime.cases import COLUMN_OF_MODE, COLUMN_TITLES, OPERATIONS
from ..runtime.records import HARNESS_ERROR, INFRA_OUTCOMES, PASSED, SKIPPED
from .markdown import FORMAT_TITLES, format_rank, incomplete_banner, incomplete_text
from .summary import LEVELS, OPERATION_TITLES

PAGE_DIR = "page"  # the page's template, CSS and script, next to this module
HEALTH = ("environment",)  # the health checks' rows come after every format

MESSAGE_CHARS = 500
TRACEBACK_HEAD, TRACEBACK_TAIL, LINE_CHARS = 3, 5, 300
# embedded texts above this many characters: tracebacks are kept only for the first case of
# each distinct error (type + first message line) and messages are cut to SHORT_MESSAGE_CHARS
# (and only while distinct errors x TRACEBACK_CHARS_EACH stays within the budget)
TEXT_BUDGET, SHORT_MESSAGE_CHARS, TRACEBACK_CHARS_EACH = 1_500_000, 200, 1_000
REPRO_PREFIX = "nox -s matrix -- --case "
ATTEMPTED = ("passed", "failed", "error")
VERDICT_LABELS = {"as_documented": "as documented", "regression": "regression",
                  "undocumented_support": "undocumented support",
                  "undocumented": "undocumented (no claim)", "unknown": "unknown (nothing ran)"}
LEVEL_LABELS = {"supported": "supported", "partial": "partial", "unsupported": "unsupported",
                "unknown": "unknown"}
INFRA_LABEL = ("infrastructure (" + " / ".join(INFRA_OUTCOMES) + ") — not a verdict on "
               "the API")
INCOMPLETE_LABEL = "incomplete: no verdict yet"
VERSION_KEYS = ("python", "tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-hub",
                "keras", "tf-keras", "tf_keras", "protobuf", "numpy", "setuptools")


def esc(text: Any) -> str:
    """HTML-escape any value (None -> empty)."""
    return html.escape("" if text is None else str(text), quote=True)


def embed_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` characters."""
    text = dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


# ---------------------------------------------------------------- embedded data


def _short_traceback(tb: Any) -> str:
    """A traceback's first and last lines (where it started and what was raised)."""
    lines = [ln[:LINE_CHARS] for ln in str(tb or "").rstrip().splitlines()]
    if len(lines) <= TRACEBACK_HEAD + TRACEBACK_TAIL:
        return "\n".join(lines)
    cut = len(lines) - TRACEBACK_HEAD - TRACEBACK_TAIL
    return "\n".join(lines[:TRACEBACK_HEAD] + [f"  … {cut} lines …"]
                     + lines[-TRACEBACK_TAIL:])


class _Strings:
    """A string table: repeated messages and tracebacks are embedded once."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, text: str | None) -> int | None:
        if not text:
            return None
        if text not in self.index:
            self.index[text] = len(self.items)
            self.items.append(text)
        return self.index[text]


def _case_row(rec: dict[str, Any], strings: _Strings, seen: set | None = None
              ) -> dict[str, Any]:
    """One case, compact: short keys, long texts in the string table.

    ``seen`` (the page is over its text budget): the distinct errors already given a
    traceback; later cases with the same error get none and a shorter message."""
    row: dict[str, Any] = {"id": rec.get("case_id"), "o": rec.get("outcome")}
    producer = rec.get("producer_env")
    if producer and rec.get("operation") not in ("create", "health"):
        row["p"] = f"{producer}/{rec.get('producer_mode')}"
    message = str(rec.get("message") or "")
    traceback: str | None = _short_traceback(rec.get("traceback"))
    if seen is not None:
        error = (rec.get("error_type"), message.strip().split("\n")[0][:120])
        if error in seen or len(seen) * TRACEBACK_CHARS_EACH > TEXT_BUDGET:
            traceback = None
        seen.add(error)
        message = message[:SHORT_MESSAGE_CHARS]
    optional = {"t": strings.add(rec.get("error_type")),
                "m": strings.add(message[:MESSAGE_CHARS]),
                "tb": strings.add(traceback),
                "e": rec.get("max_abs_err"), "r": rec.get("max_rel_err"),
                "d": rec.get("duration_s"), "v": rec.get("via")}
    row.update({k: v for k, v in optional.items() if v is not None and v != "path"})
    repro = rec.get("repro")
    if repro and repro != REPRO_PREFIX + str(rec.get("case_id")):
        row["x"] = repro
    return row


def _cases(records: list[dict[str, Any]]) -> tuple[_Strings, list[dict[str, Any]]]:
    """The embedded cases; over TEXT_BUDGET, again with repeated errors' texts cut."""
    strings = _Strings()
    cases = [_case_row(rec, strings) for rec in records]
    if sum(len(s) for s in strings.items) <= TEXT_BUDGET:
        return strings, cases
    strings, seen = _Strings(), set[tuple]()
    return strings, [_case_row(rec, strings, seen) for rec in records]


def _row_api(rec: dict[str, Any]) -> str:
    api = str(rec.get("api"))
    return f"{api} ({rec.get('model')})" if rec.get("model_kind") == "user" else api


def _env_key(rec: dict[str, Any]) -> str:
    return f"{rec.get('env_id')}/{rec.get('mode')}"


def _op_rank(op: str) -> int:
    order = list(OPERATIONS) + ["download", "health"]
    return order.index(op) if op in order else len(order)


def _tally(cell: dict[str, Any], outcome: str) -> None:
    if outcome in ATTEMPTED:
        cell["a"] += 1
        cell["p"] += outcome == PASSED
    elif outcome in INFRA_OUTCOMES:
        cell["i"] += 1
    elif outcome == SKIPPED:
        cell["s"] += 1


def _new_cell() -> dict[str, Any]:
    return {"p": 0, "a": 0, "i": 0, "s": 0, "c": []}


def _is_documented(rec: dict[str, Any]) -> bool:
    return rec.get("model_kind") != "user" and rec.get("operation") in OPERATIONS


def matrix_data(records: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """Everything the script renders: cases, matrix rows/columns/cells, documents' cells."""
    ordered_records = sorted(records, key=lambda r: str(r.get("case_id")))
    strings, cases = _cases(ordered_records)
    cells: dict[str, dict[str, Any]] = defaultdict(_new_cell)
    doc: dict[str, dict[str, Any]] = defaultdict(_new_cell)
    rows: dict[tuple[str, str, str], bool] = {}
    cols: dict[str, dict[str, Any]] = {}
    for n, rec in enumerate(ordered_records):
        outcome = str(rec.get("outcome"))
        row = (str(rec.get("format")), str(rec.get("operation")), _row_api(rec))
        rows[row] = True
        cols.setdefault(_env_key(rec), rec)
        cell = cells[f"m:{'/'.join(row)}@{_env_key(rec)}"]
        cell["c"].append(n)
        _tally(cell, outcome)
        if _is_documented(rec):
            column = COLUMN_OF_MODE.get(str(rec.get("mode")), rec.get("column"))
            dcell = doc[f"doc:{rec.get('format')}/{rec.get('operation')}/{column}"]
            dcell["c"].append(n)
            if rec.get("via", "path") == "path":
                _tally(dcell, outcome)
    for cell in summary.get("cells", []):  # the tallies summary.py counted, once
        if "passed" in cell:
            doc[doc_key(cell)].update(p=cell["passed"], a=cell["attempted"],
                                      i=cell.get("infra", 0))
        else:
            doc[doc_key(cell)]  # every documents' cell has a key, even with no case
    ordered = sorted(rows, key=lambda r: (format_rank(r[0], HEALTH), _op_rank(r[1]), r[2]))
    return {"cases": cases, "strings": strings.items, "cells": dict(cells), "doc": dict(doc),
            "rows": [{"format": f, "operation": o, "api": a} for f, o, a in ordered],
            "cols": [_column_header(k, rec, summary) for k, rec in sorted(cols.items())],
            "tolerance": _tolerance(summary)}


def _column_header(key: str, rec: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """A consumer env/mode column: TF, hub, Keras flavour, mode, device, backend."""
    env = summary.get("envs", {}).get(rec.get("env_id"), {}) or {}
    versions = env.get("versions", {}) or {}
    tf = (versions.get("tensorflow") or versions.get("tensorflow-cpu")
          or versions.get("tensorflow-gpu") or rec.get("tensorflow"))
    return {"key": key, "env": rec.get("env_id"), "mode": rec.get("mode"), "tf": tf,
            "hub": versions.get("tensorflow-hub") or rec.get("tensorflow_hub"),
            "keras": env.get("keras") or rec.get("keras"),
            "device": env.get("device") or rec.get("device"),
            "backend": env.get("backend") or rec.get("backend")}


def _tolerance(summary: dict[str, Any]) -> str:
    run = summary.get("run", {}) or {}
    tol = run.get("tolerance") or (summary.get("settings", {}) or {}).get("tolerance")
    if isinstance(tol, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(tol.items()))
    return str(tol) if tol else "settings.tolerance (default atol 1e-05, rtol 1e-05)"


def doc_key(cell: dict[str, Any]) -> str:
    return f"doc:{cell['format']}/{cell['operation']}/{cell['column']}"


# ---------------------------------------------------------------- static sections


def _banner(summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
    totals = summary.get("totals", {}) or {}
    unfinished = incomplete_banner(summary.get("run", {}) or {})
    out = ('<div class="banner incomplete" data-testid="banner-incomplete" role="alert">'
           f"<strong>Incomplete run.</strong> {esc(unfinished)}</div>") if unfinished else ""
    if not records or not totals.get("cases"):
        return out + ('<div class="banner error" data-testid="banner-empty" role="alert">'
                      "<strong>This run executed no case.</strong> Nothing was measured: the "
                      "table below says nothing about TF Hub; see the run's logs "
                      "(provisioning, stage processes) and re-run.</div>")
    infra = {o: n for o, n in (totals.get("outcomes") or {}).items() if o in INFRA_OUTCOMES}
    if not infra:
        return out
    text = ", ".join(f"{n} {o}" for o, n in sorted(infra.items()))
    return out + ('<div class="banner infra" data-testid="banner-infra" role="alert">'
                  f"<strong>Infrastructure failures:</strong> {esc(text)}. These cases did "
                  "not run to a verdict and count as neither supported nor unsupported "
                  '(<a href="#infrastructure">the list</a>).</div>')


def _metadata(summary: dict[str, Any]) -> str:
    run, totals = summary.get("run", {}) or {}, summary.get("totals", {}) or {}
    outcomes = ", ".join(f"{n} {o}" for o, n in sorted((totals.get("outcomes") or {}).items()))
    items = [("Run", run.get("run_id")), ("Started", run.get("started_at")),
             ("Finished", run.get("finished_at")), ("Git commit", run.get("git_commit")),
             ("Host", run.get("host")), ("Host Python", run.get("host_python")),
             ("Matrix", run.get("matrix")),
             ("Cases", f"{totals.get('cases', 0)} ({outcomes or 'none'})"),
             ("Tolerance", _tolerance(summary))]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v if v is not None else '?')}</dd>"
                 for k, v in items)
    return (f'<section id="run" data-testid="run-metadata"><h2>Run</h2><dl class="meta">{dl}'
            f"</dl>{_env_table(summary)}</section>")


def _env_versions(info: dict[str, Any]) -> list[tuple[str, str]]:
    versions = info.get("versions", {}) or {}
    keys = [k for k in VERSION_KEYS if k in versions]
    keys += sorted(k for k in versions if "cuda" in k.lower() or "cudnn" in k.lower())
    return [(k, str(versions[k])) for k in keys]


def _keras_text(info: dict[str, Any]) -> str:
    """The env's Keras, and per mode which ``Layer`` ``tf.keras`` and ``hub.KerasLayer``
    build on (the env's facts: a ``hub.KerasLayer`` fits only where they agree)."""
    parts = [info.get("keras") or ""]
    for mode, facts in sorted((info.get("facts") or {}).items()):
        parts.append(f"{mode}: tf.keras.layers.Layer = {facts.get('tf_keras_layer')}, "
                     f"hub.KerasLayer on {facts.get('hub_keras_layer_base')}")
    return "; ".join(p for p in parts if p)


def _env_table(summary: dict[str, Any]) -> str:
    envs = summary.get("envs", {}) or {}
    if not envs:
        return "<p>No environment information.</p>"
    rows = []
    for env_id, info in sorted(envs.items()):
        info = info or {}
        versions = "; ".join(f"{k} {v}" for k, v in _env_versions(info)) or "not installed"
        status = info.get("provisioned") or ""
        cls = ' class="infra-row"' if status == "error" else ""
        env_vars = ", ".join(f"{k}={v}" for k, v in sorted((info.get("env_vars") or {})
                                                           .items()))
        rows.append(f"<tr{cls} data-testid=\"env-row\"><td>{esc(env_id)}</td>"
                    f"<td>{esc(', '.join(info.get('modes') or []))}</td>"
                    f"<td>{esc(env_vars)}</td>"
                    f"<td>{esc(versions)}</td><td>{esc(_keras_text(info))}</td>"
                    f"<td>{esc(info.get('backend') or '')}</td>"
                    f"<td>{esc(info.get('device') or '')}</td>"
                    f"<td>{esc(status)}</td></tr>")
    return ('<table class="plain" data-testid="env-table"><thead><tr><th>Environment</th>'
            '<th>Modes</th><th title="a value the matrix does not publish '
            '(settings.publish.env_vars) shows as &lt;hidden&gt;">Env vars</th>'
            "<th>Installed versions</th><th>Keras</th><th>Backend</th>"
            "<th>Device</th><th>Provisioned</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _legend() -> str:
    verdicts = "".join(f'<span class="chip v-{v}">{esc(t)}</span>'
                       for v, t in {**VERDICT_LABELS, "incomplete": INCOMPLETE_LABEL}.items())
    outcomes = "".join(f'<span class="chip {c}">{esc(t)}</span>' for c, t in (
        ("o-all", "all passed"), ("o-some", "some passed"), ("o-none", "none passed"),
        ("o-infra", "infra only"), ("o-skip", "skipped only")))
    levels = "".join(f'<span class="chip l-{lv}">{esc(lv)}</span>' for lv in LEVELS)
    return (f'<div class="legend" data-testid="legend"><div><b>Verdict (documented vs '
            f"observed):</b> {verdicts}</div><div><b>Level:</b> {levels}</div>"
            f"<div><b>Matrix cell</b> (passed/attempted over producers): {outcomes}"
            f' <span class="chip o-infra">⚠ infra</span> = {esc(INFRA_LABEL)}</div></div>')


def _count(cell: dict[str, Any]) -> str:
    text = f"{cell.get('passed', 0)}/{cell.get('attempted', 0)}"
    if cell.get("infra"):
        text += f" (+{cell['infra']} infra)"
    if cell.get("incomplete"):
        text += f" {incomplete_text(cell)}"
    return text


def _strip(levels: Iterable[Any], runs: list[dict[str, Any]]) -> str:
    squares = []
    for run, lv in zip(runs, levels):
        lv = lv if lv in LEVELS else "none"
        squares.append(f'<span class="sq l-{lv}" title="{esc(run.get("run_id"))}: '
                       f'{esc(lv)}"></span>')
    return f'<span class="strip" data-testid="history-strip">{"".join(squares)}</span>'


def _doc_cell(cell: dict[str, Any], history: dict[str, Any]) -> str:
    documented = (cell.get("documented") or "no claim").replace("_", " ")
    claim = f'<q>{esc(cell["claim"])}</q>' if cell.get("claim") else ""
    api = f' <code>{esc(cell["api"])}</code>' if cell.get("api") else ""
    obs = cell.get("observed", "unknown")
    parts = [f'<div class="doc-claim"><b>Documented:</b> {esc(documented)} {claim}{api}</div>',
             f'<div class="doc-obs"><b>Observed:</b> <span class="chip l-{esc(obs)}">'
             f"{esc(obs)}</span> {esc(_count(cell))}</div>"]
    handle = cell.get("by_handle")
    if handle and handle.get("attempted", 0) + handle.get("infra", 0) + handle.get("missing", 0):
        parts.append(f'<div class="doc-handle"><b>By handle:</b> {esc(handle["observed"])} '
                     f"{esc(_count(handle))}</div>")
    if cell.get("infra"):
        parts.append(f'<div class="infra-note">⚠ {cell["infra"]} infra '
                     "(not counted)</div>")
    verdict = "incomplete" if cell.get("incomplete") else cell.get("verdict", "unknown")
    label = INCOMPLETE_LABEL if verdict == "incomplete" else VERDICT_LABELS.get(verdict, verdict)
    parts.append(f'<div class="verdict" data-testid="verdict">{esc(label)}</div>')
    hkey = f"{cell['format']}/{cell['operation']}/{cell['column']}"
    if history.get("cells", {}).get(hkey):
        parts.append(_strip(history["cells"][hkey], history.get("runs", [])))
    key = doc_key(cell)
    return (f'<td class="doc v-{esc(verdict)}" data-key="{esc(key)}" data-testid="doc-cell" '
            f'tabindex="0" role="button" title="Show the cases">{"".join(parts)}</td>')


def _documents_tables(summary: dict[str, Any]) -> str:
    history = summary.get("history") or {}
    by_format: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cell in summary.get("cells", []):
        by_format[cell["format"]].append(cell)
    out = []
    for fmt, fcells in sorted(by_format.items(), key=lambda kv: format_rank(kv[0], HEALTH)):
        index = {(c["operation"], c["column"]): c for c in fcells}
        columns = sorted({c["column"] for c in fcells})
        head = "".join(f"<th>{esc(COLUMN_TITLES.get(c, c))}</th>" for c in columns)
        body = []
        for op, title in OPERATION_TITLES.items():
            tds = "".join(_doc_cell(index[(op, col)], history) if (op, col) in index
                          else "<td></td>" for col in columns)
            body.append(f"<tr><th>{esc(title)}</th>{tds}</tr>")
        out.append(f'<h3>{esc(FORMAT_TITLES.get(fmt, fmt))} (<code>{esc(fmt)}</code>)</h3>'
                   f'<table class="doc-table" data-testid="doc-table" data-format="{esc(fmt)}">'
                   f"<thead><tr><th>Operation</th>{head}</tr></thead>"
                   f"<tbody>{''.join(body)}</tbody></table>")
    if not out:
        out.append("<p>No documents' cells in this run.</p>")
    return ('<section id="documents"><h2>The documents\' table: documented vs observed</h2>'
            "<p>Click a cell for its cases. Counts are passed/attempted cases over every "
            "consumer and producer; infrastructure outcomes are not attempts.</p>"
            + "".join(out) + "</section>")


def _change_case(c: dict[str, Any]) -> str:
    case_id = str(c.get("case_id"))
    return (f'<tr data-testid="change-case"><td><a href="#open=case:{esc(case_id)}" '
            f'class="case-link">{esc(case_id)}</a></td><td>{esc(c.get("before") or "—")} → '
            f'{esc(c.get("after") or "—")}</td><td>{esc(c.get("error_type") or "")}</td>'
            f'<td>{esc(c.get("message") or "")}</td><td><code>{esc(c.get("repro") or "")}'
            "</code></td></tr>")


def _changes(summary: dict[str, Any]) -> str:
    changes = summary.get("changes")
    if not changes:
        return ""
    base = changes.get("baseline", {}) or {}
    counts = changes.get("counts", {}) or {}
    count_text = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
    cells = "".join(
        f'<tr class="ch-{esc(c.get("change"))}" data-testid="change-cell"><td>'
        f'{esc(c.get("change"))}</td><td><a href="#open=doc:{esc(c.get("format"))}/'
        f'{esc(c.get("operation"))}/{esc(c.get("column"))}">{esc(c.get("format"))} · '
        f'{esc(c.get("operation"))} · {esc(c.get("column"))}</a></td><td>'
        f'{esc(c.get("before"))} ({esc(c.get("before_count"))})</td><td>{esc(c.get("after"))} '
        f'({esc(c.get("after_count"))})</td></tr>' for c in changes.get("cells", []))
    parts = [f'<section id="changes" data-testid="changes"><h2>Changes since '
             f'{esc(base.get("run_id"))}</h2><p>Baseline <code>{esc(base.get("path"))}</code>'
             f": {esc(count_text or 'no change')}.</p>"]
    if cells:
        parts.append('<table class="plain"><thead><tr><th>Change</th><th>Cell</th>'
                     f"<th>Before</th><th>After</th></tr></thead><tbody>{cells}</tbody></table>")
    for group in ("regressions", "fixes", "changed", "new", "vanished", "missing"):
        items = (changes.get("cases", {}) or {}).get(group) or []
        if not items:
            continue
        opened = " open" if group in ("regressions", "fixes") else ""
        parts.append(f'<details class="ch-{group}"{opened} data-testid="changes-{group}">'
                     f"<summary>{esc(group)} ({len(items)})</summary><table class=\"plain\">"
                     "<thead><tr><th>Case</th><th>Outcome</th><th>Error</th><th>Message</th>"
                     "<th>Repro</th></tr></thead><tbody>"
                     + "".join(_change_case(c) for c in items) + "</tbody></table></details>")
    return "".join(parts) + "</section>"


def _infrastructure(summary: dict[str, Any]) -> str:
    """Cases that did not run to a verdict; every harness_error with its full traceback
    (texts escaped, in ``<pre>``)."""
    infra = summary.get("infrastructure") or {}
    counts = infra.get("counts") or {}
    if not counts:
        return ""
    text = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    parts = ['<section id="infrastructure" data-testid="infrastructure"><h2>Infrastructure '
             "(not results)</h2>",
             f"<p>{esc(text)}: never counted as supported or unsupported.</p>"]
    errors = infra.get("harness_errors") or []
    if errors:
        parts.append(f"<p><code>{HARNESS_ERROR}</code>: an exception raised by the harness's "
                     "own code outside the documented call under test — a harness bug to fix, "
                     "not evidence about the library.</p>")
    for e in errors:
        ids = "".join(f'<li><a href="#open=case:{esc(cid)}"><code>{esc(cid)}</code></a></li>'
                      for cid in e.get("case_ids") or [])
        first = next((ln for ln in str(e.get("message") or "").splitlines() if ln.strip()), "")
        parts.append(f'<details class="harness-error" data-testid="harness-error" open>'
                     f"<summary>{HARNESS_ERROR} × {esc(e.get('cases'))}: "
                     f"<b>{esc(e.get('error_type'))}</b>: {esc(first[:300])}</summary>"
                     f"<ul>{ids}</ul><h4>Message</h4><pre>{esc(e.get('message'))}</pre>"
                     f"<h4>Traceback</h4><pre>{esc(e.get('traceback') or '(none)')}</pre>"
                     "</details>")
    other = infra.get("other") or []
    if other:
        rows = "".join(f'<tr><td class="out-{esc(e.get("outcome"))}">{esc(e.get("outcome"))}'
                       f'</td><td>{esc(e.get("cases"))}</td><td>{esc(e.get("error_type"))}</td>'
                       f'<td>{esc(e.get("message"))}</td><td><a href="#open=case:'
                       f'{esc(e.get("case_id"))}"><code>{esc(e.get("case_id"))}</code></a></td>'
                       "</tr>" for e in other)
        parts.append('<table class="plain" data-testid="infra-other"><thead><tr><th>Outcome'
                     "</th><th>Cases</th><th>Error</th><th>Message</th><th>e.g.</th></tr>"
                     f"</thead><tbody>{rows}</tbody></table>")
    return "".join(parts) + "</section>"


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _chart(history: dict[str, Any]) -> str:
    """Inline SVG: passed cases per env/mode over runs, one polyline each."""
    runs, series = history.get("runs", []), history.get("env_passed", {}) or {}
    if not runs or not series:
        return ""
    top = max([p["passed"] for v in series.values() for p in v if p] + [1])
    width, height, pad = max(320, 80 * len(runs)), 220, 40
    step = (width - 2 * pad) / max(len(runs) - 1, 1)

    def xy(i: int, n: int) -> str:
        return f"{pad + i * step:.1f},{height - pad - (height - 2 * pad) * n / top:.1f}"

    lines, legend = [], []
    for k, (name, points) in enumerate(sorted(series.items())):
        colour = PALETTE[k % len(PALETTE)]
        pts = " ".join(xy(i, p["passed"]) for i, p in enumerate(points) if p)
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}">'
                     f"<title>{esc(name)}</title></polyline>")
        lines += [f'<circle cx="{xy(i, p["passed"]).split(",")[0]}" '
                  f'cy="{xy(i, p["passed"]).split(",")[1]}" r="3" fill="{colour}"><title>'
                  f'{esc(name)} @ {esc(runs[i].get("run_id"))}: {p["passed"]}/{p["attempted"]}'
                  "</title></circle>" for i, p in enumerate(points) if p]
        legend.append(f'<span class="key"><span class="sw" style="background:{colour}"></span>'
                      f"{esc(name)}</span>")
    labels = "".join(f'<text x="{pad + i * step:.1f}" y="{height - pad + 16}" '
                     f'text-anchor="middle">{esc(r.get("run_id"))}</text>'
                     for i, r in enumerate(runs))
    axis = (f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
            f'stroke="#888"/><text x="4" y="{pad - 8}">{top} passed</text>'
            f'<text x="4" y="{height - pad}">0</text>')
    return (f'<svg data-testid="history-chart" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="passed cases per env/mode over runs">{axis}{labels}{"".join(lines)}'
            f'</svg><div class="chart-legend">{"".join(legend)}</div>')


def _history(summary: dict[str, Any]) -> str:
    history = summary.get("history")
    if not history or not history.get("runs"):
        return ""
    runs = history["runs"]
    head = "".join(f"<li>{esc(r.get('run_id'))} — {esc(r.get('started_at'))} — "
                   f"{esc(r.get('git_commit'))}</li>" for r in runs)
    rows = "".join(f'<tr><td><a href="#open=doc:{esc(key)}">{esc(key)}</a></td>'
                   f"<td>{_strip(levels, runs)}</td></tr>"
                   for key, levels in sorted((history.get("cells") or {}).items()))
    return (f'<section id="history" data-testid="history"><h2>History ({len(runs)} runs)</h2>'
            f'<ol class="runs">{head}</ol><table class="plain"><thead><tr><th>Cell</th>'
            f"<th>Level per run (oldest first)</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<h3>Passed cases per environment / mode</h3>{_chart(history)}</section>")


def _asset(name: str) -> str:
    """A file of the page (``harness/report/page/``), shipped in the package."""
    return resources.files(__package__).joinpath(PAGE_DIR).joinpath(name).read_text("utf-8")


def _inline(text: str, element: str) -> str:
    """An asset's text inlined in a ``<style>`` / ``<script>`` element it cannot close."""
    if f"</{element}" in text.lower():
        raise ValueError(f"{PAGE_DIR}: an asset contains </{element}")
    return text


def render_html(summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The whole page for one run (``summary`` from ``summarize``, optionally with
    ``changes`` and ``history``; ``records`` the run's results): ``page.html`` filled
    with the static sections, the page's CSS and script and the embedded data."""
    run_id = (summary.get("run", {}) or {}).get("run_id") or "?"
    data = matrix_data(records, summary)
    top = "".join((_banner(summary, records), _legend(), _documents_tables(summary),
                   _changes(summary), _infrastructure(summary)))
    bottom = _history(summary) + _metadata(summary)
    nav = ('<nav><a href="#documents">Documents\' table</a> · <a href="#changes">Changes</a>'
           ' · <a href="#infrastructure">Infrastructure</a> · <a href="#matrix">Full matrix</a>'
           ' · <a href="#history">History</a> · <a href="#run">Run &amp; environments</a></nav>')
    script = _asset("page.js").replace(
        "__INFRA__", dumps({o: 1 for o in INFRA_OUTCOMES}, sort_keys=True,
                           separators=(",", ":")))
    return Template(_asset("page.html")).substitute(
        run_id=esc(run_id), css=_inline(_asset("page.css"), "style"), nav=nav, top=top,
        bottom=bottom, data=embed_json(data), script=_inline(script, "script"))
