"""Version ranges and failure conditions per documents' cell (format x operation x column),
computed from result records, BCD-style (MDN browser-compat-data): nothing hand-written.

``dimensions``: one row per attempted record (passed / failed / error; skips and infrastructure
outcomes never count) with its failure key ("ErrorType: first line", ``summary._first_line``)
and the dimensions consumer TF ``release``, ``tensorflow_hub``, ``keras`` flavour ("Keras 3",
"tf-keras", "Keras 2"), ``setuptools``, ``mode``, ``producer_release`` (None for create cases).
Versions order as ``packaging`` versions (2.9 < 2.10); keras and mode are categorical.

Per cell the rows collapse into unique dimension tuples (a value's rank among the cell's
values, -1 when missing) with counts; every search works on numpy masks over those tuples.
A predicate is an interval of ranks on one dimension (``≥ v``, ``≤ v``, ``= v``, ``a–b``;
categorical: ``= v``), never matching a missing value; a condition is a conjunction of ≤ 3.

* ``failure_conditions``: per distinct failure F, the smallest condition matching exactly F's
  cases: no passing case and no case of another failure (that counts as over-coverage).  A
  predicate of an exact condition contains all of F's tuples, so per dimension only F's
  tightest interval matters; conjunctions of those over 0..3 dimensions are tried in dimension
  order and the first size with an exact one wins.  Each predicate is then widened to its
  preferred form while the counts stay equal (a lowest single value as ``=``, else ``≥ lo``,
  ``≤ hi``, ``=``, ``lo–hi``); among one size's exact ones the fewest ``a–b`` win, then
  dimension order.  Without an exact one the best maximises matched − over, then matched,
  with the fewest predicates: the weight (f − o)·M + f per tuple (M > |F|) is additive, so
  each dimension combination is a max-weight box search (prefix-sum interval sums on outer
  dimensions, interval ends only at values where F occurs; a running minimum of prefix sums
  on the inner one).  When no box matches F at least as often as others, the condition is
  empty ("every case").  An inexact text carries its counts.
* ``release_ranges``: each consumer release is supported / partial / unsupported; a partial
  one whose passing cases one predicate on one other dimension separates exactly is
  "supported" with that qualifier.  Consecutive releases merge on equal status and qualifier
  (unsupported: also the same main error); a range's error is its most common failure.  Rows
  without a release are left out of the ranges.
"""
from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from packaging.version import InvalidVersion, Version

from ..runtime.cases import COLUMN_OF_MODE
from ..runtime.records import ERROR, FAILED, PASSED
from .summary import _first_line

ATTEMPTED = (PASSED, FAILED, ERROR)
DIMS = ("release", "tensorflow_hub", "keras", "setuptools", "mode", "producer_release")
ORDERED = ("release", "tensorflow_hub", "setuptools", "producer_release")
NAMES = {"release": "consumer TF", "tensorflow_hub": "tensorflow_hub", "keras": "Keras",
         "setuptools": "setuptools", "mode": "mode", "producer_release": "producer TF"}
MODES = ("tf1", "tf1_eager", "compat", "tf2")
COLUMNS = ("case_id", "format", "operation", "column", "outcome", "failure") + DIMS
MAX_PREDICATES = 3
Pred = tuple  # (dim index, op, lo rank, hi rank)


def version_key(value: str) -> tuple[int, Version, str]:
    """Versions in order (1.15 < 2.0 < 2.10), anything else after them by its text."""
    try:
        return (0, Version(value), "")
    except InvalidVersion:
        return (1, Version("0"), value)


def _minor(version: Any) -> str | None:
    m = re.match(r"\s*(\d+)\.(\d+)", str(version or ""))
    return f"{m[1]}.{m[2]}" if m else None


def _short(value: str) -> str:
    """A package version without trailing zeros: 0.15.0 -> 0.15, 82.0.0 -> 82."""
    return re.sub(r"(\.0)+$", "", value) if re.fullmatch(r"\d+(\.\d+)+", value) else value


def _flavour(text: Any) -> str | None:
    """The Keras flavour of a record's ``keras`` field (``runtime.modes.keras_flavour``)."""
    text = str(text or "").strip()
    m = re.match(r"keras (\d+)", text)
    if m:
        return "Keras 3" if int(m[1]) >= 3 else "Keras 2"
    return next((name for prefix, name in (("tf_keras", "tf-keras"), ("tf.keras", "Keras 2"),
                 ("unavailable", "unavailable")) if text.startswith(prefix)), None)


