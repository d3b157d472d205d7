"""The published site: every run's report, an index of the runs, the newest run in front.

    SITE/index.html                    the newest run's page
    SITE/runs/index.json               {"schema_version": 1, "runs": [entry, ...]}, newest first
    SITE/runs/<run-id>/summary.json    and results.jsonl.gz, index.html, compat.md

``publish`` adds a run directory's report to a site directory, after mirroring the runs
the live site lists (``source``: its URL), so that a deploy that replaces the whole site
(GitHub Pages) keeps them.  ``baseline`` and ``earlier`` read a site, by URL or as a
directory, for ``harness report --baseline URL`` and ``--history PATH|URL``.  A site
without runs/index.json has no run yet: no error, no baseline, no history.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..jsonio import write_json
from ..usermodels import FetchError, FetchLimits, fetch_bytes, is_url
from .diff import parse_records
from .history import HISTORY_RUNS
from .redact import host_paths

SCHEMA_VERSION = 1
INDEX = "runs/index.json"
SUMMARY = "summary.json"
RESULTS = "results.jsonl.gz"
RUN_FILES = (SUMMARY, RESULTS, "index.html", "compat.md")
RUN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")  # a directory name, never "." or ".."
SITE_HELP = ("pass the root of a site written by `harness publish`, a run of it "
             "(…/runs/<run-id>/) or that run's summary.json")


class Site:
    """A published site (or one run of it) to read, by URL or as a directory; ``option``
    (``--baseline URL``) starts every error."""

    def __init__(self, root: str, option: str, limits: FetchLimits | None = None) -> None:
        self.is_url = is_url(root)
        self.root = root if root.endswith("/") or not self.is_url else root + "/"
        self.option, self.limits = option, limits or FetchLimits()

    def location(self, rel: str) -> str:
        if self.is_url:
            return urllib.parse.urljoin(self.root, rel)
        return os.path.join(self.root, *rel.split("/"))

    def read(self, rel: str) -> bytes | None:
        """The bytes of the site's file ``rel``; None when there is none (HTTP 404)."""
        where = self.location(rel)
        if not self.is_url:
            try:
                with open(where, "rb") as fh:
                    return fh.read()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise UserError(f"{self.option}: cannot read {where}: {exc.strerror}; "
                                "check the path")
        try:
            return fetch_bytes(where, self.limits)
        except FetchError as exc:
            if exc.status in (404, 410):
                return None
            raise UserError(f"{self.option}: {where}: {exc}; check the URL and that the "
                            "site is up")

    def json(self, rel: str) -> Any:
        """The site's JSON file ``rel``; None when there is none."""
        data = self.read(rel)
        if data is None:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise UserError(f"{self.option}: {self.location(rel)} is not JSON ({exc}); "
                            + SITE_HELP)

    def runs(self) -> list[dict[str, Any]] | None:
        """runs/index.json's entries (newest first; those with a usable run id); None
        when the site has no index (no run published yet)."""
        index = self.json(INDEX)
        if index is None:
            return None
        runs = index.get("runs") if isinstance(index, dict) else None
        if not isinstance(runs, list):
            raise UserError(f"{self.option}: {self.location(INDEX)} is not an index of "
                            "runs (no \"runs\" list); " + SITE_HELP)
        return [e for e in runs if isinstance(e, dict) and isinstance(e.get("run_id"), str)
                and RUN_ID.match(e["run_id"])]

    def summary(self, rel: str) -> dict[str, Any] | None:
        data = self.json(rel)
        if data is not None and not (isinstance(data, dict)
                                     and isinstance(data.get("cells"), list)):
            raise UserError(f"{self.option}: {self.location(rel)} is not a report "
                            "summary.json; " + SITE_HELP)
        return data

    def records(self, rel: str) -> list[dict[str, Any]] | None:
        """The records of a results.jsonl.gz (or a plain results.jsonl); None: neither."""
        data = self.read(rel)
        if data is None:
            data = self.read(rel[:-3]) if rel.endswith(".gz") else None
            return None if data is None else parse_records(data.decode("utf-8", "replace")
                                                           .splitlines())
        try:
            text = gzip.decompress(data).decode("utf-8", "replace")
        except (OSError, EOFError) as exc:
            raise UserError(f"{self.option}: {self.location(rel)} is not gzip data ({exc}); "
                            + SITE_HELP)
        return parse_records(text.splitlines())


