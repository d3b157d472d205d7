"""The Markdown report: the documents' table, documented vs observed, and per env."""
from __future__ import annotations

import re
from typing import Any

from ..runtime.cases import COLUMN_TITLES
from .summary import OPERATION_TITLES

FORMAT_TITLES = {"tf1_hub": "TF1 Hub format", "saved_model": "TF2 SavedModel",
                 "keras_saved_model": "Keras SavedModel"}
MARK = {"supported": "✅", "partial": "◐", "unsupported": "❌", "unknown": "❔"}
VERDICT_TEXT = {"as_documented": "as documented", "regression": "**regression**",
                "undocumented_support": "**undocumented support**",
                "undocumented": "undocumented", "unknown": "unknown"}


def format_rank(fmt: str, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """Formats in the documents' order (then ``extra``, then any other by name)."""
    order = list(FORMAT_TITLES) + list(extra)
    return (order.index(fmt) if fmt in order else len(order), fmt)


def cell_rank(fmt: str, op: str, col: str) -> tuple:
    """A documents' cell in the documents' order: format, operation, column."""
    ops = list(OPERATION_TITLES)
    return (format_rank(fmt), ops.index(op) if op in ops else len(ops), op, col)


def _esc(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _count_text(cell: dict[str, Any]) -> str:
    text = f"{cell['passed']}/{cell['attempted']}"
    if cell.get("infra"):
        text += f" (+{cell['infra']} infra)"
    if cell.get("incomplete"):
        text += f" {incomplete_text(cell)}"
    return text


def incomplete_text(cell: dict[str, Any]) -> str:
    """What an incomplete cell shows next to its level."""
    return f"incomplete ({cell.get('missing', 0)} missing)"


def stage_list(stages: list[dict[str, Any]]) -> str:
    """The unfinished stages of a run, one phrase: ``consume.tf115.tf1 (56 of 66 missing)``."""
    return ", ".join(f"{s['prefix']} ({s['missing']} of {s['planned']} missing"
                     + ("; never started" if s.get("state") == "not_started" else "") + ")"
                     for s in stages)


def incomplete_banner(run: dict[str, Any]) -> str | None:
    """The one-paragraph warning of an unfinished run (None when it is complete)."""
    if run.get("complete", True):
        return None
    by = run.get("interrupted_by")
    why = (f" It was interrupted ({by})." if by else " It was interrupted.") \
        if run.get("interrupted") else ""
    stages = stage_list(run.get("unfinished_stages") or [])
    return (f"This run is incomplete: {run.get('missing_cases', 0)} planned cases have no "
            f"record.{why}" + (f" Unfinished stages: {stages}." if stages else "")
            + " Cells marked \"incomplete\" are not final: their verdicts may change.")


def render(summary: dict[str, Any]) -> str:
    run, totals = summary["run"], summary["totals"]
    lines = [f"# TF Hub compatibility — run {run['run_id']}", ""]
    banner = incomplete_banner(run)
    if banner:
        lines += [f"> **⚠ {_esc(banner)}**", ""]
    outcomes = ", ".join(f"{v} {k}" for k, v in sorted(totals["outcomes"].items()))
    lines += [f"{totals['cases']} cases ({outcomes or 'none'}) in "
              f"{len(summary['envs'])} environments; commit {run.get('git_commit') or '?'}; "
              f"{run.get('duration_s', 0):.0f} s.", ""]
    if summary.get("changes"):
        lines += changes_markdown(summary["changes"])
    elif summary.get("no_baseline"):
        lines += ["## Changes", "", f"Nothing to compare with: {_esc(summary['no_baseline'])}.",
                  ""]
    lines += _documents_table(summary["cells"])
    lines += _differences(summary["cells"])
    lines += grid_markdown(summary.get("grid") or [])
    lines += _env_table(summary)
    lines += _health_table(summary.get("health", []))
    lines += _downloads_table(summary.get("downloads", []))
    lines += _user_models(summary.get("user_models", []))
    lines += infrastructure_markdown(summary.get("infrastructure") or {})
    if summary.get("history"):
        lines += history_markdown(summary["history"])
    return "\n".join(lines).rstrip() + "\n"


OUTCOME_MARK = {"passed": "✅", "failed": "✗", "error": "❌", "skipped": "➖"}


def _mark(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return ""
    return OUTCOME_MARK.get(cell["outcome"], f"⚠ {cell['outcome']}")


def _health_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    checks = sorted({c for r in rows for c in r["checks"]})
    lines = ["## Environment health (does each documented API exist and import?)", "",
             "| env / mode | " + " | ".join(f"`{c}`" for c in checks) + " |",
             "|---|" + "---|" * len(checks)]
    failures = []
    for r in rows:
        lines.append(f"| {r['env_id']} / {r['mode']} | " + " | ".join(
            _mark(r["checks"].get(c)) for c in checks) + " |")
        failures += [(r, c, v) for c, v in sorted(r["checks"].items())
                     if v["outcome"] != "passed"]
    lines.append("")
    for r, check, v in failures:
        lines.append(f"- {r['env_id']} / {r['mode']} `{check}`: {v['outcome']} "
                     f"`{_esc(v['error_type'])}`: {_esc(v['message'])[:200]}")
    return lines + ([""] if failures else [])


def _downloads_table(rows: list[dict[str, Any]]) -> list[str]:
    """The hosting protocol per env x mode: cache, load formats, redirects, faults."""
    if not rows:
        return []
    checks = sorted({c for r in rows for c in r["checks"]}, key=_check_rank)
    lines = ["## By handle: download, cache, redirects and faults (all formats)", "",
             "| env / mode | " + " | ".join(f"`{c}`" for c in checks) + " |",
             "|---|" + "---|" * len(checks)]
    problems: dict[tuple, list[str]] = {}
    reports: dict[tuple, int] = {}
    for r in rows:
        cells = [r["checks"].get(c) for c in checks]
        lines.append(f"| {r['env_id']} / {r['mode']} | " + " | ".join(
            "" if c is None else f"{MARK[c['observed']]} {_count_text(c)}" for c in cells)
            + " |")
        for check, c in r["checks"].items():
            for ex in c["examples"]:
                key = (check, ex["outcome"], ex["error_type"], ex["message"][:200])
                problems.setdefault(key, []).append(f"{r['env_id']}/{r['mode']}")
            for rep in c.get("library_reports", []):
                reports[(check, rep["message"][:200])] = \
                    reports.get((check, rep["message"][:200]), 0) + rep["cases"]
    lines.append("")
    for (check, outcome, etype, message), envs in sorted(
            problems.items(), key=lambda kv: _check_rank(kv[0][0])):
        lines.append(f"- `{check}` in {', '.join(envs)}: {outcome} `{_esc(etype)}`: "
                     f"{_esc(message)}")
    if reports:
        lines += ["", "What the library reported on the faulty first attempt "
                      "(the retry then loaded the model):", ""]
        for (check, message), n in sorted(reports.items(), key=lambda kv: _check_rank(kv[0][0])):
            lines.append(f"- `{check}` ({n}×): {_esc(message)}")
    return lines + [""]


def _check_rank(check: str) -> tuple[int, str]:
    order = ("cache", "TFHUB_MODEL_LOAD_FORMAT", "redirect", "fault", "two-processes")
    return (next((i for i, p in enumerate(order) if check.startswith(p)), len(order)), check)


def _user_models(models: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for m in models:
        envs = sorted({e for row in m["rows"] for e in row["envs"]})
        lines += [f"## Your model `{m['model']}` ({FORMAT_TITLES.get(m['format'], m['format'])})",
                  "", f"Outputs compared with the reference run in "
                      f"{m['reference'] or '(no environment could import it)'}.", "",
                  "| operation · API | " + " | ".join(envs) + " |",
                  "|---|" + "---|" * len(envs)]
        for row in m["rows"]:
            op = "import" if row["operation"] == "create" else row["operation"]
            lines.append(f"| {op} · `{row['api']}` | " + " | ".join(
                _mark(row["envs"].get(e)) for e in envs) + " |")
        lines.append("")
        for row in m["rows"]:
            for env, v in sorted(row["envs"].items()):
                if v["outcome"] != "passed":
                    lines.append(f"- {env} `{row['api']}`: {v['outcome']} "
                                 f"`{_esc(v['error_type'])}`: {_esc(v['message'])[:200]}")
        lines.append("")
    return lines


def _documents_table(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["## The documents' table: documented vs observed", "",
             "Cell: documented claim → observed level (passed/attempted cases) → verdict; "
             "\"by handle\": the documents' calls on the model's URL, downloaded from the "
             "harness's hub server.", ""]
    by_format: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        by_format.setdefault(cell["format"], []).append(cell)
    for fmt, fcells in sorted(by_format.items(), key=lambda kv: format_rank(kv[0])):
        titles = sorted({(c["column"], c["column_title"]) for c in fcells})
        lines += [f"### {FORMAT_TITLES.get(fmt, fmt)} (`{fmt}`)", "",
                  "| Operation | " + " | ".join(t for _, t in titles) + " |",
                  "|---|" + "---|" * len(titles)]
        for op, op_title in OPERATION_TITLES.items():
            row = [op_title]
            for col, _ in titles:
                c = next(x for x in fcells if x["operation"] == op and x["column"] == col)
                documented = (c["documented"] or "no claim").replace("_", " ")
                verdict = ("incomplete: no verdict yet" if c.get("incomplete")
                           else VERDICT_TEXT[c["verdict"]])
                text = (f"documented: {documented}<br>observed: {MARK[c['observed']]} "
                        f"{c['observed']} {_count_text(c)}<br>{verdict}")
                handle = c.get("by_handle")
                if handle and handle["attempted"] + handle["infra"] + handle.get("missing", 0):
                    text += (f"<br>by handle: {MARK[handle['observed']]} {handle['observed']} "
                             f"{_count_text(handle)}")
                text += "".join(f"<br>{_esc(r['text'])}" for r in c.get("ranges") or [])
                text += "".join(f"<br>{_esc(k['text'])}" for k in c.get("conditions") or [])
                text += "".join(f"<br>breaker (prerequisite failed, not counted): {b['cases']} × "
                                f"{_esc(_first(b.get('error_type')) + ': ' + _first(b['message']))}"
                                for b in c.get("breakers") or [])
                every = c.get("all_calls")
                if every and (every["passed"], every["attempted"]) != (c["passed"],
                                                                      c["attempted"]):
                    text += f"<br>all variants: {_count_text(every)}"
                row.append(text)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return lines


GRID_MARKS = {"supported": "✅", "unsupported": "❌", "partial": "◐", "unknown": "·"}


def grid_markdown(grids: list[dict[str, Any]]) -> list[str]:
    """Per format: producer release (rows) x consumer release (columns), the primary load
    call of the consumer's column; a cell is ✅ all passed, ❌ none, ◐ p/a, · nothing ran."""
    if not grids:
        return []
    lines = ["## Producer × consumer releases", "",
             "Which consumer releases load the models made by which producer releases (rows: "
             "producer, columns: consumer; every mode and flavour of a release together); "
             "✅ all passed, ❌ none, ◐ passed/attempted, · no verdict (infrastructure).", ""]
    for g in grids:
        cells = {(c["producer"], c["consumer"]): c for c in g["cells"]}
        consumers = [r for r in g["releases"] if any(k[1] == r for k in cells)]
        producers = [r for r in g["releases"] if any(k[0] == r for k in cells)]
        calls = ", ".join(f"{col}: `{api}`" for col, api in sorted(g["api"].items()))
        lines += [f"### {g['title']} (`{g['format']}`; {calls})", "",
                  "| producer \\ consumer | " + " | ".join(consumers) + " |",
                  "|---|" + "---|" * len(consumers)]
        for p in producers:
            row = []
            for c in consumers:
                cell = cells.get((p, c))
                if cell is None:
                    row.append("")
                elif cell["observed"] == "partial":
                    row.append(f"◐ {cell['passed']}/{cell['attempted']}")
                else:
                    row.append(GRID_MARKS[cell["observed"]])
            lines.append(f"| {p} | " + " | ".join(row) + " |")
        lines.append("")
    return lines


def _differences(cells: list[dict[str, Any]]) -> list[str]:
    diff = [c for c in cells if c["verdict"] in ("regression", "undocumented_support")]
    if not diff:
        return []
    lines = ["## Where the documents differ from what runs", ""]
    for c in diff:
        lines.append(f"- **{FORMAT_TITLES.get(c['format'], c['format'])} · "
                     f"{OPERATION_TITLES[c['operation']]} · {c['column_title']}**: documented "
                     f"{(c['documented'] or '').replace('_', ' ')}, observed {c['observed']} "
                     f"{_count_text(c)}" + (" — not final" if c.get("incomplete") else ""))
        for ex in c["examples"]:
            lines.append(f"  - {ex.get('cases', 1)}× {ex['outcome']} "
                         f"`{_esc(ex['error_type'])}`: {_esc(ex['message'])[:240]} — e.g. "
                         f"`{ex['case_id']}`")
    lines.append("")
    return lines


def _env_table(summary: dict[str, Any]) -> list[str]:
    cells = summary["env_cells"]
    if not cells:
        return []
    keys = sorted({(c["format"], c["operation"]) for c in cells},
                  key=lambda k: (format_rank(k[0]), list(OPERATION_TITLES).index(k[1])))
    rows = sorted({(c["env_id"], c["mode"]) for c in cells})
    index = {(c["env_id"], c["mode"], c["format"], c["operation"]): c for c in cells}
    lines = ["## Per environment (consumer env/mode × format · operation)", "",
             "| env / mode | TF | hub | Keras | " +
             " | ".join(f"{f} · {o}" for f, o in keys) + " |",
             "|---|---|---|---|" + "---|" * len(keys)]
    for env_id, mode in rows:
        info = summary["envs"].get(env_id, {}).get("versions", {})
        row = [f"{env_id} / {mode}", info.get("tensorflow") or info.get("tensorflow-cpu") or "?",
               info.get("tensorflow-hub") or "?", _esc(summary["envs"].get(env_id, {})
                                                       .get("keras") or "?")]
        for f, o in keys:
            c = index.get((env_id, mode, f, o))
            row.append("" if c is None else f"{MARK[c['observed']]} {_count_text(c)}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


INFRA_SHOWN = 20  # distinct crashed / timeout / env_error errors listed in compat.md


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def infrastructure_markdown(infra: dict[str, Any]) -> list[str]:
    """Cases that did not run to a verdict; every harness_error with its full traceback."""
    counts = infra.get("counts") or {}
    if not counts:
        return []
    lines = ["## Infrastructure (not results: never counted as supported or unsupported)", "",
             ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) + ".", ""]
    errors = infra.get("harness_errors") or []
    if errors:
        lines += ["`harness_error`: an exception raised by the harness's own code outside the "
                  "documented call under test — a harness bug to fix, not evidence about the "
                  "library.", ""]
    for e in errors:
        lines += [f"<details><summary>harness_error × {e['cases']}: "
                  f"<code>{_esc(e.get('error_type'))}</code>: "
                  f"{_esc(_first(e.get('message')))[:200]}</summary>", "",
                  "Cases: " + ", ".join(f"`{cid}`" for cid in e["case_ids"]), ""]
        for title, text in (("Message", e.get("message")), ("Traceback", e.get("traceback"))):
            body = str(text or "(none)").rstrip("\n")
            fence = _fence(body)
            lines += [f"{title}:", "", fence, body, fence, ""]
        lines += ["</details>", ""]
    other = infra.get("other") or []
    for e in other[:INFRA_SHOWN]:
        lines.append(f"- {e['cases']}× {e['outcome']} `{_esc(e.get('error_type'))}`: "
                     f"{_esc(e.get('message') or '')[:240]} — e.g. `{e['case_id']}`")
    if len(other) > INFRA_SHOWN:
        lines.append(f"- … and {len(other) - INFRA_SHOWN} more (summary.json: infrastructure)")
    return lines + ([""] if other else [])


def _first(text: Any) -> str:
    lines = [ln for ln in str(text or "").splitlines() if ln.strip()]
    return lines[0] if lines else ""


CASES_SHOWN = 20  # cases listed per group of changes (compat.md stays short)
HISTORY_SHOWN = 10  # runs shown as history columns
CASE_GROUPS = (("regressions", "**Regressions** (passed → failed/error)"),
               ("fixes", "**Fixes** (failed/error → passed)"),
               ("changed", "Other outcome changes"),
               ("new", "New cases"), ("vanished", "Cases no longer run"),
               ("missing", "Not run yet (this run is unfinished)"))


def _cell_title(fmt: str, op: str, col: str) -> str:
    return (f"{FORMAT_TITLES.get(fmt, fmt)} · {OPERATION_TITLES.get(op, op)} · "
            f"{COLUMN_TITLES.get(col, col)}")


def changes_markdown(changes: dict[str, Any]) -> list[str]:
    """Cells and cases that changed since the baseline run (case lists capped)."""
    base, n = changes["baseline"], changes["counts"]
    lines = [f"## Changes since run {base['run_id']}", "",
             f"Baseline `{_esc(base['path'])}`. Cells: {n['cell_regressions']} regressed, "
             f"{n['cell_fixes']} fixed. Cases: {n['regressions']} regressed, "
             f"{n['fixes']} fixed, {n['changed']} other changes, {n['new']} new, "
             f"{n['vanished']} no longer run."
             + (f" {n['cell_incomplete']} changed cells are incomplete (not final)."
                if n.get("cell_incomplete") else "")
             + (f" {n['missing']} not run yet (this run is unfinished)."
                if n.get("missing") else "")]
    if n["new"] or n["vanished"]:
        lines.append("The two runs did not run the same cases: cell changes can come from "
                     "that (a different matrix, --env or --mode).")
    if not base.get("case_level", True):
        lines.append("Cell level only: the baseline has no results.jsonl next to its "
                     "summary.json.")
    lines.append("")
    if changes["cells"]:
        lines += ["| cell | before | after | change |", "|---|---|---|---|"]
        for c in changes["cells"]:
            change = c["change"] if c["change"] == "changed" else f"**{c['change']}**"
            lines.append(f"| {_cell_title(c['format'], c['operation'], c['column'])} | "
                         f"{MARK.get(c['before'], '')} {c['before']} {c['before_count']} | "
                         f"{MARK.get(c['after'], '')} {c['after']} {c['after_count']} | "
                         f"{change} |")
        lines.append("")
    for group, title in CASE_GROUPS:
        cases = changes["cases"].get(group) or []
        if not cases:
            continue
        lines += [f"{title}: {len(cases)}", ""]
        for c in cases[:CASES_SHOWN]:
            lines.append(_case_line(group, c))
        if len(cases) > CASES_SHOWN:
            lines.append(f"- … and {len(cases) - CASES_SHOWN} more (summary.json: changes)")
        lines.append("")
    return lines


def _case_line(group: str, c: dict[str, Any]) -> str:
    if group == "new":
        return f"- `{c['case_id']}`: {c['after']}"
    if group in ("vanished", "missing"):
        return f"- `{c['case_id']}`: was {c['before']}"
    line = f"- `{c['case_id']}`: {c['before']} → {c['after']}"
    if c.get("error_type") or c.get("message"):
        line += f" `{_esc(c.get('error_type'))}`: {_esc(c.get('message') or '')[:200]}"
    return line


def _key_rank(key: str) -> tuple:
    fmt, op, col = (key.split("/", 2) + ["", ""])[:3]
    return cell_rank(fmt, op, col)


def history_markdown(history: dict[str, Any]) -> list[str]:
    """Each documents' cell's level and each env x mode's passed count over the last runs."""
    runs = history["runs"]
    if len(runs) < 2:
        return []
    shown = runs[-HISTORY_SHOWN:]
    start = len(runs) - len(shown)
    title = f"last {len(shown)} of {len(runs)} runs" if start else f"{len(runs)} runs"
    lines = [f"## History ({title}, oldest first)", "",
             "| cell | " + " | ".join(_esc(r["run_id"]) for r in shown) + " |",
             "|---|" + "---|" * len(shown)]
    for key, levels in sorted(history["cells"].items(), key=lambda kv: _key_rank(kv[0])):
        lines.append(f"| {' · '.join(key.split('/', 2))} | " + " | ".join(
            MARK.get(v, "") if v else "" for v in levels[start:]) + " |")
    if history.get("env_passed"):
        lines += ["", "| env / mode (passed/attempted) | " +
                  " | ".join(_esc(r["run_id"]) for r in shown) + " |",
                  "|---|" + "---|" * len(shown)]
        for key, values in history["env_passed"].items():
            lines.append(f"| {key} | " + " | ".join(
                f"{v['passed']}/{v['attempted']}" if v else "" for v in values[start:]) + " |")
    return lines + [""]
