"""Aggregate result records into cells with pandas (the only place pandas is used).

Levels per cell: ``supported`` (every attempted case passed), ``partial``,
``unsupported`` (none passed), ``unknown`` (nothing attempted: no data or only
infrastructure failures).  Verdicts compare with the documents' claim.
Infrastructure outcomes (crashed, timeout, env_error, harness_error) and skips never
count as attempts, so they can never turn a cell "unsupported".  A cell some of whose
planned cases have no record (an unfinished run, see ``completeness``) is marked
``incomplete`` with the number ``missing``.

pandas fills a field a record lacks with NaN: every row leaves pandas through ``_rows``,
which makes a missing value None (``null`` in summary.json, never ``NaN`` or ``"nan"``).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pandas as pd

from ..config import Matrix
from ..runtime.cases import COLUMN_OF_MODE, COLUMN_TITLES, DOWNLOAD, OPERATIONS, parse_case_id
from ..runtime.records import ERROR, FAILED, HARNESS_ERROR, INFRA_OUTCOMES, OUTCOMES, PASSED

ATTEMPTED = (PASSED, FAILED, ERROR)
LEVELS = ("supported", "partial", "unsupported", "unknown")
VERDICTS = ("as_documented", "regression", "undocumented_support", "undocumented", "unknown")
OPERATION_TITLES = {"load": "Loading / Inference", "fine_tune": "Fine-tuning",
                    "create": "Creation"}
BY_HANDLE = ("load", "fine_tune")  # the cells that also have a by-handle (URL) count


def frame(records: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=["case_id", "env_id", "mode", "column", "format",
                                   "operation", "api", "outcome"])
    df["column"] = df["mode"].map(COLUMN_OF_MODE).fillna(df.get("column"))
    return df


def _missing(value: Any) -> bool:
    """True for None and for pandas' missing values (NaN, NaT, NA); never for a list/dict."""
    if value is None:
        return True
    if isinstance(value, (list, dict, tuple, str)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """``df.to_dict("records")`` with every missing value (NaN, NaT, NA) None."""
    return df.astype(object).where(df.notna(), None).to_dict("records")


def missing_frame(missing: dict[str, str]) -> pd.DataFrame:
    """Planned cases without a record (case id -> model kind) as a frame with the columns
    the cells are grouped by (``documented`` applies to it as to the records)."""
    rows = []
    for cid, kind in sorted(missing.items()):
        try:
            case = parse_case_id(cid)
        except ValueError:
            continue
        rows.append({"case_id": cid, "env_id": case.env_id, "mode": case.mode,
                     "column": case.column, "format": case.format,
                     "operation": case.operation, "api": case.api, "model": case.model,
                     "model_kind": kind or None, "via": case.via})
    columns = ["case_id", "env_id", "mode", "column", "format", "operation", "api", "model",
               "model_kind", "via"]
    return pd.DataFrame(rows, columns=columns)


def _sizes(df: pd.DataFrame, keys: list[str]) -> dict[tuple, int]:
    return {k: int(n) for k, n in df.groupby(keys).size().items()} if len(df) else {}


def _mark_missing(cell: dict[str, Any], missing: int) -> dict[str, Any]:
    cell.update(incomplete=missing > 0, missing=missing)
    return cell


def level(counts: dict[str, int]) -> str:
    attempted = sum(counts.get(o, 0) for o in ATTEMPTED)
    passed = counts.get(PASSED, 0)
    if attempted == 0:
        return "unknown"
    if passed == attempted:
        return "supported"
    return "unsupported" if passed == 0 else "partial"


def verdict(documented: str | None, observed: str) -> str:
    if observed == "unknown":
        return "unknown"
    if documented is None:
        return "undocumented"
    if documented == "supported":
        return "as_documented" if observed == "supported" else "regression"
    return "as_documented" if observed == "unsupported" else "undocumented_support"


# what differs per case in a message (the records are redacted already: ``redact``):
# object addresses, the handle URL (port, token), a stored model's directory, temporary
# directories (a stage's TMPDIR is <run>/tmp/<stage>.<env>.<mode>), sha1 cache dir names
MASKS = ((r"0x[0-9a-f]+", "0x…"),
         (r"(?:https?://(?:127\.0\.0\.1|localhost)(?::\d+)?|<hub>)[^\s'\"]*",
          "<handle URL>"),
         (r"\S*/store/\S+/model\b", "<model dir>"),
         (r"(?:/tmp|<tmp>|<run>/tmp/[\w.-]+)/tfhub-compat-[\w-]+?-\w+", "<tmp>/tfhub-compat-…"),
         (r"\b[0-9a-f]{40}\b", "<sha1>"))


FIRST_LINE_MAX = 1000


def _first_line(message: Any) -> str:
    """A message's first meaningful line, with what differs per case masked ("" when
    there is none: a missing message is never the text "nan")."""
    if _missing(message):
        return ""
    lines = [ln.strip() for ln in str(message).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1 and (text.endswith(":") or text.startswith("Exception encountered")):
        text = lines[-1]  # "in user code:" / Keras's wrapper line -> the line that says why
        for line in lines[1:]:
            if re.match(r"^[\w.]*(Error|Exception): ", line):
                text = line
                break
    text = text[:FIRST_LINE_MAX]  # bounds the masks' cost on huge one-line messages
    for pattern, mask in MASKS:
        text = re.sub(pattern, mask, text)
    return text


def _counts(group: pd.DataFrame) -> dict[str, int]:
    vc = group["outcome"].value_counts()
    return {o: int(vc.get(o, 0)) for o in OUTCOMES if int(vc.get(o, 0))}


def _cell(counts: dict[str, int]) -> dict[str, Any]:
    return {"counts": counts, "passed": counts.get(PASSED, 0),
            "attempted": sum(counts.get(o, 0) for o in ATTEMPTED),
            "infra": sum(counts.get(o, 0) for o in INFRA_OUTCOMES),
            "observed": level(counts)}


def _groups(df: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    return {k: g for k, g in df.groupby(["format", "operation", "column"])} if len(df) else {}


def prerequisites_fail(full: pd.DataFrame, matrix: Matrix) -> set[tuple[str, str]]:
    """The env x modes where a health check the documents presuppose
    (``matrix.prerequisites``, e.g. ``import-tensorflow_hub``) did not pass."""
    if not matrix.prerequisites or not len(full):
        return set()
    checks = full[(full["operation"] == "health") & full["api"].isin(matrix.prerequisites)]
    bad = checks[checks["outcome"] != PASSED]
    return {(e, m) for e, m in zip(bad["env_id"], bad["mode"])}


def judged(df: pd.DataFrame, matrix: Matrix, broken: set[tuple[str, str]]
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the records a documents' cell's level and verdict count: the calls its expectation
    names, in env x modes where the prerequisites hold; the documents' calls in the others,
    whose failures are shown as the cell's breakers)."""
    if not len(df):
        return df, df
    named = pd.Series(True, index=df.index)
    for e in matrix.expectations:
        if e.calls:
            here = (df["format"] == e.format) & (df["operation"] == e.operation) & \
                (df["column"] == e.column)
            named &= ~here | df["api"].isin(e.calls)
    held = pd.Series([(env, mode) not in broken for env, mode in zip(df["env_id"], df["mode"])],
                     index=df.index, dtype=bool)
    return df[named & held], df[named & ~held]


# the record fields ``conditions.derive`` reads
DERIVE_FIELDS = ("case_id", "env_id", "mode", "column", "format", "operation", "api",
                 "model", "producer_env", "producer_mode", "outcome", "error_type", "message",
                 "keras", "tensorflow", "tensorflow_hub", "stage")


def cells(df: pd.DataFrame, matrix: Matrix, handle: pd.DataFrame | None = None,
          missing: pd.DataFrame | None = None, broken: set[tuple[str, str]] | None = None,
          envs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The documents' table: format x operation x column, documented vs observed.

    A cell's level and verdict count the calls the documents name (``calls``) where the
    documents' prerequisites hold (``broken``: the env x modes where they do not);
    ``all_calls`` keeps the counts over every variant and env, and ``breakers`` the
    distinct failures of the documents' calls where a prerequisite failed.

    ``handle``: the same calls made on a URL (``by_handle``); load and fine-tune
    cells get their own level, counts and verdict for them.  ``missing``: the planned
    cases without a record (``missing_frame``): a cell with some is ``incomplete``.
    """
    missing = missing if missing is not None else missing_frame({})
    keys = ["format", "operation", "column"]
    absent = _sizes(documented(missing), keys)
    absent_url = _sizes(documented(missing, via="url"), keys)
    fmts = sorted(set(df["format"].dropna()) | {e.format for e in matrix.expectations}
                  | {k[0] for k in absent} | {k[0] for k in absent_url})
    columns = sorted(COLUMN_TITLES)
    counted, breaking = judged(df, matrix, broken or set())
    from .conditions import derive  # ranges and conditions over the counted records
    derived = derive(_rows(counted[[c for c in DERIVE_FIELDS if c in counted]]), envs or {}) \
        if len(counted) else {}
    everything = _groups(df)
    grouped = _groups(counted)
    breakers = _groups(breaking)
    by_url = _groups(handle if handle is not None else df.iloc[0:0])
    out = []
    for fmt in fmts:
        for op in OPERATIONS:
            for col in columns:
                group = grouped.get((fmt, op, col))
                counts = _counts(group) if group is not None else {}
                exp = matrix.expectation(fmt, op, col)
                cell = _cell(counts)
                cell.update(format=fmt, operation=op, column=col,
                            column_title=COLUMN_TITLES[col],
                            documented=exp.documented if exp else None,
                            claim=exp.claim if exp else None, api=exp.api if exp else None,
                            apis=sorted(set(group["api"])) if group is not None else [],
                            verdict=verdict(exp.documented if exp else None, cell["observed"]))
                cell["examples"] = _examples(group) if group is not None else []
                cell["calls"] = list(exp.calls) if exp else []
                cell.update({"ranges": [], "conditions": [], **derived.get((fmt, op, col), {})})
                whole = everything.get((fmt, op, col))
                cell["all_calls"] = _cell(_counts(whole) if whole is not None else {})
                broke = breakers.get((fmt, op, col))
                cell["breakers"] = _examples(broke) if broke is not None else []
                _mark_missing(cell, absent.get((fmt, op, col), 0))
                if op in BY_HANDLE:
                    cell["by_handle"] = _mark_missing(
                        _handle_cell(by_url.get((fmt, op, col)),
                                     exp.documented if exp else None),
                        absent_url.get((fmt, op, col), 0))
                out.append(cell)
    return out


def _handle_cell(group: pd.DataFrame | None, documented: str | None) -> dict[str, Any]:
    cell = _cell(_counts(group) if group is not None else {})
    cell.update(verdict=verdict(documented, cell["observed"]),
                apis=sorted(set(group["api"])) if group is not None else [],
                examples=_examples(group) if group is not None else [])
    return cell


EXAMPLE_FIELDS = ("case_id", "outcome", "error_type", "message", "repro")


def _examples(group: pd.DataFrame, limit: int = 5) -> list[dict[str, Any]]:
    """The cell's distinct failures (error type + first line, object addresses masked),
    most frequent first, each with one case and its repro."""
    failing = group[group["outcome"] != PASSED]
    # only the fields an example shows: converting whole records (details, tracebacks)
    # for every cell doubled the report's build time
    bad = _rows(failing[[c for c in EXAMPLE_FIELDS if c in failing]].sort_values("case_id")) \
        if len(failing) else []
    keyed = [((rec.get("error_type"), _first_line(rec.get("message"))[:120]), rec)
             for rec in bad]
    counts = Counter(key for key, _ in keyed)
    out, seen = [], set()
    for key, rec in sorted(keyed, key=lambda kr: -counts[kr[0]]):  # stable: case_id order
        if key in seen:
            continue
        seen.add(key)
        out.append({"case_id": rec["case_id"], "outcome": rec["outcome"],
                    "error_type": rec.get("error_type"), "cases": counts[key],
                    "message": _first_line(rec.get("message"))[:300], "repro": rec.get("repro")})
        if len(out) == limit:
            break
    return out


def env_cells(df: pd.DataFrame, missing: pd.DataFrame | None = None
              ) -> list[dict[str, Any]]:
    """Per consumer env x mode x format x operation (also those with only ``missing``
    cases: an env x mode whose stage never ran)."""
    keys = ["env_id", "mode", "format", "operation"]
    absent = _sizes(documented(missing if missing is not None else missing_frame({})), keys)
    grouped = {k: g for k, g in df.groupby(keys)} if len(df) else {}
    out = []
    for key in sorted(set(grouped) | set(absent)):
        env_id, mode, fmt, op = key
        group = grouped.get(key)
        cell = _cell(_counts(group) if group is not None else {})
        cell.update(env_id=env_id, mode=mode, column=COLUMN_OF_MODE[mode], format=fmt,
                    operation=op)
        out.append(_mark_missing(cell, absent.get(key, 0)))
    return out


def _column(df: pd.DataFrame, name: str, default: str) -> pd.Series:
    """A record field as a Series (records older than the field get ``default``)."""
    return df[name].fillna(default) if name in df else pd.Series(default, index=df.index)


def documented(df: pd.DataFrame, via: str = "path") -> pd.DataFrame:
    """The records the documents' table rests on: not users' models, not health checks;
    the calls made on a directory (``via="path"``) or on a URL (``"url"``)."""
    if not len(df):
        return df
    return df[(_column(df, "model_kind", "") != "user") & df["operation"].isin(OPERATIONS)
              & (_column(df, "via", "path") == via)]


def downloads(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The hosting protocol's checks: one row per env x mode, one cell per check (all
    formats together), with what the library reported on the first, faulty attempt."""
    if not len(df):
        return []
    rows = df[df["operation"] == DOWNLOAD]
    out = []
    for (env_id, mode), g in rows.groupby(["env_id", "mode"]):
        checks = {}
        for api, ag in g.groupby("api"):
            cell = _cell(_counts(ag))
            cell["examples"] = _examples(ag, limit=3)
            passed = ag[ag["outcome"] == PASSED]
            reports = Counter(_first_line(d.get("first_attempt"))
                              for d in passed.get("details", [])
                              if isinstance(d, dict) and d.get("first_attempt"))
            cell["library_reports"] = [{"message": m[:300], "cases": n}
                                       for m, n in reports.most_common()]
            checks[api] = cell
        out.append({"env_id": env_id, "mode": mode, "checks": checks})
    return out


def _outcome_cell(rec: dict[str, Any]) -> dict[str, Any]:
    message = rec.get("message")
    first = "" if _missing(message) else str(message).strip().splitlines()
    return {"outcome": rec["outcome"], "error_type": rec.get("error_type"),
            "message": first[0][:300] if first else "", "max_abs_err": rec.get("max_abs_err"),
            "case_id": rec["case_id"], "repro": rec.get("repro")}


def health(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Environment health checks: one row per env x mode, one entry per check."""
    if not len(df):
        return []
    rows = df[df["operation"] == "health"]
    return [{"env_id": env_id, "mode": mode,
             "checks": {r["api"]: _outcome_cell(r) for r in _rows(g)}}
            for (env_id, mode), g in rows.groupby(["env_id", "mode"])]


def user_models(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Users' models: per model, one row per format x operation x api, a cell per env x mode."""
    if not len(df) or "model_kind" not in df:
        return []
    out = []
    for model, g in df[df["model_kind"] == "user"].groupby("model"):
        rows = []
        for (fmt, op, api), rg in g.groupby(["format", "operation", "api"]):
            rows.append({"format": fmt, "operation": op, "api": api,
                         "envs": {f"{r['env_id']}/{r['mode']}": _outcome_cell(r)
                                  for r in _rows(rg)}})
        order = {op: i for i, op in enumerate(OPERATIONS)}
        rows.sort(key=lambda r: (order.get(r["operation"], 9), r["api"]))
        producers = g[g["operation"] != "create"][["producer_env", "producer_mode"]]
        ref = [r for r in _rows(producers.drop_duplicates()) if r["producer_env"]]
        out.append({"model": model, "format": sorted(set(g["format"]))[0],
                    "reference": (f"{ref[0]['producer_env']}/{ref[0]['producer_mode']}"
                                  if ref else None), "rows": rows,
                    "counts": _counts(g)})
    return out


def infrastructure(df: pd.DataFrame) -> dict[str, Any]:
    """Cases that did not run to a verdict: counts per infrastructure outcome, every
    ``harness_error`` case (grouped when type, message and traceback are the same) with
    its full message and traceback, and the other outcomes' distinct errors."""
    rows = _rows(df[df["outcome"].isin(INFRA_OUTCOMES)].sort_values("case_id")) \
        if len(df) else []
    harness: dict[tuple, list[dict[str, Any]]] = {}
    other: dict[tuple, list[dict[str, Any]]] = {}
    for rec in rows:
        if rec["outcome"] == HARNESS_ERROR:
            key = (rec.get("error_type"), rec.get("message"), rec.get("traceback"))
            harness.setdefault(key, []).append(rec)
        else:
            key = (rec["outcome"], rec.get("error_type"), _first_line(rec.get("message"))[:300])
            other.setdefault(key, []).append(rec)
    return {
        "counts": {o: n for o, n in Counter(r["outcome"] for r in rows).items()},
        "harness_errors": [{"error_type": etype, "message": message, "traceback": tb,
                            "cases": len(recs), "case_ids": [r["case_id"] for r in recs],
                            "repro": recs[0].get("repro")}
                           for (etype, message, tb), recs in sorted(
                               harness.items(), key=lambda kv: (-len(kv[1]),
                                                                kv[1][0]["case_id"]))],
        "other": [{"outcome": outcome, "error_type": etype, "message": message,
                   "cases": len(recs), "case_id": recs[0]["case_id"],
                   "repro": recs[0].get("repro")}
                  for (outcome, etype, message), recs in sorted(
                      other.items(), key=lambda kv: (-len(kv[1]), kv[1][0]["case_id"]))],
    }


def primary_calls(matrix: Matrix) -> dict[tuple[str, str], str]:
    """(format, column) -> the load call the producer x consumer grid shows: the matrix's
    ``sampling.primary``, else the first call the documents name for the load cell."""
    found = {(e.format, e.column): e.calls[0] for e in matrix.expectations
             if e.operation == "load" and e.calls}
    if matrix.sampling:
        found.update({(fmt, col): api for fmt, col, api in matrix.sampling.primary})
    return found


def release_of(envs: dict[str, Any], env_id: str) -> str:
    """An env's TF release (``conditions.env_release``), else its id."""
    from .conditions import env_release
    return env_release(envs.get(env_id) or {}) or env_id


def grid(df: pd.DataFrame, matrix: Matrix, envs: dict[str, Any]) -> list[dict[str, Any]]:
    """Per format: which consumer releases load the models made by which producer releases,
    with the primary load call of the consumer's column (``primary_calls``), all modes and
    flavours of a release together."""
    primary = primary_calls(matrix)
    if not len(df) or not primary:
        return []
    loads = df[df["operation"] == "load"]
    keep = pd.Series([primary.get((f, c)) == a for f, c, a in
                      zip(loads["format"], loads["column"], loads["api"])],
                     index=loads.index, dtype=bool)
    loads = loads[keep]
    from .conditions import version_key
    from .markdown import FORMAT_TITLES, format_rank
    out = []
    for fmt in sorted(set(loads["format"]), key=format_rank):
        g = loads[loads["format"] == fmt].assign(
            producer=lambda x: [release_of(envs, e) for e in x["producer_env"]],
            consumer=lambda x: [release_of(envs, e) for e in x["env_id"]])
        cells_ = []
        for (producer, consumer), pair in g.groupby(["producer", "consumer"]):
            cell = _cell(_counts(pair))
            failing = _examples(pair, limit=1)
            cells_.append({"producer": producer, "consumer": consumer,
                           "passed": cell["passed"], "attempted": cell["attempted"],
                           "infra": cell["infra"], "observed": cell["observed"],
                           "error": (f"{failing[0]['error_type']}: {failing[0]['message']}"
                                     if failing else None)})
        releases = sorted(set(g["producer"]) | set(g["consumer"]), key=version_key)
        out.append({"format": fmt, "title": FORMAT_TITLES.get(fmt, fmt),
                    "api": {col: api for (f, col), api in sorted(primary.items()) if f == fmt},
                    "releases": releases, "cells": cells_})
    return out


def summarize(records: list[dict], matrix: Matrix, run: dict[str, Any],
              envs: dict[str, Any], missing: dict[str, str] | None = None
              ) -> dict[str, Any]:
    """The summary of ``records``; ``missing``: planned cases without a record (case id
    -> model kind, from ``completeness.check``), which mark their cells incomplete."""
    full = frame(records)
    df = documented(full)
    handle = documented(full, via="url")
    absent = missing_frame(missing or {})
    outcomes = _counts(full) if len(full) else {}
    return {
        "schema_version": 1,
        "run": run,
        "envs": envs,
        "totals": {"cases": int(len(full)), "outcomes": outcomes,
                   "producers": int(df.loc[(df["operation"] == "create")
                                           & (df["outcome"] == PASSED)].shape[0])
                   if len(df) else 0},
        "cells": cells(df, matrix, handle, absent, prerequisites_fail(full, matrix), envs),
        "env_cells": env_cells(df, absent),
        "health": health(full),
        "downloads": downloads(full),
        "user_models": user_models(full),
        "grid": grid(df, matrix, envs),
        "infrastructure": infrastructure(full),
    }