def _env_flavour(info: dict[str, Any]) -> str | None:
    if info.get("keras") and "," not in str(info["keras"]):
        return _flavour(info["keras"])
    versions = info.get("versions") or {}
    legacy = str((info.get("env_vars") or {}).get("TF_USE_LEGACY_KERAS", "")).lower()
    if legacy in ("1", "true") and versions.get("tf-keras"):
        return "tf-keras"
    if versions.get("keras"):
        return _flavour(f"keras {versions['keras']}")
    return "Keras 2" if versions.get("tensorflow") or versions.get("tensorflow-cpu") else None


def env_release(info: dict[str, Any], tf: Any = None) -> str | None:
    """An env's TF release (major.minor): its ``release``, else that of ``tf`` (a record's
    TF version), else that of the TF it has installed; None when none is known."""
    versions = info.get("versions") or {}
    installed = next((versions[k] for k in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu")
                      if versions.get(k)), None)
    return str(info.get("release") or "") or _minor(tf) or _minor(installed)


def dimensions(records: list[dict], envs: dict) -> pd.DataFrame:
    """One row per attempted record: its cell, outcome, failure key and dimensions."""
    seen_tf = {r.get("env_id"): r.get("tensorflow") for r in records if r.get("tensorflow")}

    @functools.cache
    def release(env_id: Any, tf: Any = None) -> str | None:
        return env_release(envs.get(env_id) or {}, tf) or _minor(seen_tf.get(env_id))

    keys: dict[tuple[Any, Any, Any], str] = {}
    flavours: dict[Any, str | None] = {}
    rows = []
    for r in records:
        outcome = r.get("outcome")
        if outcome not in ATTEMPTED:
            continue
        info = envs.get(r.get("env_id")) or {}
        versions = info.get("versions") or {}
        failure = None
        if outcome != PASSED:
            mk = (r.get("error_type"), r.get("message"), outcome)
            if mk not in keys:
                line = _first_line(mk[1])[:120]
                keys[mk] = f"{mk[0] or outcome}: {line}" if line else str(mk[0] or outcome)
            failure = keys[mk]
        producer = (release(r.get("producer_env"))
                    if r.get("operation") != "create" and r.get("producer_env") else None)
        rows.append((r.get("case_id"), r.get("format"), r.get("operation"),
                     COLUMN_OF_MODE.get(r.get("mode") or "") or r.get("column"), outcome,
                     failure, release(r.get("env_id"), r.get("tensorflow")),
                     r.get("tensorflow_hub") or versions.get("tensorflow-hub"),
                     flavours.get((r.get("keras"), r.get("env_id"))) or flavours.setdefault(
                         (r.get("keras"), r.get("env_id")),
                         _flavour(r.get("keras")) or _env_flavour(info)),
                     versions.get("setuptools"), r.get("mode"), producer))
    return pd.DataFrame(rows, columns=list(COLUMNS), dtype=object)


