"""``docs-table.md``: the documents' compatibility table (model-compatibility.en.txt), in the
shape of the English page's Markdown table, rewritten with what a run observed: each cell's
level and version ranges, the documents' own calls, and footnotes with the exact errors and
the conditions under which they occur.  Ready to propose as a change to the documentation;
the same content (``docs_table``) is in summary.json and on the page.
"""
from __future__ import annotations

from typing import Any

from .markdown import FORMAT_TITLES

SOURCE = "model-compatibility.en.txt"
# the English page's column headers, per format (SavedModels: "not supported before TF1.15")
HEADERS = {"tf1_hub": "TF1/ TF1 compat mode in TF2 [1]",
           "saved_model": "TF1.15/ TF1 compat mode in TF2 [1]"}
PAGE_TITLES = {"tf1_hub": "Compatibility of the TF1 Hub format",
               "saved_model": "Compatibility of TF2 SavedModel"}
OPERATIONS = (("load", "Loading / Inference"), ("fine_tune", "Fine-tuning"),
              ("create", "Creation"))
LEVEL_WORDS = {"supported": "Fully supported", "partial": "Partially supported",
               "unsupported": "Not supported", "unknown": "Not checked"}
COMPAT_NOTE = ('"TF1 compat mode in TF2" refers to the combined effect of importing TF2 with '
               "`import tensorflow.compat.v1 as tf` and running `tf.disable_v2_behavior()`.")


def build(summary: dict[str, Any]) -> dict[str, Any]:
    """The corrected table as data: formats -> rows -> cells (text + footnote numbers)."""
    cells = {(c["format"], c["operation"], c["column"]): c for c in summary.get("cells", [])
             if c.get("documented") is not None}
    footnotes: list[dict[str, Any]] = [{"n": 1, "text": COMPAT_NOTE}]
    formats = []
    for fmt in HEADERS:
        rows = []
        for op, title in OPERATIONS:
            row = []
            for col in ("tf1", "tf2"):
                cell = cells.get((fmt, op, col))
                row.append(_cell(cell, col, footnotes) if cell else
                           {"column": col, "text": "Not checked", "notes": []})
            rows.append({"operation": op, "title": title, "cells": row})
        formats.append({"format": fmt, "title": FORMAT_TITLES.get(fmt, fmt),
                        "heading": PAGE_TITLES[fmt], "header": HEADERS[fmt], "rows": rows})
    return {"source": SOURCE, "columns": ["TF1 / TF1 compat mode in TF2", "TF2"],
            "formats": formats, "footnotes": footnotes}


def _note(footnotes: list[dict[str, Any]], text: str) -> int:
    for f in footnotes:
        if f["text"] == text:
            return int(f["n"])
    footnotes.append({"n": len(footnotes) + 1, "text": text})
    return len(footnotes)


def _cell(cell: dict[str, Any], col: str, footnotes: list[dict[str, Any]]) -> dict[str, Any]:
    level = cell["observed"]
    parts = [LEVEL_WORDS[level] + (f" ({cell['passed']}/{cell['attempted']} cases)"
                                   if level == "partial" else "")]
    was = cell["documented"].replace("_", " ")
    if cell["verdict"] not in ("as_documented", "unknown"):
        parts[0] += f" — the documents say {was}"
    ranges = [r["text"] for r in cell.get("ranges") or []]
    if ranges:
        parts.append("; ".join(ranges))
    if cell.get("api"):
        parts.append("`" + cell["api"].replace(" | ", "` or `") + "`")
    notes = []
    for k in cell.get("conditions") or []:
        notes.append(_note(footnotes, f"{k['text']} (e.g. `{k.get('example')}`)"))
    if not cell.get("conditions"):
        for e in cell.get("examples") or []:
            if e["outcome"] not in ("failed", "error"):  # infrastructure: no library answer
                continue
            notes.append(_note(footnotes, f"{e['cases']} case(s): `{e.get('error_type')}: "
                                          f"{e['message']}` (repro: `{e.get('repro')}`)"))
    for b in cell.get("breakers") or []:
        notes.append(_note(footnotes, f"Where tensorflow_hub cannot be imported (a broken "
                                      f"install, not counted): `{b.get('error_type')}: "
                                      f"{b['message']}` ({b['cases']} cases)"))
    return {"column": col, "text": "<br>".join(parts), "notes": notes}


def render(table: dict[str, Any], run_id: str | None = None) -> str:
    lines = ["# TF Hub model formats: the compatibility table, as observed", "",
             f"Rewritten from run `{run_id}` of tfhub-compat: each cell is what the documents' "
             f"own calls did ({table['source']}), with the TensorFlow releases where they pass "
             "and footnotes giving the exact errors and when they occur.", ""]
    for fmt in table["formats"]:
        lines += [f"## {fmt['heading']}", "", f"Operation | {fmt['header']} | TF2 |",
                  "---|---|---|"]
        for row in fmt["rows"]:
            texts = [c["text"].replace("|", "\\|") + "".join(f" [{n}]" for n in c["notes"])
                     for c in row["cells"]]
            lines.append(f"{row['title']} | " + " | ".join(texts) + " |")
        lines.append("")
    lines += [f"[{f['n']}] {f['text']}" for f in table["footnotes"]]
    return "\n".join(lines) + "\n"
