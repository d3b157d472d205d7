"""``harness``: run the matrix, validate it, print the plan, rebuild a report.

User errors (bad matrix.yaml, unknown env, bad case id) are one line on stderr
and exit code 2; bugs keep their traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import EXIT_USER_ERROR, UserError
from .interrupts import interrupted_by, stop_on_signals


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split(",") if v)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="provision, create, consume, report (the default)")
    _matrix_arg(run)
    run.add_argument("--env", action="append", default=[], metavar="ID[,ID]",
                     help="only these envs (repeatable)")
    run.add_argument("--mode", action="append", default=[], metavar="MODE[,MODE]",
                     help="only these modes: tf1, compat, tf2 (repeatable)")
    run.add_argument("--case", metavar="CASE_ID",
                     help="re-run exactly this case (and the create case it consumes)")
    run.add_argument("--run-id", help="name of reports/<run-id>/ (default: UTC time)")
    run.add_argument("--resume", metavar="RUN_ID",
                     help="continue a run that was killed or interrupted: keep its records "
                          "and run only the cases that have none (with the run's own "
                          "selection; a run id under the reports directory, or its directory)")
    run.add_argument("--model", action="append", default=[], metavar="PATH_OR_URL",
                     help="check your own model (a directory or a hosting-protocol URL) "
                          "instead of the built-in fixtures (repeatable)")
    run.add_argument("--model-format", default="auto",
                     choices=("auto", "tf1_hub", "saved_model", "keras_saved_model"),
                     help="format of --model (default: detected from its files)")
    run.add_argument("--model-inputs", metavar="INPUTS.npz",
                     help="inputs for --model by input name (default: made from its "
                          "signatures' shapes and dtypes)")
    run.add_argument("--stage", choices=("create", "consume"),
                     help="run one stage only, as one shard of a sharded run (CI): needs "
                          "--out; consume needs --store (README \"Nightly CI\")")
    run.add_argument("--out", metavar="DIR",
                     help="with --stage: the shard's directory (records, store, envs.json, "
                          "logs, junit/) instead of reports/<run-id>/")
    run.add_argument("--store", action="extend", nargs="+", default=[], metavar="DIR",
                     help="with --stage consume: the create shards' --out directories, whose "
                          "models this shard consumes (every producer: give them all)")
    mrg = sub.add_parser("merge", help="build one run (records and reports) from the "
                                       "directories of sharded --stage jobs")
    _matrix_arg(mrg)
    mrg.add_argument("shards", nargs="+", metavar="DIR", help="shard --out directories")
    mrg.add_argument("--out", required=True, metavar="RUN_DIR",
                     help="the merged run's directory (must not hold records yet)")
    mrg.add_argument("--run-id", help="the merged run's id (default: the shards' common "
                                      "--run-id, else UTC time)")
    mrg.add_argument("--baseline", metavar="PATH|last|URL",
                     help="compare with this earlier run, or the newest run of a published "
                          "site (default: the newest earlier run under the reports "
                          "directory, if any)")
    mrg.add_argument("--history", metavar="PATH|URL",
                     help="earlier runs for the history: a published site (URL or "
                          "directory) or a reports directory (default: the reports "
                          "directory)")
    val = sub.add_parser("validate", help="check matrix.yaml and exit")
    _matrix_arg(val)
    plan = sub.add_parser("plan", help="print the env x mode jobs of each stage (--json: "
                                       "the GitHub Actions matrices)")
    _matrix_arg(plan)
    plan.add_argument("--json", action="store_true",
                      help="one JSON object: create and consume {include: [...]} and counts")
    plan.add_argument("--github-output", metavar="FILE",
                      help="also append create=, consume= and matrix= lines to FILE "
                           "($GITHUB_OUTPUT)")
    cov = sub.add_parser("coverage", help="write docs/coverage.md: the documents' claims -> "
                                          "case variants (docs/claims.yaml)")
    cov.add_argument("--check", action="store_true",
                     help="only check that every claim and variant is mapped and the file "
                          "is current")
    rep = sub.add_parser("report", help="rebuild summary.json, compat.md and index.html from "
                                        "a run's records, with the changes since a baseline")
    _matrix_arg(rep)
    rep.add_argument("run_dir", help="reports/<run-id>")
    rep.add_argument("--baseline", metavar="PATH|last|URL",
                     help="compare with this earlier run (its directory or summary.json; "
                          "case level when its results.jsonl is next to it), 'last': the "
                          "most recent earlier run under the same reports directory, or a "
                          "published site (harness publish): its URL or directory, whose "
                          "newest earlier run is the baseline (none yet: no changes), or "
                          "the URL of one of its runs (.../runs/RUN_ID/)")
    rep.add_argument("--history", metavar="PATH|URL",
                     help="earlier runs for the history from a published site (its URL or "
                          "directory: runs/index.json, the last 30 runs) or another reports "
                          "directory (default: the run's reports directory)")
    rep.add_argument("--fail-on", choices=("regression", "never"), default="never",
                     help="exit 1 when a cell or a case regressed against --baseline "
                          "(default: never)")
    bis = sub.add_parser("bisect", help="find the first release at which a case's outcome "
                                        "changes (provisions only the envs probed)")
    _matrix_arg(bis)
    bis.add_argument("case_id", help="a case id of a run of a matrix with a releases: "
                                     "table (e.g. matrices/versions.yaml)")
    bis.add_argument("--axis", choices=("tensorflow", "tensorflow_hub"), default="tensorflow",
                     help="what varies: the TF release (same flavour) or the tensorflow_hub "
                          "pin (same release) (default: tensorflow)")
    bis.add_argument("--side", choices=("consumer", "producer"), default="consumer",
                     help="which env of the case varies (default: consumer)")
    srv = sub.add_parser("serve", help="serve models over the TF Hub hosting protocol "
                                       "(hub.load(url) of a local server) until Ctrl-C or "
                                       "SIGTERM (exit 0)")
    srv.add_argument("--store", metavar="DIR",
                     help="model store served at / (default: the last run's, reports/<run>/store)")
    srv.add_argument("--dir", action="append", default=[], metavar="NAME=PATH",
                     help="also serve PATH (a model or a directory of models) at /NAME/ "
                          "(repeatable)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on "
                                                         "(default: 127.0.0.1)")
    srv.add_argument("--port", default="0", help="port (default: 0, any free port)")
    srv.add_argument("--cache", metavar="DIR",
                     help="where built archives are kept (default: a temporary directory)")
    srv.add_argument("--faults", action="store_true",
                     help="honour ?fault=404|not-tar|truncated|nested|symlink|slow")
    srv.add_argument("--log", metavar="FILE", help="append every request as a JSON line")
    srv.add_argument("--instrument", action="store_true",
                     help="as a harness run's server: /_harness/requests|models|health and "
                          "local paths (the uncompressed answer), to loopback clients only "
                          "(default: off, as a mirror: those are 404)")
    srv.add_argument("--workers", metavar="N",
                     help="threads answering requests (default: 32)")
    srv.add_argument("--max-connections", metavar="N",
                     help="open connections at most; a further one is answered 503 with "
                          "Retry-After (default: 256)")
    srv.add_argument("--header-timeout", metavar="S",
                     help="seconds a request head may take to arrive, and an idle "
                          "keep-alive connection may wait (default: 5)")
    srv.add_argument("--send-timeout", metavar="S",
                     help="a client that takes no bytes of its answer for S seconds is "
                          "dropped (default: 30)")
    pub = sub.add_parser("publish", help="add a run's report to a site directory: "
                                         "runs/RUN_ID/, runs/index.json, index.html")
    pub.add_argument("run_dir", help="a run directory with its report (reports/<run-id>)")
    pub.add_argument("--site", required=True, metavar="DIR",
                     help="the site directory (created when missing)")
    pub.add_argument("--from", dest="source", metavar="URL",
                     help="first copy every run the live site at URL lists into DIR (a "
                          "deploy replaces the whole site); none listed yet: a first run")
    pub.add_argument("--keep-history", type=int, default=0, metavar="N",
                     help="keep only the newest N runs (default: 0, every run)")
    return p


def _matrix_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matrix", default="matrix.yaml", help="matrix file (default: matrix.yaml)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv.insert(0, "run")
    args = parser().parse_args(argv)
    try:
        with stop_on_signals():  # SIGTERM and SIGHUP stop a run as Ctrl-C does
            return _dispatch(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        print("interrupted: records written so far are kept under reports/", file=sys.stderr)
        return interrupted_by(exc)[1]


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from .hubserver import serve_command
        return serve_command(args)
    from . import config
    if args.command == "validate":
        matrix = config.load(args.matrix)
        config.check_dirs(matrix, args.matrix)
        for warning in config.unprovisionable(matrix, args.matrix):  # the other envs run
            print(f"warning: {warning}", file=sys.stderr)
        runs = sum(len(e.modes) for e in matrix.envs)
        print(f"{args.matrix}: ok ({len(matrix.envs)} envs, {runs} env x mode, "
              f"{len(matrix.expectations)} expectations)")
        return 0
    if args.command == "plan":
        from .expand import ci_plan
        plan = ci_plan(config.load(args.matrix), args.matrix)
        if args.github_output:
            with open(args.github_output, "a") as fh:
                for key in ("create", "consume"):
                    fh.write(f"{key}={json.dumps(plan[key], separators=(',', ':'))}\n")
                fh.write(f"matrix={args.matrix}\n")
        if args.json:
            print(json.dumps(plan, indent=2, allow_nan=False))
        else:
            for key in ("create", "consume"):
                for job in plan[key]["include"]:
                    print(f"{job['name']:<48} python {job['python']:<5} artifact "
                          f"{job['artifact']}")
            print(f"{plan['jobs']['create']} create + {plan['jobs']['consume']} consume jobs")
        return 0
    if args.command == "merge":
        from .merge import merge
        return merge(args.shards, args.out, args.matrix, args.run_id,
                     args.baseline or "auto", args.history)
    if args.command == "report":
        return _report(args)
    if args.command == "publish":
        from .report.site import publish
        if args.keep_history < 0:
            raise UserError(f"--keep-history {args.keep_history}: give a number of runs "
                            "(0: keep every run)")
        kept = publish(args.run_dir, args.site, args.source, args.keep_history)
        print(f"{args.site}: {len(kept)} runs, newest {kept[0]['run_id']} (index.html)")
        return 0
    if args.command == "bisect":
        from .bisect import bisect, describe
        print(describe(bisect(args.case_id, args.matrix, args.axis, args.side)))
        return 0
    if args.command == "coverage":
        from .coverage import main as coverage
        return coverage(args.check)
    from .pipeline import Options, execute
    _check_stage_flags(args)
    if args.resume:
        given = [flag for flag, value in (("--env", args.env), ("--mode", args.mode),
                                          ("--case", args.case), ("--run-id", args.run_id),
                                          ("--model", args.model)) if value]
        if given:
            raise UserError(f"--resume {args.resume} continues the run with its own "
                            f"selection; drop {', '.join(given)}")
        return execute(Options(matrix=args.matrix, resume=args.resume))
    return execute(Options(matrix=args.matrix,
                           envs=tuple(e for v in args.env for e in _csv(v)),
                           modes=tuple(m for v in args.mode for m in _csv(v)),
                           case=args.case, run_id=args.run_id, models=tuple(args.model),
                           model_format=args.model_format, model_inputs=args.model_inputs,
                           stage=args.stage, out=args.out and os.path.abspath(args.out),
                           stores=tuple(os.path.abspath(d) for d in args.store)))


def _check_stage_flags(args: argparse.Namespace) -> None:
    """--stage, --out and --store go together (one line, exit 2 otherwise)."""
    if args.stage and (args.case or args.resume):
        raise UserError(f"--stage {args.stage} runs a shard of the whole selection; drop "
                        + ("--case" if args.case else "--resume"))
    if args.stage and not args.out:
        raise UserError(f"--stage {args.stage} needs --out DIR: the shard's directory")
    if args.out and not args.stage:
        raise UserError("--out is for one shard: add --stage create or --stage consume")
    if args.store and args.stage != "consume":
        raise UserError("--store is for --stage consume: the create shards it reads")
    if args.stage == "consume" and not args.store:
        raise UserError("--stage consume needs --store DIR...: the create shards' --out "
                        "directories (every producer's models)")


def _report(args: argparse.Namespace) -> int:
    from . import config
    from .report import keep_reason, problems, write_reports
    from .report.completeness import read_run_file
    from .report.diff import regressions
    from .report.markdown import render
    from .stages import read_records
    if args.fail_on == "regression" and not args.baseline:
        raise UserError("--fail-on regression needs a run to compare with; add "
                        "--baseline PATH or --baseline last")
    matrix = config.load(args.matrix)
    records_dir = os.path.join(args.run_dir, "records")
    if not os.path.isdir(records_dir):
        raise UserError(f"{args.run_dir}: no records/ directory; pass a reports/<run-id> "
                        "directory written by `harness run`")
    records = read_records(records_dir)
    old = {}
    try:
        with open(os.path.join(args.run_dir, "summary.json")) as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        pass
    planned = read_run_file(args.run_dir) or {}
    run = old.get("run") or {k: planned[k] for k in ("run_id", "started_at", "matrix")
                             if planned.get(k)}
    run.setdefault("run_id", os.path.basename(os.path.abspath(args.run_dir)))
    # an older run (or a --case repro) rebuilt leaves reports/latest to the newest run
    keep = keep_reason(args.run_dir, os.path.dirname(os.path.abspath(args.run_dir)),
                       run.get("started_at"), planned)
    envs = old.get("envs", {})
    try:  # the envs as provisioned (a merged or older run may only have its summary's)
        with open(os.path.join(args.run_dir, "envs.json")) as fh:
            envs = json.load(fh)
    except (OSError, ValueError):
        pass
    summary = write_reports(args.run_dir, records, matrix, run, envs,
                            baseline=args.baseline, replace_latest=keep is None,
                            history=args.history)
    print(render(summary))
    status = 0
    if args.fail_on == "regression":
        cells, cases = regressions(summary.get("changes") or {})
        if cells or cases:
            print(f"regressions since run {summary['changes']['baseline']['run_id']}: "
                  f"{cells} cells, {cases} cases (--fail-on regression)", file=sys.stderr)
            status = 1
    for problem in problems(summary):
        print(f"error: run {summary['run']['run_id']}: {problem}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