class _Cell:
    """One cell's rows as unique dimension tuples: ``codes`` (tuples x dims) and counts."""

    def __init__(self, frame: pd.DataFrame):
        self.dims = [d for d in DIMS if d in frame and frame[d].notna().any()]
        self.values: dict[str, list[str]] = {}
        cols = []
        for d in self.dims:
            present = [v for v in frame[d].dropna().unique() if isinstance(v, str)]
            key: Any = ((lambda v: (MODES.index(v) if v in MODES else 9, v)) if d == "mode"
                        else version_key if d in ORDERED else None)
            self.values[d] = sorted(present, key=key)
            cols.append(pd.Index(self.values[d], dtype=object).get_indexer(frame[d]))
        matrix = np.array(cols, dtype=np.int64).T.reshape(len(frame), len(cols))
        self.codes, inverse = np.unique(matrix, axis=0, return_inverse=True)
        self.inverse = inverse.reshape(-1)
        self.k = [len(self.values[d]) for d in self.dims]
        self.ordered = [d in ORDERED for d in self.dims]
        self.total = self.count(np.ones(len(frame), bool))

    def count(self, rows: np.ndarray) -> np.ndarray:
        return np.bincount(self.inverse[rows], minlength=len(self.codes))

    def mask(self, preds: list[Pred]) -> np.ndarray:
        m = np.ones(len(self.codes), bool)
        for p in preds:
            m &= (self.codes[:, p[0]] >= p[-2]) & (self.codes[:, p[0]] <= p[-1])
        return m

    def normalize(self, sel: np.ndarray, f: np.ndarray, o: np.ndarray,
                  preds: list[Pred]) -> list[Pred]:
        """Widen each (j, lo, hi) to its preferred form where the counts stay the same."""
        codes, preds = self.codes[sel], list(preds)
        m = self.mask(preds)[sel]
        base = (f[m].sum(), o[m].sum())
        for i, (j, *_, lo, hi) in enumerate(preds):
            top, forms = self.k[j] - 1, [("=", lo, hi)]
            if self.ordered[j]:
                forms = [("=", lo, hi)] if lo == hi == 0 else []
                forms += [("≥", lo, top)] if lo > 0 or hi == top else []
                forms += [("≤", 0, hi)] if hi < top else []
                forms += [("=", lo, hi) if lo == hi else ("–", lo, hi)]
            rest = self.mask(preds[:i] + preds[i + 1:])[sel]
            for op, a, b in forms:
                m = rest & (codes[:, j] >= a) & (codes[:, j] <= b)
                if (f[m].sum(), o[m].sum()) == base:
                    preds[i] = (j, op, a, b)
                    break
        return preds

    def exact(self, sel: np.ndarray, f: np.ndarray, o: np.ndarray, dims: list[int],
              sizes: range) -> list[Pred] | None:
        """The smallest conjunction over ``dims`` matching exactly the tuples with f > 0."""
        codes, hit = self.codes[sel], f > 0
        if (hit & (o > 0)).any():
            return None
        tight = {}
        for j in dims:
            c = codes[hit, j]
            lo, hi = int(c.min()), int(c.max())
            if lo >= 0 and (self.ordered[j] or lo == hi):
                if not ((codes[:, j] >= lo) & (codes[:, j] <= hi)).all():
                    tight[j] = (lo, hi)
        for size in sizes:
            found = [self.normalize(sel, f, o, [(j, *tight[j]) for j in combo])
                     for combo in itertools.combinations(tight, size)
                     if not o[self.mask([(j, *tight[j]) for j in combo])[sel]].any()]
            if found:
                return min(found, key=lambda ps: sum(p[1] == "–" for p in ps))
        return None

    def best(self, f: np.ndarray, o: np.ndarray) -> list[Any]:
        """Max matched − over, then matched, fewest predicates: a box search per combo."""
        w = (f.astype(np.int64) - o) * (int(f.sum()) + 1) + f
        dims = [j for j in range(len(self.dims)) if self.k[j] > 1 or (self.codes[:, j] < 0).any()]
        score, preds = int(w.sum()), list[Pred]()  # no predicate: every case
        for size in range(1, MAX_PREDICATES + 1):
            for combo in itertools.combinations(dims, size):
                found = self._box(w, f, list(combo))
                if found and found[0] > max(score, 0):  # > 0: matches F at least as often
                    # as others; without such a box the answer is no predicate (every case)
                    score, preds = found
        return self.normalize(np.ones(len(self.codes), bool), f, o, preds)

    def _box(self, w: np.ndarray, f: np.ndarray, combo: list[int]) -> tuple[int, list] | None:
        keep = (self.codes[:, combo] >= 0).all(axis=1)
        order = sorted(combo, key=lambda j: (self.ordered[j], self.k[j]))  # inner axis last
        grid = np.zeros([self.k[j] for j in order], np.int64)
        np.add.at(grid, tuple(self.codes[keep, j] for j in order), w[keep])
        spans = []
        for axis, j in enumerate(order[:-1]):  # interval sums along each outer axis
            ends = np.unique(self.codes[keep & (f > 0), j])
            if not len(ends):
                return None
            a, b = np.triu_indices(len(ends)) if self.ordered[j] else (np.arange(len(ends)),) * 2
            spans.append(np.stack([ends[a], ends[b]], 1))
            prefix = np.concatenate([np.zeros_like(grid.take([0], axis)), grid.cumsum(axis)], axis)
            grid = prefix.take(spans[-1][:, 1] + 1, axis) - prefix.take(spans[-1][:, 0], axis)
        if self.ordered[order[-1]]:
            prefix = np.concatenate([np.zeros_like(grid[..., :1]), grid.cumsum(-1)], -1)
            scores = prefix[..., 1:] - np.minimum.accumulate(prefix[..., :-1], axis=-1)
        else:
            scores = grid
        idx = np.unravel_index(int(scores.argmax()), scores.shape)
        preds = [(j, *map(int, spans[a][idx[a]])) for a, j in enumerate(order[:-1])]
        end = int(idx[-1])
        if self.ordered[order[-1]]:
            p = prefix[idx[:-1]][: end + 1]
            preds.append((order[-1], int(np.flatnonzero(p == p.min())[-1]), end))
        else:
            preds.append((order[-1], end, end))
        return int(scores[idx]), sorted(preds, key=lambda p: p[0])

    def text(self, preds: list[Pred]) -> tuple[list[dict[str, str]], str]:
        names = dict(NAMES, release="consumer TF" if "producer_release" in self.dims else "TF")
        out, texts = [], []
        for j, op, lo, hi in preds:
            dim, values = self.dims[j], self.values[self.dims[j]]
            short = [_short(v) if dim in ORDERED else v for v in values]
            value = f"{short[lo]}–{short[hi]}" if op == "–" else short[hi if op == "≤" else lo]
            out.append({"dim": dim, "op": op, "value": value})
            texts.append(f"{names[dim]} {value}" if op in "=–" and dim in ORDERED
                         else f"{names[dim]} {op} {value}")
        return out, " and ".join(texts)


