"""The pipeline, one step after another:

load → validate → expand → provision → create → consume → collect → report

(the consume stage runs with the hub server serving the model store: handle cases)

Each step is a typed function of the previous results; ``execute`` runs them in
order.  An environment that cannot be provisioned becomes ``env_error`` records
and the run goes on; every record is on disk as soon as its case finishes.
"""
from __future__ import annotations

import calendar
import contextlib
import dataclasses
import fcntl
import glob
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import config, registry
from .backends import REPORTED_PACKAGES, Provisioned, ProvisionError, get_backend
from .config import Matrix
from .errors import UserError
from .expand import REPRO, EnvRun, expand, parse_case_id, reference_producers
from .hubserver import HubServer
from .interrupts import interrupted_by
from .jsonio import write_json
from .report import keep_reason, problems, write_reports
from .report.completeness import (
    RUN_FILE,
    is_placeholder,
    planned_stage,
    read_run_file,
    write_run_file,
)
from .runtime.cases import case_id
from .stages import RunPaths, StageResult, interrupt_all, read_records, run_stage
from .usermodels import is_url, user_model
from .wheel import PROJECT_ROOT, build_wheel


def log(message: str) -> None:
    print(f"tfhub-compat: {message}", flush=True)


@dataclass
class Options:
    matrix: str = "matrix.yaml"
    envs: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    case: str | None = None
    run_id: str | None = None
    models: tuple[str, ...] = ()  # --model PATH_OR_URL: check these instead of the fixtures
    model_format: str = "auto"
    model_inputs: str | None = None
    resume: str | None = None  # --resume RUN_ID (or its directory): continue a killed run
    stage: str | None = None  # --stage create|consume: one shard of a sharded run
    out: str | None = None  # --out DIR: where that shard writes (instead of reports/<run-id>)
    stores: tuple[str, ...] = ()  # --store DIR...: the create shards a consume shard reads

    def saved(self) -> dict[str, Any]:
        """What run.json keeps of the options, to resume the run with them (from any
        directory: local paths absolute)."""
        out = {k: list(v) if isinstance(v, tuple) else v
               for k, v in dataclasses.asdict(self).items() if k not in ("resume", "run_id")}
        out["models"] = [m if is_url(m) else os.path.abspath(m) for m in self.models]
        out["stores"] = [os.path.abspath(d) for d in self.stores]
        if self.out:
            out["out"] = os.path.abspath(self.out)
        if self.model_inputs:
            out["model_inputs"] = os.path.abspath(self.model_inputs)
        return out


@dataclass
class Selection:
    """Which env runs take part in each stage, and which case ids (None: all)."""

    create: list[EnvRun]
    consume: list[EnvRun]
    create_ids: list[str] | None = None
    consume_ids: list[str] | None = None


@dataclass
class Run:
    matrix: Matrix
    selection: Selection
    run_id: str
    paths: RunPaths
    started: float = field(default_factory=time.time)
    provisioned: dict[str, Provisioned | ProvisionError] = field(default_factory=dict)
    stages: list[StageResult] = field(default_factory=list)
    references: dict[str, list[str]] = field(default_factory=dict)
    repro: str = REPRO
    hub_url: str | None = None  # the hub server serving this run's store (consume stage)
    options: Options = field(default_factory=Options)


def execute(options: Options) -> int:
    if options.stage:
        return shard(options)
    if options.resume:
        run = resume(options)
    else:
        matrix = load(options)
        run = start(matrix, select(matrix, options), options)
    provision(run)
    try:
        stage(run, "create", run.selection.create, run.selection.create_ids)
        choose_references(run, read_records(run.paths.records, "create"))
        with serve_store(run):
            stage(run, "consume", run.selection.consume, run.selection.consume_ids)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP: exit 128 + the signal
        why, status = interrupted_by(exc)
        interrupt_all(why)
        mark_interrupted(run, why)
        log(f"interrupted ({why}): writing the report of what was measured so far")
        report(run, collect(run))
        return status
    return report(run, collect(run))


