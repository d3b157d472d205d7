"""The pytest plugin (``pytest11`` entry point ``tfhub_compat``).

Inert unless ``--tfhub-plan PLAN.json`` is given.  With a plan (one env x mode
x stage, written by the host), it generates one test per case, runs each case
body, translates its end into exactly one outcome, and appends the record to
this worker's JSONL file as soon as the case finishes.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import time
import traceback
from urllib.request import urlopen

import pytest

from . import hookspecs
from .cases import find_variant, plan_cases
from .lifeline import die_with_parent
from .records import (
    ENV_ERROR,
    ERROR,
    FAILED,
    HARNESS_ERROR,
    PASSED,
    TRACEBACK_LINES,
    CheckFailed,
    HarnessFault,
    RecordWriter,
    describe_exception,
    make_record,
    write_json,
)

_PLAN_KEY = "tfhub_compat_plan"


def pytest_addoption(parser):
    group = parser.getgroup("tfhub-compat")
    group.addoption("--tfhub-plan", default=None, metavar="PLAN.json",
                    help="run the cases of this env x mode x stage plan (written by the host)")


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config):
    path = config.getoption("--tfhub-plan")
    if not path:
        return
    die_with_parent()  # the pytest main and each xdist worker: never outlive the run
    with open(path) as fh:
        plan = json.load(fh)
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    plan["_worker"] = worker
    setattr(config, _PLAN_KEY, plan)


def get_plan(config):
    return getattr(config, _PLAN_KEY, None)


def variants_of(config):
    found = []
    for contributed in config.hook.pytest_tfhub_compat_variants():
        found.extend(contributed)
    return found


def pytest_generate_tests(metafunc):
    if "tfhub_case" not in metafunc.fixturenames:
        return
    plan = get_plan(metafunc.config)
    if plan is None:
        raise pytest.UsageError("the tfhub-compat suite needs --tfhub-plan PLAN.json")
    cases = plan_cases(plan, variants_of(metafunc.config))
    metafunc.parametrize("tfhub_case", cases, ids=[c.case_id for c in cases])


def pytest_collection_finish(session):
    """Write the collected case ids once, so the host can tell crashed cases apart."""
    plan = get_plan(session.config)
    if plan is None or plan["_worker"] not in ("main", "gw0"):
        return
    ids = [item.callspec.params["tfhub_case"].case_id for item in session.items
           if hasattr(item, "callspec") and "tfhub_case" in item.callspec.params]
    if not os.path.isdir(plan["results_dir"]):
        os.makedirs(plan["results_dir"])
    path = os.path.join(plan["results_dir"], plan["prefix"] + ".collected.json")
    try:  # a stage started again (or resumed) collects only what is left: keep the rest
        with open(path) as fh:
            before = json.load(fh)
    except (OSError, ValueError):
        before = []
    write_json(path, before + [cid for cid in ids if cid not in set(before)])


@pytest.fixture(scope="session")
def tfhub_runtime(request):
    """Bootstrap TF in the plan's mode once per worker; an import failure is kept, not raised."""
    from .modes import EnvImportError, bootstrap
    plan = get_plan(request.config)
    env = plan["env"]
    try:
        runtime = bootstrap(plan["mode"], device=env.get("device", "cpu"),
                            backend=env.get("backend", "venv"))
    except EnvImportError as exc:
        return exc
    if plan["stage"] == "create":
        try:
            _write_facts(plan, runtime)
        except Exception as exc:  # informational: the stage's cases run without them
            sys.stderr.write("tfhub-compat: no facts of this env x mode: %s: %s\n"
                             % (type(exc).__name__, exc))
    return runtime


def _write_facts(plan, runtime):
    """``<prefix>.facts.<worker>.json``: what is true of the env x mode and cannot fail
    (which Keras, which Keras hub builds on), for the report's environment table."""
    from .formats.environment import facts
    path = os.path.join(plan["results_dir"], "%s.facts.%s.json" % (plan["prefix"],
                                                                    plan["_worker"]))
    write_json(path, dict(facts(runtime), env_id=plan["env"]["id"]), indent=2, sort_keys=True)


@pytest.fixture
def tfhub_run(request, tfhub_runtime):
    plan = get_plan(request.config)
    writer = RecordWriter(os.path.join(
        plan["results_dir"], "%s.%s.jsonl" % (plan["prefix"], plan["_worker"])))
    variants = variants_of(request.config)

    marker = os.path.join(plan["results_dir"], "%s.%s.running.json" % (plan["prefix"],
                                                                        plan["_worker"]))

    def run(case):
        # the host watches this file: a case that outlives case_timeout_s is killed there
        write_json(marker, {"case_id": case.case_id, "pid": os.getpid(),
                            "worker": plan["_worker"], "started_at": time.time()})
        try:
            record = run_case(case, plan, tfhub_runtime, variants)
            writer.write(record)
        finally:
            with contextlib.suppress(OSError):
                os.remove(marker)
        if record["outcome"] != PASSED:
            pytest.fail("%s: %s: %s" % (record["outcome"], record["error_type"],
                                        record["message"]), pytrace=False)

    return run