def _main(counter: Counter) -> str | None:
    return counter.most_common(1)[0][0] if counter else None


def release_ranges(frame: pd.DataFrame, cell: _Cell | None = None) -> list[dict]:
    """The consumer release axis of one cell's rows as merged ranges (see the module doc)."""
    frame = frame[frame["outcome"].isin(ATTEMPTED)] if cell is None else frame
    cell = cell or (_Cell(frame) if len(frame) else None)
    if cell is None or "release" not in cell.dims:
        return []
    r = cell.dims.index("release")
    passed = cell.count((frame["outcome"] == PASSED).to_numpy())
    failures = {rel: Counter(g.dropna()) for rel, g in frame.groupby("release")["failure"]}
    others = [j for j, d in enumerate(cell.dims) if d != "release"]
    out: list[dict] = []
    for code, rel in enumerate(cell.values["release"]):
        sel = cell.codes[:, r] == code
        p, n = int(passed[sel].sum()), int(cell.total[sel].sum())
        status = "supported" if p == n else "unsupported" if p == 0 else "partial"
        qualifier = None
        if status == "partial":
            found = cell.exact(sel, passed[sel], (cell.total - passed)[sel], others, range(1, 2))
            if found:
                status, qualifier = "supported", cell.text(found)[1]
        errors = failures.get(rel, Counter())
        last = out[-1] if out else None
        if last and (last["status"], last["qualifier"]) == (status, qualifier) and (
                status != "unsupported" or _main(last["errors"]) == _main(errors)):
            last["releases"].append(rel)
            last.update(to=rel, passed=last["passed"] + p, attempted=last["attempted"] + n)
            last["errors"] += errors
        else:
            out.append({"from": rel, "to": rel, "status": status, "qualifier": qualifier,
                        "errors": errors, "passed": p, "attempted": n, "releases": [rel]})
    newest = cell.values["release"][-1]
    for rng in out:
        rng["error"] = _main(rng.pop("errors"))
        span = f"TF {rng['from']}" + ("" if rng["from"] == rng["to"] else f"–{rng['to']}")
        rng["text"] = (f"{span} ({rng['qualifier']})" if rng["qualifier"] else span
                       ) if rng["status"] == "supported" else (
            f"{span}: partial {rng['passed']}/{rng['attempted']}"
            if rng["status"] == "partial" else
            f"{'from TF ' + rng['from'] if rng['to'] == newest else span}: {rng['error']}")
    return out


def failure_conditions(frame: pd.DataFrame, cell: _Cell | None = None) -> list[dict]:
    """Per distinct failure of one cell's rows, its smallest condition (see the module doc)."""
    frame = frame[frame["outcome"].isin(ATTEMPTED)] if cell is None else frame
    if not len(frame):
        return []
    cell = cell or _Cell(frame)
    out, every = [], np.ones(len(cell.codes), bool)
    for key, cases in Counter(frame["failure"].dropna()).most_common():
        rows = (frame["failure"] == key).to_numpy()
        f = cell.count(rows)
        o = cell.total - f  # over-coverage: passing cases and other failures
        preds = cell.exact(every, f, o, list(range(len(cell.dims))), range(MAX_PREDICATES + 1))
        preds = cell.best(f, o) if preds is None else preds
        matched, over = (int(x[cell.mask(preds)].sum()) for x in (f, o))
        condition, text = cell.text(preds)
        text = f"{text or 'every case'} → {key}"
        if matched < cases or over:
            text += (f" (covers {matched} of {cases}"
                     + (f", also {over} other{'s' * (over != 1)}" if over else "") + ")")
        out.append({"failure": key, "error_type": key.split(":")[0], "cases": cases,
                    "condition": condition, "text": text,
                    "exact": matched == cases and not over, "matched": matched,
                    "missed": cases - matched, "over": over,
                    "example": frame["case_id"][rows].iloc[0]})
    return out


def derive(records: list[dict], envs: dict) -> dict[tuple[str, str, str], dict]:
    """(format, operation, column) -> {"ranges": [...], "conditions": [...]} of ``records``
    (the caller's selection: the documents' own calls)."""
    out = {}
    for (f, op, col), g in dimensions(records, envs).groupby(["format", "operation", "column"]):
        g = g.reset_index(drop=True)
        cell = _Cell(g)
        out[(str(f), str(op), str(col))] = {"ranges": release_ranges(g, cell),
                                            "conditions": failure_conditions(g, cell)}
    return out
