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
- ``g:<format>/<producer release>/<consumer release>`` — a release grid's square;
- ``case:<case_id>`` — one case.

Every tally (passed, attempted, infrastructure, each outcome's count) is computed here once
(summary.py's rule, ``summary._cell``; a documents' cell's and a grid square's are
summary.json's own) and the script only shows and filters them.  The data stays compact
for ~30,000 cases: case ids front-coded, repeated texts and producers in a string table,
each cell's cases as runs of indices (``runs``).
"""
from __future__ import annotations

import html
from collections import Counter, defaultdict
from importlib import resources
from string import Template
from typing import Any, Iterable

from ..jsonio import dumps
from ..runtime.cases import COLUMN_OF_MODE, COLUMN_TITLES, OPERATIONS
from ..runtime.records import HARNESS_ERROR, INFRA_OUTCOMES, SKIPPED
from .markdown import FORMAT_TITLES, format_rank, incomplete_banner, incomplete_text
from .summary import LEVELS, OPERATION_TITLES, _cell, release_of

PAGE_DIR = "page"  # the page's template, CSS and script, next to this module
HEALTH = ("environment",)  # the health checks' rows come after every format

MESSAGE_CHARS = 500
TRACEBACK_HEAD, TRACEBACK_TAIL, LINE_CHARS = 3, 5, 300
# embedded texts above this many characters: tracebacks are kept only for the first case of
# each distinct error (type + first message line) and messages are cut to SHORT_MESSAGE_CHARS
# (and only while distinct errors x TRACEBACK_CHARS_EACH stays within the budget)
TEXT_BUDGET, SHORT_MESSAGE_CHARS, TRACEBACK_CHARS_EACH = 1_500_000, 200, 1_000
REPRO_PREFIX = "nox -s matrix -- --case "
CONDITIONS_SHOWN = 5  # a documents' cell's first failure conditions; the rest behind a click
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
    """One case, compact: short keys, long texts (and the producer) in the string table.

    ``seen`` (the page is over its text budget): the distinct errors already given a
    traceback; later cases with the same error get none and a shorter message."""
    row: dict[str, Any] = {"id": str(rec.get("case_id")), "o": rec.get("outcome")}
    producer = rec.get("producer_env")
    if producer and rec.get("operation") not in ("create", "health"):
        row["p"] = strings.add(f"{producer}/{rec.get('producer_mode')}")
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


def _utf16(text: str) -> int:
    """``text``'s length as JavaScript counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _shared(a: str, b: str) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # a binary search on slices: C-speed comparisons, no per-character loop
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _front_code(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Case ids (sorted) as the suffix after the prefix shared with the previous id
    (``k``: its length in UTF-16 units, as the script slices; omitted when 0)."""
    previous = ""
    for row in cases:
        case_id = row["id"]
        shared = _shared(previous, case_id)
        if shared:
            row["k"], row["id"] = _utf16(case_id[:shared]), case_id[shared:]
        previous = case_id
    return cases


def _cases(records: list[dict[str, Any]]) -> tuple[_Strings, list[dict[str, Any]]]:
    """The embedded cases; over TEXT_BUDGET, again with repeated errors' texts cut."""
    strings = _Strings()
    cases = [_case_row(rec, strings) for rec in records]
    if sum(len(s) for s in strings.items) > TEXT_BUDGET:
        strings, seen = _Strings(), set[tuple]()
        cases = [_case_row(rec, strings, seen) for rec in records]
    return strings, _front_code(cases)


def runs(indices: Iterable[int]) -> list[int]:
    """Ascending case indices, compact: ``n, -k`` stands for ``n, n+1, …, n+k``."""
    out: list[int] = []
    start = last = -2
    for i in indices:
        if i == last + 1:
            last = i
            continue
        if last > start:
            out.append(start - last)
        out.append(i)
        start = last = i
    if last > start:
        out.append(start - last)
    return out


def expand_runs(encoded: list[int]) -> list[int]:
    """``runs`` undone (what the page's script does)."""
    out: list[int] = []
    for n in encoded:
        if n < 0:
            out.extend(range(out[-1] + 1, out[-1] - n + 1))
        else:
            out.append(n)
    return out


def _row_api(rec: dict[str, Any]) -> str:
    api = str(rec.get("api"))
    return f"{api} ({rec.get('model')})" if rec.get("model_kind") == "user" else api


def _env_key(rec: dict[str, Any]) -> str:
    return f"{rec.get('env_id')}/{rec.get('mode')}"


def _op_rank(op: str) -> int:
    order = list(OPERATIONS) + ["download", "health"]
    return order.index(op) if op in order else len(order)


def _tally(records: list[dict[str, Any]], indices: list[int]) -> dict[str, Any]:
    """A cell's counts, computed once here by summary.py's rule (the page only shows them):
    ``p`` passed, ``a`` attempted, ``i`` infrastructure, ``s`` skipped, ``o`` every
    outcome's count, ``c`` its cases (``runs``)."""
    outcomes = dict(sorted(Counter(str(records[n].get("outcome")) for n in indices).items()))
    cell = _cell(outcomes)
    return {"p": cell["passed"], "a": cell["attempted"], "i": cell["infra"],
            "s": outcomes.get(SKIPPED, 0), "o": outcomes, "c": runs(indices)}


def _is_documented(rec: dict[str, Any]) -> bool:
    return rec.get("model_kind") != "user" and rec.get("operation") in OPERATIONS


def _column_of(rec: dict[str, Any]) -> str:
    return str(COLUMN_OF_MODE.get(str(rec.get("mode")), rec.get("column")))


def _doc_data(cell: dict[str, Any] | None, records: list[dict[str, Any]],
              indices: list[int]) -> dict[str, Any]:
    """A documents' cell: the counts summary.py gave it (the documents' calls where the
    prerequisites hold) and ``all`` (every variant and env); ``c``: every case of the cell
    (path and by-handle), ``o`` their outcomes."""
    data = _tally(records, indices)
    if cell is None:  # a cell summary.py did not make: the cases' own counts
        return data
    data.update(p=cell.get("passed", data["p"]), a=cell.get("attempted", data["a"]),
                i=cell.get("infra", data["i"]), lv=cell.get("observed", "unknown"),
                calls=list(cell.get("calls") or []))
    data.pop("s")
    whole = cell.get("all_calls")
    if whole:
        data["all"] = {"p": whole.get("passed", 0), "a": whole.get("attempted", 0),
                       "i": whole.get("infra", 0)}
    return data


def _grid_data(summary: dict[str, Any], records: list[dict[str, Any]], strings: _Strings
               ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The release grids (``summary["grid"]``): per format its releases and primary calls,
    and per producer x consumer release cell (key ``g:<format>/<producer>/<consumer>``)
    summary.py's counts, its first error (``e``, in the string table) and its cases:
    first the ``k`` it counted (the format's primary load call of the consumer's column),
    then the other cases of that format between those releases."""
    grids = [g for g in summary.get("grid") or [] if g.get("format")]
    if not grids:
        return [], {}
    envs = summary.get("envs") or {}
    release = {e: release_of(envs, e) for e in {str(r.get(k)) for r in records
                                                 for k in ("env_id", "producer_env")}}
    pairs: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for n, rec in enumerate(records):
        if rec.get("producer_env") and rec.get("operation") not in ("create", "health"):
            pairs[(str(rec.get("format")), release[str(rec.get("producer_env"))],
                   release[str(rec.get("env_id"))])].append(n)
    maps, cells = [], {}
    for g in grids:
        fmt, primary = str(g["format"]), g.get("api") or {}
        maps.append({"format": fmt, "title": g.get("title") or FORMAT_TITLES.get(fmt, fmt),
                     "api": primary, "releases": [str(r) for r in g.get("releases") or []]})
        for cell in g.get("cells") or []:
            producer, consumer = str(cell.get("producer")), str(cell.get("consumer"))
            found = pairs.get((fmt, producer, consumer), [])
            counted = [n for n in found if records[n].get("operation") == "load"
                       and _is_documented(records[n]) and records[n].get("via", "path") == "path"
                       and records[n].get("api") == primary.get(_column_of(records[n]))]
            chosen = set(counted)
            data = _tally(records, found)
            data.update(p=cell.get("passed", 0), a=cell.get("attempted", 0),
                        i=cell.get("infra", 0), lv=cell.get("observed", "unknown"),
                        k=len(counted),
                        c=runs(counted) + runs(n for n in found if n not in chosen))
            data.pop("s")
            error = strings.add(cell.get("error"))
            if error is not None:
                data["e"] = error
            cells[f"g:{fmt}/{producer}/{consumer}"] = data
    return maps, cells


def matrix_data(records: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """Everything the script renders: cases, matrix rows/columns/cells, documents' cells,
    release grids; every tally computed here, once."""
    ordered_records = sorted(records, key=lambda r: str(r.get("case_id")))
    strings, cases = _cases(ordered_records)
    members: dict[str, list[int]] = defaultdict(list)
    documents: dict[str, list[int]] = defaultdict(list)
    rows: dict[tuple[str, str, str], bool] = {}
    cols: dict[str, dict[str, Any]] = {}
    for n, rec in enumerate(ordered_records):
        row = (str(rec.get("format")), str(rec.get("operation")), _row_api(rec))
        rows[row] = True
        cols.setdefault(_env_key(rec), rec)
        members[f"m:{'/'.join(row)}@{_env_key(rec)}"].append(n)
        if _is_documented(rec):
            documents[f"doc:{rec.get('format')}/{rec.get('operation')}/{_column_of(rec)}"
                      ].append(n)
    cells = {key: _tally(ordered_records, found) for key, found in members.items()}
    doc = {}
    for cell in summary.get("cells", []):  # every documents' cell has a key, even with no case
        doc[doc_key(cell)] = _doc_data(cell, ordered_records, documents.pop(doc_key(cell), []))
    doc.update({key: _doc_data(None, ordered_records, found)
                for key, found in documents.items()})
    grid, gcells = _grid_data(summary, ordered_records, strings)
    ordered = sorted(rows, key=lambda r: (format_rank(r[0], HEALTH), _op_rank(r[1]), r[2]))
    return {"cases": cases, "strings": strings.items, "cells": cells, "doc": doc,
            "grid": grid, "gcells": gcells,
            "rows": [{"format": f, "operation": o, "api": a} for f, o, a in ordered],
            "cols": [_column_header(k, rec, summary) for k, rec in sorted(cols.items())],
            "tolerance": _tolerance(summary), "infra": sorted(INFRA_OUTCOMES)}


def _column_header(key: str, rec: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """A consumer env/mode column: TF, hub, Keras flavour, mode, device, backend."""
    env = summary.get("envs", {}).get(rec.get("env_id"), {}) or {}
    versions = env.get("versions", {}) or {}
    tf = (versions.get("tensorflow") or versions.get("tensorflow-cpu")
          or versions.get("tensorflow-gpu") or rec.get("tensorflow"))
    return {"key": key, "env": rec.get("env_id"), "mode": rec.get("mode"), "tf": tf,
            "release": env.get("release"),
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
    parts.append(_findings(cell))
    hkey = f"{cell['format']}/{cell['operation']}/{cell['column']}"
    if history.get("cells", {}).get(hkey):
        parts.append(_strip(history["cells"][hkey], history.get("runs", [])))
    key = doc_key(cell)
    return (f'<td class="doc v-{esc(verdict)}" data-key="{esc(key)}" data-testid="doc-cell" '
            f'tabindex="0" role="button" title="Show the cases">{"".join(parts)}</td>')


def _case_link(case_id: Any, text: str = "e.g.") -> str:
    """A link that opens one case (inside a clickable cell too: it has its own key)."""
    if not case_id:
        return ""
    key = f"case:{case_id}"
    return (f' <a href="#open={esc(key)}" data-key="{esc(key)}" class="case-link" '
            f'title="{esc(case_id)}">{esc(text)}</a>')


def _condition_text(c: dict[str, Any]) -> str:
    """A condition's own text (it carries an inexact one's counts), else one made from
    its fields."""
    text = c.get("text") or " and ".join(
        f"{p.get('dim')} {p.get('op')} {p.get('value')}" for p in c.get("condition") or []
    ) + f" → {c.get('failure') or c.get('error_type') or '?'}"
    if not c.get("exact", True) and "covers" not in text:
        text += (f" (covers {c.get('matched', '?')} of {c.get('cases', '?')}, "
                 f"also {c.get('over', 0)} others)")
    return str(text)


def _findings(cell: dict[str, Any]) -> str:
    """A documents' cell's version ranges, failure conditions and environment breakers
    (not counted in its level), and its counts over every variant (summary.json's
    ``ranges``, ``conditions``, ``breakers``, ``all_calls``; nothing when absent)."""
    out = []
    for r in cell.get("ranges") or []:
        status = r.get("status") if r.get("status") in LEVELS else "unknown"
        title = f' title="{esc(r["error"])}"' if r.get("error") else ""
        out.append(f'<div class="range r-{status}" data-testid="range"{title}>'
                   f'<span class="sq l-{status}"></span> {esc(r.get("text"))}</div>')
    conditions = []
    for c in cell.get("conditions") or []:
        exact = "exact" if c.get("exact", True) else "inexact"
        counts = (f"{c.get('cases', '?')} cases; matched {c.get('matched', '?')}, "
                  f"missed {c.get('missed', '?')}, over {c.get('over', '?')}")
        conditions.append(f'<div class="condition {exact}" data-testid="condition" '
                          f'title="{esc(counts)}">{esc(_condition_text(c))}'
                          f'{_case_link(c.get("example"))}</div>')
    out += conditions[:CONDITIONS_SHOWN]
    if conditions[CONDITIONS_SHOWN:]:
        out.append(f'<details class="more"><summary>{len(conditions) - CONDITIONS_SHOWN} more '
                   f"conditions</summary>{''.join(conditions[CONDITIONS_SHOWN:])}</details>")
    for b in cell.get("breakers") or []:
        text = b.get("text") or f"{b.get('error_type') or ''}: {b.get('message') or ''}"
        cases = f" ({b['cases']} cases)" if b.get("cases") else ""
        out.append(f'<div class="breaker" data-testid="breaker" title="an environment that '
                   "breaks the documents' prerequisites: not counted in the level\">"
                   f"<b>environment breaker</b> (not counted): {esc(text)}{esc(cases)}"
                   f'{_case_link(b.get("example") or b.get("case_id"))}</div>')
    whole = cell.get("all_calls")
    if whole:
        out.append(f'<div class="all-calls" data-testid="all-calls">all variants: '
                   f"{esc(_count(whole))}</div>")
    return "".join(out)


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


def _marked_up(text: Any) -> str:
    """docs_table's text: lines split at ``<br>``, ```code``` spans; all else escaped."""
    lines = []
    for line in str(text or "").split("<br>"):
        parts = line.split("`")
        lines.append("".join(f"<code>{esc(p)}</code>" if i % 2 else esc(p)
                             for i, p in enumerate(parts)))
    return "<br>".join(lines)


def _notes(numbers: Iterable[Any]) -> str:
    return "".join(f'<sup><a href="#fn-{esc(n)}" class="fn">[{esc(n)}]</a></sup>'
                   for n in numbers or [])


def _corrected(summary: dict[str, Any]) -> str:
    """The documents' table rewritten with what was observed (``summary["docs_table"]``,
    as docs-table.md): one table per format, its footnotes below."""
    table = summary.get("docs_table") or {}
    if not table.get("formats"):
        return ""
    titles = [c.get("title") if isinstance(c, dict) else c for c in table.get("columns") or []]
    out = ['<section id="corrected" data-testid="corrected"><h2>Corrected documents\' table'
           "</h2><p>The documents' table as this run observed it: each cell what the "
           "documents' own calls did, with the TensorFlow releases where they pass; the "
           "footnotes give the exact errors and when they occur.</p>"]
    for fmt in table["formats"]:
        keys: list[str] = []
        for row in fmt.get("rows") or []:
            keys += [str(c.get("column")) for c in row.get("cells") or []
                     if str(c.get("column")) not in keys]
        heads = [titles[i] if i < len(titles) else COLUMN_TITLES.get(k, k)
                 for i, k in enumerate(keys)]
        if fmt.get("header") and heads:  # the format's own first column header
            heads[0] = fmt["header"]
        body = []
        for row in fmt.get("rows") or []:
            by_col = {str(c.get("column")): c for c in row.get("cells") or []}
            tds = "".join(f'<td data-column="{esc(k)}">{_marked_up(by_col[k].get("text"))}'
                          f'{_notes(by_col[k].get("notes"))}</td>' if k in by_col else "<td></td>"
                          for k in keys)
            body.append(f'<tr><th>{esc(row.get("title") or row.get("operation"))}</th>{tds}'
                        "</tr>")
        name = fmt.get("heading") or fmt.get("title") or fmt.get("format")
        out.append(f'<h3>{esc(name)} (<code>{esc(fmt.get("format"))}</code>)</h3>'
                   f'<table class="doc-table corrected" data-testid="corrected-table" '
                   f'data-format="{esc(fmt.get("format"))}"><thead><tr><th>Operation</th>'
                   + "".join(f"<th>{_marked_up(h)}</th>" for h in heads)
                   + f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
    notes = "".join(f'<li id="fn-{esc(f.get("n"))}" value="{esc(f.get("n"))}">'
                    f'{_marked_up(f.get("text"))}</li>' for f in table.get("footnotes") or []
                    if str(f.get("n")).isdigit())
    if notes:
        out.append(f'<ol class="footnotes" data-testid="footnotes">{notes}</ol>')
    return "".join(out) + "</section>"


def _grid(summary: dict[str, Any]) -> str:
    """The producer x consumer release grids' section (the script draws them from the
    data); nothing when the summary has none."""
    if not any(g.get("cells") for g in summary.get("grid") or []):
        return ""
    legend = "".join(f'<span class="chip"><span class="sq {c}"></span> {esc(t)}</span>'
                     for c, t in (("g-all", "all passed"), ("g-some", "some passed"),
                                  ("g-none", "none passed"), ("g-na", "none attempted"),
                                  ("g-empty", "not run")))
    return ('<section id="grid" data-testid="grid"><h2>Release grid: which TF release loads '
            "the models made by which</h2><p>Per format, the primary load call of the "
            "consumer's column: rows are the TF release that made the model, columns the one "
            "that loads it (every mode and flavour of a release together). Hover a square for "
            f"its counts and first error; click it for its cases.</p><div class=\"legend\">"
            f'{legend}</div><div id="grid-maps" class="gmaps"></div></section>')


SECTIONS = (("documents", "Documents' table"), ("corrected", "Corrected documents' table"),
            ("grid", "Release grid"), ("changes", "Changes"),
            ("infrastructure", "Infrastructure"), ("matrix", "Full matrix"),
            ("history", "History"), ("run", "Run & environments"))


def _nav(html_text: str) -> str:
    """Links to the page's sections that are there."""
    links = [f'<a href="#{sid}">{esc(title)}</a>' for sid, title in SECTIONS
             if sid == "matrix" or f'<section id="{sid}"' in html_text]
    return "<nav>" + " · ".join(links) + "</nav>"


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
        return (f'<section id="changes" data-testid="changes"><h2>Changes</h2><p>Nothing to '
                f'compare with: {esc(summary["no_baseline"])}.</p></section>'
                if summary.get("no_baseline") else "")
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
    ``changes``, ``history`` and ``docs_table``; ``records`` the run's results):
    ``page.html`` filled with the static sections, the page's CSS and script and the
    embedded data."""
    run_id = (summary.get("run", {}) or {}).get("run_id") or "?"
    data = matrix_data(records, summary)
    top = "".join((_banner(summary, records), _legend(), _documents_tables(summary),
                   _corrected(summary), _grid(summary), _changes(summary),
                   _infrastructure(summary)))
    bottom = _history(summary) + _metadata(summary)
    return Template(_asset("page.html")).substitute(
        run_id=esc(run_id), css=_inline(_asset("page.css"), "style"),
        nav=_nav(top + bottom), top=top, bottom=bottom, data=embed_json(data),
        script=_inline(_asset("page.js"), "script"))
