"""The in-environment plugin, run by pytest itself (pytester), without TensorFlow.

With no TensorFlow importable here, every case must become an ``env_error``
record (never "not supported"), and the collected ids must be written for the host.
"""
import json
import os

import pytest

from harness import config, registry
from harness.expand import expand, stage_plan
from harness.runtime.cases import plan_cases

tf_missing = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorflow") is not None,
    reason="this host has TensorFlow; the env_error path needs it absent")


def test_plugin_is_inert_without_a_plan(pytester):
    pytester.makepyfile("def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_suite_without_plan_is_a_usage_error(pytester):
    pytester.makepyfile(test_s="from harness.runtime.suite import test_case  # noqa\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*the tfhub-compat suite needs --tfhub-plan PLAN.json*"])
    assert result.ret != 0


@tf_missing
def test_without_tensorflow_every_case_is_env_error(pytester, default_matrix_path, tmp_path):
    matrix = config.load(default_matrix_path)
    run = expand(matrix, ("tf221-keras3",), ("tf2",))[0]
    results = tmp_path / "records"
    plan = stage_plan(matrix, run, "create", "r1", str(tmp_path / "store"), str(results))
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    pytester.makepyfile(test_s="from harness.runtime.suite import test_case  # noqa\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--tfhub-plan={plan_path}",
                                           "-n", "2")
    expected = [c.case_id for c in plan_cases(plan, registry.variants())]
    assert "tf221-keras3/tf2/tf1_hub/create/hub.create_module_spec/mlp" in expected
    assert "tf221-keras3/tf2/environment/health/import-tensorflow_hub/env" in expected
    result.assert_outcomes(failed=len(expected))
    result.stdout.fnmatch_lines(["*env_error: EnvImportError: import tensorflow failed*"])
    ids = json.loads((results / "create.tf221-keras3.tf2.collected.json").read_text())
    assert sorted(ids) == sorted(expected)
    records = [json.loads(line) for name in os.listdir(results) if name.endswith(".jsonl")
               for line in (results / name).read_text().splitlines()]
    assert sorted(r["case_id"] for r in records) == sorted(ids)
    assert {r["outcome"] for r in records} == {"env_error"}