@dataclass(frozen=True)
class Baseline:
    """A baseline read from a site: its summary, its records (None: cell level only) and
    where its summary.json is; ``summary`` None: there is no earlier run (``where`` says
    why: a first run)."""

    summary: dict[str, Any] | None
    records: list[dict[str, Any]] | None
    where: str


def is_site(spec: str | None) -> bool:
    """A URL, or a directory that holds runs/index.json."""
    return bool(spec) and (is_url(str(spec)) or os.path.isfile(
        os.path.join(str(spec), *INDEX.split("/"))))


def _earlier(entry: dict[str, Any], run: dict[str, Any], envs: list[str]) -> bool:
    """An index entry is an earlier run of the same environments than ``run``."""
    started = str(run.get("started_at") or "")
    return (entry["run_id"] != run.get("run_id")
            and not (started and str(entry.get("started_at") or "") >= started)
            and ("envs" not in entry or sorted(entry["envs"] or []) == envs))


def baseline(spec: str, run: dict[str, Any], envs: list[str],
             limits: FetchLimits | None = None) -> Baseline:
    """``--baseline URL`` (or a site directory): a run (…/runs/<id>/ or its summary.json)
    or a site's root, whose baseline is the newest complete run its index lists that
    started before ``run`` and ran ``envs``; none there, or no index: no baseline."""
    option = f"--baseline {spec}"
    path = urllib.parse.urlparse(spec).path if is_url(spec) else spec
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1] == SUMMARY:
        return _run_baseline(Site(spec[:spec.rindex(SUMMARY)], option, limits), option)
    if len(parts) >= 2 and parts[-2] == "runs":
        return _run_baseline(Site(spec, option, limits), option)
    site = Site(spec, option, limits)
    runs = site.runs()
    if runs is None:
        return Baseline(None, None, f"no earlier published run ({site.location(INDEX)} "
                                    "does not exist yet: a first run)")
    for entry in runs:
        if _earlier(entry, run, envs) and entry.get("complete") is not False:
            return _run_baseline(Site(site.location(f"runs/{entry['run_id']}/"), option,
                                      limits), option)
    return Baseline(None, None, f"no earlier published run of the same environments in "
                                f"{site.location(INDEX)}")


def _run_baseline(site: Site, option: str) -> Baseline:
    summary = site.summary(SUMMARY)
    if summary is None:
        raise UserError(f"{option}: {site.location(SUMMARY)} does not exist; " + SITE_HELP)
    return Baseline(summary, site.records(RESULTS), site.location(SUMMARY))


def earlier(spec: str, run: dict[str, Any], envs: list[str],
            limits: FetchLimits | None = None, limit: int = HISTORY_RUNS
            ) -> list[dict[str, Any]]:
    """``--history PATH|URL``: the summaries of the last ``limit`` runs a site lists that
    started before ``run`` and ran ``envs``, oldest first (a run gone from the site is
    left out; no index: none)."""
    site = Site(spec, f"--history {spec}", limits)
    chosen = [e for e in site.runs() or [] if _earlier(e, run, envs)][:limit]
    found = [site.summary(f"runs/{e['run_id']}/{SUMMARY}") for e in chosen]
    return [s for s in reversed(found) if s is not None]


def entry(summary: dict[str, Any]) -> dict[str, Any]:
    """A run's line in runs/index.json."""
    run, totals = summary.get("run") or {}, summary.get("totals") or {}
    changes = (summary.get("changes") or {}).get("counts")
    return {"run_id": run.get("run_id"), "started_at": run.get("started_at"),
            "finished_at": run.get("finished_at"), "complete": run.get("complete", True),
            "git_commit": run.get("git_commit"), "envs": sorted(summary.get("envs") or {}),
            "cases": totals.get("cases"), "counts": totals.get("outcomes") or {},
            "changes": changes}


def _run_files(run_dir: str) -> dict[str, bytes]:
    """The files a run publishes, results.jsonl compressed (no timestamp: the same run
    gives the same bytes)."""
    files = {}
    for name in RUN_FILES:
        path = os.path.join(run_dir, name[:-3] if name == RESULTS else name)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise UserError(f"{run_dir}: cannot read {os.path.basename(path)} "
                            f"({exc.strerror}); build the report first: harness report "
                            f"{run_dir}")
        files[name] = gzip.compress(data, mtime=0) if name == RESULTS else data
    return files