def shard(options: Options) -> int:
    """``--stage create|consume --out DIR``: one job of a sharded run (README "Nightly CI").

    It provisions its envs and runs that one stage into DIR: records, plans, logs, JUnit
    XML, ``envs.json`` and (create) the models in ``store/``.  A consume shard first
    gathers the models of every ``--store`` directory (create shards' ``--out``) into its
    own store and serves them.  No report: ``harness merge`` builds one from all shards.
    Exit 0 when the stage ran (its outcomes are data; a shard that could not run leaves
    its cases without records, and the merge turns them into ``crashed`` records).
    """
    matrix = load(options)
    runs = expand(matrix, options.envs, options.modes)
    create = options.stage == "create"
    sources = [] if create else [shard_dir(d, "--store") for d in options.stores]
    run = start(matrix, Selection(runs if create else [], [] if create else runs), options)
    try:
        if not create:
            gather_stores(sources, run.paths.store)
            choose_references(run, [r for d in sources
                                    for r in read_records(os.path.join(d, "records"), "create")])
        provision(run)
        if create:
            stage(run, "create", runs, None)
        else:
            with serve_store(run):
                stage(run, "consume", runs, None)
    except KeyboardInterrupt as exc:
        why, status = interrupted_by(exc)
        interrupt_all(why)
        mark_interrupted(run, why)
        log(f"interrupted ({why}): {run.paths.root} keeps the records written so far")
        return status
    finally:
        if not create:  # the gathered models are the create shards' own: not kept twice
            shutil.rmtree(run.paths.store, ignore_errors=True)
    counts = sum((r.counts for r in run.stages), Counter())
    log(f"{options.stage} shard {', '.join(r.key for r in runs)}: "
        + (", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no cases")
        + f"; wrote {run.paths.root}")
    return 0


def shard_dir(path: str, flag: str) -> str:
    """A shard's ``--out`` directory (``run.json`` and ``records/``), or a one-line error."""
    if not os.path.isfile(os.path.join(path, RUN_FILE)) or \
            not os.path.isdir(os.path.join(path, "records")):
        raise UserError(f"{flag} {path}: not a shard's directory (no run.json and records/); "
                        "give the --out directory of a `harness run --stage` job")
    return path


def gather_stores(sources: list[str], store: str) -> None:
    """Every create shard's models (``store/<env>/<mode>/``) into ``store``, hard-linked
    where the file system allows; two shards holding the same env x mode is an error."""
    seen: dict[str, str] = {}
    for source in sources:
        root = os.path.join(source, "store")
        for key in sorted(glob.glob(os.path.join(root, "*", "*"))):
            producer = os.path.relpath(key, root)
            if producer in seen:
                raise UserError(f"--store {source}: models of {producer} are also in "
                                f"--store {seen[producer]}; give each create shard once")
            seen[producer] = source
            shutil.copytree(key, os.path.join(store, producer), copy_function=_link_or_copy)
    log(f"store: models of {len(seen)} env x mode from {len(sources)} shard(s) in {store}")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def load(options: Options) -> Matrix:
    """load + validate: a bad matrix.yaml raises ConfigError (one line, exit 2).

    ``--model`` replaces the matrix's models with the user's (checked here: a
    model that cannot be read is a one-line error before anything runs; a URL is
    fetched under the matrix's ``settings.fetch``). An unusable ``reports_dir`` or
    ``envs_dir`` is a one-line error here too.
    """
    matrix = config.load(options.matrix)
    config.check_dirs(matrix, options.matrix)
    if not options.models:
        return matrix
    models: list[config.Model] = []
    for handle in options.models:
        spec = user_model(handle, options.model_format, options.model_inputs,
                          where=f"--model {handle}", fetch=matrix.settings.fetch)
        name, n = spec["name"], 2
        while any(m.name == spec["name"] for m in models):
            spec["name"], n = f"{name}-{n}", n + 1
        models.append(config.Model(spec["name"], spec["handle"], spec))
    return dataclasses.replace(matrix, models=tuple(models))


def select(matrix: Matrix, options: Options) -> Selection:
    """expand: every env x mode (narrowed by --env/--mode), or just what --case needs."""
    if not options.case:
        runs = expand(matrix, options.envs, options.modes)
        return Selection(runs, runs)
    case = parse_case_id(options.case)
    consumer = expand(matrix, (case.env_id,), (case.mode,))
    if case.operation == "create":
        return Selection(consumer, [], [options.case], [])
    create_ids = [case_id(case.producer_env, case.producer_mode, case.format, "create", v.api,
                          case.model, case.producer_env, case.producer_mode)
                  for v in registry.variants()
                  if v.format == case.format and v.operation == "create"]
    producer = expand(matrix, (case.producer_env,), (case.producer_mode,))
    return Selection(producer, consumer, create_ids, [options.case])


