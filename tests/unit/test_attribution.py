"""Who raised it: ``run_case`` blames the library only for what its ``under_test`` region
raised; every other exception is the harness's own (``harness_error``, whole traceback).

No TensorFlow: the runtime is a stand-in, the variants are small functions.
"""
import http.server
import json
import os
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from harness.runtime.cases import GOLDEN, MANIFEST, Case, Variant
from harness.runtime.plugin import hub_server_down, run_case
from harness.runtime.records import CheckFailed, HarnessFault, RecordWriter, make_record

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class HubImportError(ImportError):
    pass


class Runtime(object):
    """What ``modes.bootstrap`` returns, without TensorFlow."""

    tf = SimpleNamespace(compat=SimpleNamespace(v1=None))
    mode, graph_mode, info = "tf2", False, {"tensorflow": "2.99.0"}

    def __init__(self, hub_error=None):
        self.hub_error = hub_error

    @property
    def hub(self):
        if self.hub_error is not None:
            raise self.hub_error
        return SimpleNamespace(load=lambda handle: 1 / 0)


def health_case(api):
    return Case("create", "env1", "tf2", "fake", "health", api, "env", "env1", "tf2")


def plan(hub_url=None):
    return {"run_id": "r1", "repro": "nox -s matrix -- --case {case_id}", "models": [],
            "env": {"id": "env1", "device": "cpu", "backend": "venv"}, "hub_url": hub_url}


def run(body, api="check", hub_error=None, hub_url=None, case=None):
    case = case or health_case(api)
    variant = Variant(case.format, case.operation, case.api, ("tf2",), body,
                      kinds=("mlp", "my_mul"))
    return run_case(case, plan(hub_url), Runtime(hub_error), [variant])


def test_raised_inside_the_region_is_the_librarys_error():
    def body(ctx):
        with ctx.under_test():
            ctx.hub.load("h")

    rec = run(body)
    assert rec["outcome"] == "error"
    assert rec["error_type"] == "ZeroDivisionError"


def test_raised_outside_the_region_is_a_harness_error_with_the_whole_traceback():
    chain = {}  # 60 distinct helper frames, deeper than a record's 40-line excerpt
    exec("def f0():\n    return float(object())\n" + "".join(
        "def f%d():\n    return f%d()\n" % (i, i - 1) for i in range(1, 60)), chain)

    def body(ctx):
        with ctx.under_test():
            value = 2.0
        return chain["f59"]() + value  # the harness's own conversion fails

    rec = run(body)
    assert rec["outcome"] == "harness_error"
    assert rec["error_type"] == "TypeError"
    assert all("in f%d" % i in rec["traceback"] for i in range(60))  # not cut to an excerpt


def test_check_failed_is_failed_inside_and_outside_the_region():
    def inside(ctx):
        with ctx.under_test():
            ctx.expect(False, "wrong numbers")

    def outside(ctx):
        raise CheckFailed("wrong numbers")

    assert run(inside)["outcome"] == run(outside)["outcome"] == "failed"


def test_a_harness_fault_inside_the_region_stays_the_harnesss():
    def body(ctx):
        with ctx.under_test():
            raise HarnessFault("the helper process died")

    rec = run(body)
    assert rec["outcome"] == "harness_error"
    assert "helper process died" in rec["message"]


def test_hub_that_cannot_import_is_the_librarys_error_wherever_it_is_reached():
    def body(ctx):
        ctx.hub  # noqa: B018  (outside any region: still the library's import error)

    rec = run(body, hub_error=HubImportError("No module named 'pkg_resources'"))
    assert rec["outcome"] == "error"
    assert "pkg_resources" in rec["message"]


def test_no_plugin_for_the_case_is_a_harness_error_not_a_crash():
    case = health_case("check")
    rec = run_case(case, plan(), Runtime(), [])
    assert rec["outcome"] == "harness_error"
    assert "no plugin provides" in rec["message"]


def test_an_unreadable_store_entry_is_a_harness_error(tmp_path):
    case = Case("consume", "env1", "tf2", "fake", "load", "hub.load", "mlp", "p", "tf2",
                str(tmp_path / "missing"), "mlp")
    rec = run(lambda ctx: None, case=case)
    assert rec["outcome"] == "harness_error"
    assert rec["error_type"] == "FileNotFoundError"


def test_a_missing_golden_inside_the_region_is_the_harnesss(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"spec": {"kind": "my_mul", "name": "m"}}))
    np.savez(str(tmp_path / GOLDEN), x=np.zeros(2))
    case = Case("consume", "env1", "tf2", "fake", "load", "hub.load", "m", "p", "tf2",
                str(tmp_path), "my_mul")

    def body(ctx):
        with ctx.under_test():
            ctx.golden("y")

    rec = run(body, case=case)
    assert rec["outcome"] == "harness_error"
    assert "recorded no golden 'y'" in rec["message"]


@pytest.fixture
def health_server():
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/_harness/health" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def _refused(ctx):
    with ctx.under_test():
        raise OSError("<urlopen error [Errno 111] Connection refused>")


def test_a_url_case_is_the_librarys_error_while_the_hub_server_answers(health_server):
    assert hub_server_down(health_server) is None
    assert run(_refused, api="hub.load-url", hub_url=health_server)["outcome"] == "error"


def test_a_url_case_is_a_harness_error_when_the_hub_server_is_gone(health_server):
    gone = "http://127.0.0.1:9"  # discard port: nothing listens
    rec = run(_refused, api="hub.load-url", hub_url=gone)
    assert rec["outcome"] == "harness_error"
    assert rec["error_type"] == "HubServerUnreachable"
    assert "Connection refused" in rec["message"]  # what the case saw is kept


def test_a_path_case_never_asks_the_hub_server():
    assert run(_refused, hub_url="http://127.0.0.1:9")["outcome"] == "error"


def test_records_have_no_nan(tmp_path):
    path = tmp_path / "w.jsonl"
    RecordWriter(str(path)).write(make_record(
        health_case("check"), {}, outcome="failed", max_abs_err=float("nan"),
        details={"loss_first": np.float32("nan"), "losses": [1.0, float("inf")]}))
    rec = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert rec["max_abs_err"] is None
    assert rec["details"] == {"loss_first": None, "losses": [1.0, None]}


def test_a_create_case_starts_from_an_empty_model_directory(tmp_path):
    """A model left half-written by a killed run (no record, so the case runs again) is
    removed before the case writes it anew."""
    model_dir = tmp_path / "store" / "env1" / "tf2" / "fake" / "m"
    (model_dir / "model" / "variables").mkdir(parents=True)
    (model_dir / "model" / "variables" / "variables.data-00000-of-00001").write_bytes(b"cut")
    case = Case("create", "env1", "tf2", "fake", "create", "save", "m", "env1", "tf2",
                str(model_dir), "mlp")
    seen = {}

    def body(ctx):
        seen["left"] = sorted(p.name for p in model_dir.rglob("*")) if model_dir.exists() \
            else []
        model_dir.mkdir(parents=True)
        return {"golden": {"x": np.zeros(1)}}

    with open(os.path.join(ROOT, "models", "mlp.json")) as fh:
        spec = dict(json.load(fh), name="m")
    p = dict(plan(), models=[{"name": "m", "spec": spec}])
    variant = Variant("fake", "create", "save", ("tf2",), body, kinds=("mlp",))
    rec = run_case(case, p, Runtime(), [variant])
    assert seen["left"] == [] and rec["outcome"] == "passed", rec["message"]
    assert sorted(p.name for p in model_dir.iterdir()) == [GOLDEN, MANIFEST]