def _check_paths(run_dir: str, site_dir: str, files: dict[str, bytes]) -> None:
    """Refuse a report that names this host's directories (published files hold none)."""
    from ..wheel import PROJECT_ROOT
    home = os.path.expanduser("~")
    roots = [run_dir, os.path.dirname(os.path.abspath(run_dir)), site_dir, os.getcwd(),
             PROJECT_ROOT, tempfile.gettempdir()] + ([home] if home != "~" else [])
    for name, data in files.items():
        text = (gzip.decompress(data) if name == RESULTS else data).decode("utf-8", "replace")
        found = host_paths(text, roots)
        if found:
            raise UserError(f"{run_dir}: its {name[:-3] if name == RESULTS else name} "
                            f"holds the host path {found[0]}; rebuild the report (harness "
                            f"report {run_dir}), which redacts it, before publishing")


def _write_run(site_dir: str, run_id: str, files: dict[str, bytes]) -> None:
    """runs/<run_id>/ replaced as a whole (a half-written run is never listed)."""
    runs = os.path.join(site_dir, "runs")
    tmp = os.path.join(runs, f".{run_id}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, data in files.items():
        with open(os.path.join(tmp, name), "wb") as fh:
            fh.write(data)
    dest = os.path.join(runs, run_id)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.rename(tmp, dest)


def _mirror(source: str, site_dir: str, keep: int, skip: str,
            limits: FetchLimits | None) -> list[dict[str, Any]]:
    """The entries of the runs ``source`` lists (its newest ``keep``; 0: all), each run's
    files downloaded into ``site_dir`` unless there already; none when it has no index."""
    site = Site(source, f"--from {source}", limits)
    found = []
    for e in (site.runs() or [])[:keep or None]:
        run_id = e["run_id"]
        if run_id == skip:
            continue
        if not os.path.isfile(os.path.join(site_dir, "runs", run_id, SUMMARY)):
            files = {name: site.read(f"runs/{run_id}/{name}") for name in RUN_FILES}
            if files[SUMMARY] is None:  # listed, but gone from the site: not kept
                continue
            site.summary(f"runs/{run_id}/{SUMMARY}")  # a summary, or a one-line error
            _write_run(site_dir, run_id, {k: v for k, v in files.items() if v is not None})
        found.append(e)
    return found


def publish(run_dir: str, site_dir: str, source: str | None = None, keep: int = 0,
            limits: FetchLimits | None = None) -> list[dict[str, Any]]:
    """Add ``run_dir``'s report to the site directory ``site_dir`` (after mirroring the
    runs ``source`` lists, when given) and return the index's entries, newest first.

    Publishing a run again replaces it; ``keep`` > 0 keeps only the newest ``keep`` runs
    (the older runs' directories are removed).  The front page is the newest run's page.
    """
    summary = Site(run_dir, run_dir).summary(SUMMARY)
    if summary is None:
        raise UserError(f"{run_dir}: no summary.json; build the report first: harness "
                        f"report {run_dir}")
    run_id = str((summary.get("run") or {}).get("run_id") or "")
    if not RUN_ID.match(run_id):
        raise UserError(f"{run_dir}: run id {run_id!r} cannot name a directory of the "
                        "site; run again with --run-id NAME (letters, digits, ._+-)")
    files = _run_files(run_dir)
    _check_paths(run_dir, site_dir, files)
    os.makedirs(os.path.join(site_dir, "runs"), exist_ok=True)
    local = Site(site_dir, f"--site {site_dir}").runs() or []
    entries = {e["run_id"]: e for e in local
               if os.path.isfile(os.path.join(site_dir, "runs", e["run_id"], SUMMARY))}
    if source:
        entries.update({e["run_id"]: e for e in _mirror(source, site_dir, keep, run_id,
                                                          limits)})
    _write_run(site_dir, run_id, files)
    entries[run_id] = entry(summary)
    ordered = sorted(entries.values(), reverse=True,
                     key=lambda e: (str(e.get("started_at") or ""), e["run_id"]))
    kept = ordered[:keep] if keep > 0 else ordered
    for e in ordered[len(kept):]:
        shutil.rmtree(os.path.join(site_dir, "runs", e["run_id"]), ignore_errors=True)
    write_json(os.path.join(site_dir, *INDEX.split("/")),
               {"schema_version": SCHEMA_VERSION, "runs": kept}, indent=1, sort_keys=True)
    front = os.path.join(site_dir, "runs", kept[0]["run_id"], "index.html")
    if os.path.isfile(front):
        shutil.copyfile(front, os.path.join(site_dir, "index.html"))
    return kept