def start(matrix: Matrix, selection: Selection, options: Options) -> Run:
    run_id = options.run_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    root = options.out or os.path.join(matrix.settings.reports_dir, run_id)
    if options.out and os.path.exists(os.path.join(root, "records")):
        raise UserError(f"--out {root}: it already holds a run's records; give an empty or "
                        "new directory")
    if os.path.exists(os.path.join(root, "records")):
        raise UserError(f"{root}: run {run_id} already exists; continue it with --resume "
                        f"{run_id}, pick another --run-id or delete that directory")
    os.makedirs(root, exist_ok=True)
    log(f"run {run_id}: {len(set(selection.create + selection.consume))} env x mode, "
        f"reports in {root}")
    _lock_run(root, run_id)
    run = Run(matrix, selection, run_id, RunPaths(root), repro=repro_of(options),
              options=options)
    write_run_file(root, run_file(run))
    return run


def repro_of(options: Options) -> str:
    """The command that re-runs one case of this run: every flag it needs (the matrix, the
    user's models) and ``{case_id}``."""
    flags = [] if options.matrix == "matrix.yaml" else [f"--matrix {shlex.quote(options.matrix)}"]
    flags += [f"--model {shlex.quote(m)}" for m in options.models]
    if options.models and options.model_format != "auto":
        flags.append(f"--model-format {options.model_format}")
    if options.models and options.model_inputs:
        flags.append(f"--model-inputs {shlex.quote(options.model_inputs)}")
    given = " ".join(flags + ["--case"]).replace("{", "{{").replace("}", "}}")  # a template
    return REPRO.replace("--case", given)


def resume(options: Options) -> Run:
    """``--resume RUN_ID``: the run as it was planned (its own options, from run.json), with
    every record it has; its stages then run only the cases without one."""
    root = options.resume or ""
    if not os.path.isfile(os.path.join(root, RUN_FILE)):
        root = os.path.join(config.load(options.matrix)
                            .settings.reports_dir, root)
    data = read_run_file(root)
    if data is None:
        raise UserError(f"--resume {options.resume}: {root} holds no run.json; give the id "
                        "of a run under the reports directory (or its directory)")
    if not isinstance(data.get("options"), dict):
        raise UserError(f"--resume {options.resume}: run {data.get('run_id')} was started by "
                        "an older harness that did not save its options; start a new run")
    known = {f.name for f in dataclasses.fields(Options)} - {"resume", "run_id"}
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in data["options"].items() if k in known}
    try:
        run_id = str(data["run_id"])
        saved = Options(**values, run_id=run_id)
        started = calendar.timegm(time.strptime(str(data["started_at"]),
                                                "%Y-%m-%dT%H:%M:%SZ"))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"--resume {options.resume}: {root}/{RUN_FILE} is damaged "
                        f"({type(exc).__name__}: {exc}); start a new run")
    saved.matrix = str(data.get("matrix") or saved.matrix)  # the one the run was planned with
    matrix = load(saved)
    selection = select(matrix, saved)
    _lock_run(root, run_id)
    run = Run(matrix, selection, run_id, RunPaths(root), repro=str(data.get("repro") or REPRO),
              options=saved)
    planned = [(s["prefix"], s.get("select")) for s in run_file(run)["stages"]]
    if planned != [(s.get("prefix"), s.get("select")) for s in data.get("stages", [])]:
        raise UserError(f"--resume {run_id}: {matrix.path} no longer plans the stages this "
                        "run planned (its envs or modes changed); start a new run")
    run.started = started
    dropped = drop_placeholders(run.paths.records)
    data.update(interrupted=False, interrupted_by=None,
                resumed_at=list(data.get("resumed_at") or []) + [_iso(time.time())])
    write_run_file(root, data)
    log(f"run {run_id}: resumed; {len(read_records(run.paths.records))} cases recorded are "
        f"kept ({dropped} placeholders of an interrupted run dropped), the rest run now")
    return run


def drop_placeholders(records_dir: str) -> int:
    """Remove the host's records of cases an interrupted run never ran (and lines cut by a
    killed process): those cases run again. Returns how many placeholders were dropped."""
    dropped = 0
    for path in glob.glob(os.path.join(records_dir, "*.host.jsonl")):
        kept = []
        with open(path) as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if is_placeholder(rec):
                    dropped += 1
                else:
                    kept.append(line if line.endswith("\n") else line + "\n")
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.writelines(kept)
        os.replace(tmp, path)
    return dropped


_locks: dict[str, Any] = {}  # run dir -> its open run.lock, held while this process lives


def _lock_run(root: str, run_id: str) -> Any:
    """Hold ``run.lock`` for this process's life: a run resumed (or started) twice at once
    is refused, one line."""
    fh = _locks.get(os.path.abspath(root)) or open(os.path.join(root, "run.lock"), "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise UserError(f"{root}: run {run_id} is running in another process; wait for it "
                        "or stop it first")
    _locks[os.path.abspath(root)] = fh
    return fh