def run_case(case, plan, runtime, variants):
    """Run one case and return its record: the one place exceptions become outcomes.

    An exception is the library's answer (``error``) only when it came out of the
    variant's ``ctx.under_test()`` region; anywhere else (reading the store, set-up,
    conversions, checks, writing the model) it is the harness's own (``harness_error``,
    with its whole traceback). A by-URL case that failed while the harness's hub server
    was unreachable is ``harness_error`` too: the library was never given its model.
    """
    from .fixtures import load_manifest, spec_for
    from .formats._common import Context
    from .modes import EnvImportError

    started = time.time()
    repro = plan.get("repro", "").format(case_id=shlex.quote(case.case_id))
    base = {"run_id": plan["run_id"], "repro": repro}
    if isinstance(runtime, EnvImportError):
        env = plan["env"]
        return make_record(case, {"device": env.get("device"), "backend": env.get("backend")},
                           outcome=ENV_ERROR, error_type="EnvImportError",
                           message=str(runtime), duration_s=0.0, **base)
    fields = {"outcome": PASSED}
    ctx = None
    try:
        if case.operation == "create" and os.path.exists(case.model_dir):
            shutil.rmtree(case.model_dir)  # left half-written by a run that was killed
        manifest = load_manifest(case) if case.stage == "consume" else None
        spec = manifest["spec"] if manifest else _model_spec(plan, case)
        variant = find_variant(variants, case, (spec or {}).get("kind", "mlp"))
        if variant is None:
            raise HarnessFault("no plugin provides %s" % (case.case_id,))
        ctx = Context(case, runtime, spec_for(spec) if spec else None,
                      plan.get("tolerance", {}), manifest, plan.get("hub_url"))
        if manifest is not None:
            ctx.golden()  # read the producer's goldens before the case body runs
        result = variant.run(ctx) or {}
        fields.update(max_abs_err=result.get("max_abs_err"),
                      max_rel_err=result.get("max_rel_err"),
                      details=result.get("details", {}))
        if case.operation == "create":
            _finish_model(case, runtime, variant, result, plan)
    except CheckFailed as exc:
        fields.update(outcome=FAILED, error_type="CheckFailed", message=str(exc),
                      traceback=traceback.format_exc(), details=ctx.details, **ctx.errors)
    except Exception as exc:
        library = ctx is not None and ctx.raised_under_test(exc)
        error_type, message, tb = describe_exception(exc, TRACEBACK_LINES if library else None)
        fields.update(outcome=ERROR if library else HARNESS_ERROR, error_type=error_type,
                      message=message, traceback=tb,
                      details=ctx.details if ctx is not None else {})
    if fields["outcome"] in (ERROR, FAILED) and case.via == "url":
        down = hub_server_down(plan.get("hub_url"))
        if down:
            fields.update(outcome=HARNESS_ERROR, error_type="HubServerUnreachable",
                          message="the harness's hub server is unreachable (%s), so the "
                                  "library never got the model; the case ended with %s: %s"
                                  % (down, fields["error_type"], fields["message"]))
    fields["duration_s"] = round(time.time() - started, 3)
    fields.update(base)
    return make_record(case, runtime.info, **fields)


def hub_server_down(hub_url, timeout=10):
    """Why the harness's hub server does not answer its health check (None: it does)."""
    if not hub_url:
        return "no hub server in the plan"
    try:
        with contextlib.closing(urlopen(hub_url + "/_harness/health", timeout=timeout)) as r:
            if r.status == 200:
                return None
            return "%s/_harness/health answered %s" % (hub_url, r.status)
    except Exception as exc:  # any failure to reach it is the answer
        return "%s/_harness/health: %s: %s" % (hub_url, type(exc).__name__, exc)


def _model_spec(plan, case):
    """The definition of the model a create case makes (None for a health check)."""
    from .cases import HEALTH_MODEL, base_model
    if case.operation == "health" and case.model == HEALTH_MODEL:
        return None
    for model in plan["models"]:
        if model["name"] == base_model(case.model):
            return model["spec"]
    raise KeyError("model %r is not in the plan" % (case.model,))


def _finish_model(case, runtime, variant, result, plan):
    from .fixtures import write_model_files
    spec_dict = _model_spec(plan, case)
    manifest = {
        "schema_version": 1,
        "format": case.format,
        "model": case.model,
        "api": variant.api,
        "spec": spec_dict,
        "producer": dict(runtime.info, env_id=case.env_id, mode=case.mode,
                         run_id=plan["run_id"]),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest.update(result.get("manifest", {}))
    write_model_files(case.model_dir, manifest, result["golden"])