def run_file(run: Run) -> dict[str, Any]:
    """``run.json``: what this run plans to do, written before anything runs, so a report
    of a run that never finished can tell which cases are missing."""
    sel = run.selection
    return {"schema_version": 1, "run_id": run.run_id, "matrix": run.matrix.path,
            "started_at": _iso(run.started), "interrupted": False, "host": platform.node(),
            "options": run.options.saved(), "repro": run.repro,
            "models": [{"name": m.name, "spec": m.spec} for m in run.matrix.models],
            "stages": [planned_stage("create", r, sel.create_ids) for r in sel.create]
            + [planned_stage("consume", r, sel.consume_ids) for r in sel.consume]}


def mark_interrupted(run: Run, why: str) -> None:
    """Ctrl-C, SIGTERM or SIGHUP (``why``): run.json says so (the run is not complete,
    whatever was recorded)."""
    data = read_run_file(run.paths.root) or run_file(run)
    data.update(interrupted=True, interrupted_by=why)
    write_run_file(run.paths.root, data)


def provision(run: Run) -> None:
    """Make (or reuse) every environment the selection needs; failures are kept, not raised."""
    wheel, wheel_id = build_wheel(os.path.join(run.matrix.settings.envs_dir, ".wheels"))
    needed = {r.env.id: r.env for r in run.selection.create + run.selection.consume}
    for env in needed.values():
        backend = get_backend(env.backend, envs_dir=run.matrix.settings.envs_dir,
                              wheel=wheel, wheel_id=wheel_id, log=log,
                              python_downloads=run.matrix.settings.python_downloads)
        try:
            prov = backend.provision(env)
            state = "new" if prov.created else "reused"
            log(f"env {env.id}: {state} ({prov.seconds:.1f}s) tensorflow "
                f"{prov.versions.get('tensorflow') or prov.versions.get('tensorflow-cpu')}, "
                f"tensorflow-hub {prov.versions.get('tensorflow-hub')}")
            run.provisioned[env.id] = prov
        except ProvisionError as exc:
            log(f"env {env.id}: NOT PROVISIONED: {exc}")
            run.provisioned[env.id] = exc
    write_envs(run)


def stage(run: Run, name: str, runs: list[EnvRun], select_ids: list[str] | None) -> None:
    """CREATE or CONSUME: one pytest process per env x mode, ``settings.parallel`` at once."""

    def one(env_run: EnvRun) -> StageResult:
        result = run_stage(run.matrix, env_run, name, run.provisioned[env_run.env.id],
                           run.paths, run.run_id, select_ids,
                           {"references": run.references, "repro": run.repro,
                            "hub_url": run.hub_url})
        counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts.items())) or "no cases"
        log(f"[{name}] {env_run.key}: {counts} ({result.seconds:.1f}s)")
        return result

    pool = ThreadPoolExecutor(max_workers=run.matrix.settings.parallel)
    try:
        run.stages.extend(pool.map(one, runs))
    except KeyboardInterrupt as exc:
        # the stage threads see their processes die and record what is missing
        interrupt_all(interrupted_by(exc)[0])
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def serve_store(run: Run) -> Iterator[None]:
    """The hub server over this run's model store, for the consume stage's handle cases.

    Faults are enabled (the cases ask for them per request); every request is logged
    to ``reports/<run-id>/hubserver.jsonl`` as it finishes. Its archives are built in
    ``reports/<run-id>/tmp/hubserver`` (removed after; a killed run leaves nothing in the
    system's temporary directory).
    """
    os.makedirs(run.paths.store, exist_ok=True)
    cache = run.paths.sub(os.path.join("tmp", "hubserver"))
    try:
        with HubServer(store=run.paths.store, faults=True, instrument=True, cache_dir=cache,
                       log_path=os.path.join(run.paths.root, "hubserver.jsonl")) as server:
            run.hub_url = server.url
            data = read_run_file(run.paths.root) or run_file(run)  # (the report hides it)
            data["hub_urls"] = list(data.get("hub_urls") or []) + [server.url]
            write_run_file(run.paths.root, data)
            log(f"hub server: {server.url}/ serves {run.paths.store}")
            try:
                yield
            finally:
                run.hub_url = None
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def choose_references(run: Run, create_records: list[dict]) -> None:
    """A user's model is compared everywhere with the first env x mode (matrix order) whose
    create stage (``create_records``) imported it."""
    users = _user_models(run)
    if not users:
        return
    run.references.update(reference_producers(create_records, users,
                                              [r.key for r in expand(run.matrix)]))
    for name in sorted(users):
        ref = run.references.get(name)
        log(f"model {name}: " + (f"reference outputs from {ref[0]}/{ref[1]}" if ref else
                                 "no environment could import it; nothing to compare"))


def _user_models(run: Run) -> set[str]:
    return {m.name for m in run.matrix.models if m.spec.get("kind") == "user"}


def collect(run: Run) -> list[dict]:
    return read_records(run.paths.records)


def report(run: Run, records: list[dict], envs: dict[str, Any] | None = None,
           baseline: str | None = "auto", history: str | None = None,
           extra: dict[str, Any] | None = None) -> int:
    """Write the run's reports (``envs``: its env metadata, default: what it provisioned;
    ``baseline``/``history``: as ``write_reports`` takes them; ``extra``: more of
    summary.json's ``run``); the run's exit status."""
    finished = time.time()
    meta = {"run_id": run.run_id, "started_at": _iso(run.started), "finished_at": _iso(finished),
            "duration_s": round(finished - run.started, 1), "git_commit": _git_commit(),
            "host": platform.node(), "host_python": platform.python_version(),
            "matrix": run.matrix.path, "argv": sys.argv[1:], "references": run.references,
            "tolerance": {"atol": run.matrix.settings.atol, "rtol": run.matrix.settings.rtol},
            **(extra or {})}
    # a --case repro (or a run older than the newest complete one) leaves latest/ alone
    keep = keep_reason(run.paths.root, run.matrix.settings.reports_dir, _iso(run.started),
                       read_run_file(run.paths.root))
    if os.path.realpath(os.path.dirname(os.path.abspath(run.paths.root))) != \
            os.path.realpath(run.matrix.settings.reports_dir):
        keep = keep or "written outside the reports directory (--out)"
    # history and the changes since the previous run: informational, never the exit status
    summary = write_reports(run.paths.root, records, run.matrix, meta,
                            env_metadata(run) if envs is None else envs, baseline=baseline,
                            reports_dir=run.matrix.settings.reports_dir,
                            replace_latest=keep is None, history=history)
    from .report.markdown import render
    print(render(summary))
    state = summary["run"]
    latest = os.path.join(run.matrix.settings.reports_dir, "latest")
    log(f"{len(records)} cases in {meta['duration_s']:.0f}s; wrote {run.paths.root}"
        + (f" ({latest} not replaced)" if not state["complete"] else
           f" ({latest} not replaced: {keep})" if keep else f" and {latest}"))
    if summary.get("changes"):
        n = summary["changes"]["counts"]
        log(f"changes since run {summary['changes']['baseline']['run_id']}: "
            f"{n['cell_regressions']} cell regressions, {n['cell_fixes']} cell fixes, "
            f"{n['regressions']} case regressions, {n['fixes']} fixes, {n['changed']} other")
    return exit_status(run, records, summary)


def exit_status(run: Run, records: list[dict], summary: dict[str, Any]) -> int:
    """0 when the run completed; 1 (each reason logged on one line) on any of the report's
    ``problems`` or when a ``--model`` run imported none of the user's models."""
    errors = problems(summary)
    users = _user_models(run)
    tried = any(r["operation"] == "create" and r["model"] in users for r in records)
    if tried and not run.references:  # (a --case repro may plan no import at all)
        errors.append(f"no environment could import any of your models "
                      f"({', '.join(sorted(users))}): nothing was compared; see the import "
                      "cases in the report")
    for error in errors:
        log(f"error: {error}")
    return 1 if errors else 0


ENVS_FILE = "envs.json"  # env metadata of a run or shard: what a report of its records shows


def write_envs(run: Run) -> None:
    """``envs.json``: the provisioned envs (versions, provisioning), so that ``harness report``
    and ``harness merge`` show them from the files alone."""
    os.makedirs(run.paths.root, exist_ok=True)
    write_json(os.path.join(run.paths.root, ENVS_FILE), env_metadata(run), indent=2,
               sort_keys=True)


def env_metadata(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for env_id, prov in run.provisioned.items():
        env = run.matrix.env(env_id)
        info: dict[str, Any] = {
            "python": env.python, "packages": list(env.packages), "modes": list(env.modes),
            "env_vars": dict(env.env_vars), "backend": env.backend, "device": env.device,
            "description": env.description, "release": env.release or None,
            "flavour": env.flavour or None}
        if isinstance(prov, ProvisionError):
            info.update(provisioned="error", error=str(prov), versions={})
        else:
            info.update(provisioned="new" if prov.created else "reused",
                        provision_s=round(prov.seconds, 1), location=prov.location,
                        versions={k: v for k, v in prov.versions.items()
                                  if k in REPORTED_PACKAGES or k == "python"})
        out[env_id] = info
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", PROJECT_ROOT, "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
