"""Pure expansion: env x mode runs, shared installs, case ids, plans into cases."""
import json

import pytest

from harness import config, registry
from harness.errors import UserError
from harness.expand import expand, install_key, parse_case_id, stage_plan
from harness.runtime.cases import plan_cases


@pytest.fixture
def matrix(default_matrix_path):
    return config.load(default_matrix_path)


def test_expand_every_env_and_mode(matrix):
    runs = expand(matrix)
    assert [r.key for r in runs] == [
        "tf115/tf1", "tf215-hub015/compat", "tf215-hub015/tf2", "tf215-hub016/compat",
        "tf215-hub016/tf2", "tf221-keras3/compat", "tf221-keras3/tf2", "tf221-tfkeras/compat",
        "tf221-tfkeras/tf2"]


def test_expand_filters_and_rejects_unknown(matrix):
    assert [r.key for r in expand(matrix, ("tf115", "tf221-keras3"), ("tf2", "tf1"))] == [
        "tf115/tf1", "tf221-keras3/tf2"]
    with pytest.raises(UserError, match="--env 'tf999' is not in the matrix"):
        expand(matrix, ("tf999",))
    with pytest.raises(UserError, match="matches no env x mode"):
        expand(matrix, ("tf115",), ("tf2",))


def test_envs_differing_only_in_env_vars_share_an_install(matrix):
    assert install_key(matrix.env("tf221-keras3")) == install_key(matrix.env("tf221-tfkeras"))
    assert install_key(matrix.env("tf215-hub015")) != install_key(matrix.env("tf215-hub016"))


def test_parse_case_id():
    text = "tf221-tfkeras/tf2/tf1_hub/load/hub.load-signatures/mlp@tf115/tf1"
    case = parse_case_id(text)
    assert (case.stage, case.env_id, case.mode, case.format, case.operation, case.api,
            case.model, case.producer_env, case.producer_mode) == (
        "consume", "tf221-tfkeras", "tf2", "tf1_hub", "load", "hub.load-signatures", "mlp",
        "tf115", "tf1")
    assert case.case_id == text
    create = "tf115/tf1/saved_model/create/tf.saved_model.save/mlp"
    assert parse_case_id(create).case_id == create
    assert parse_case_id(create).producer_env == "tf115"
    for bad in ("tf115/tf1", "tf115/tf1/tf1_hub/load/hub.Module/mlp",
                "tf115/tf1/tf1_hub/create/x/mlp@a/b"):
        with pytest.raises(UserError, match="not a case id"):
            parse_case_id(bad)


def _manifest(store, env, mode, fmt):
    d = store / env / mode / fmt / "mlp"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps(
        {"format": fmt, "model": "mlp", "producer": {"env_id": env, "mode": mode}}))


def test_plan_cases_create_and_consume(matrix, tmp_path):
    runs = {r.key: r for r in expand(matrix)}
    variants = registry.variants()
    create = plan_cases(stage_plan(matrix, runs["tf115/tf1"], "create", "r", str(tmp_path),
                                   str(tmp_path)), variants)
    assert [c.case_id for c in create] == [
        "tf115/tf1/saved_model/create/tf.saved_model.save/mlp",
        "tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp"]
    _manifest(tmp_path, "tf115", "tf1", "tf1_hub")
    _manifest(tmp_path, "tf221-keras3", "tf2", "saved_model")
    consume = plan_cases(stage_plan(matrix, runs["tf221-tfkeras/tf2"], "consume", "r",
                                    str(tmp_path), str(tmp_path)), variants)
    assert [c.case_id for c in consume] == [
        "tf221-tfkeras/tf2/saved_model/load/hub.KerasLayer/mlp@tf221-keras3/tf2",
        "tf221-tfkeras/tf2/saved_model/load/hub.load/mlp@tf221-keras3/tf2",
        "tf221-tfkeras/tf2/saved_model/fine_tune/hub.KerasLayer-trainable-fit/mlp@tf221-keras3/tf2",
        "tf221-tfkeras/tf2/saved_model/fine_tune/hub.load-GradientTape/mlp@tf221-keras3/tf2",
        "tf221-tfkeras/tf2/tf1_hub/load/hub.KerasLayer-signature/mlp@tf115/tf1",
        "tf221-tfkeras/tf2/tf1_hub/load/hub.load-signatures/mlp@tf115/tf1",
        "tf221-tfkeras/tf2/tf1_hub/fine_tune/hub.KerasLayer-trainable/mlp@tf115/tf1"]
    graph = plan_cases(stage_plan(matrix, runs["tf215-hub015/compat"], "consume", "r",
                                  str(tmp_path), str(tmp_path)), variants)
    assert {c.api for c in graph if c.format == "tf1_hub"} == {"hub.Module",
                                                              "hub.Module-trainable"}
    selected = plan_cases(dict(stage_plan(matrix, runs["tf221-tfkeras/tf2"], "consume", "r",
                                          str(tmp_path), str(tmp_path)),
                               select=[consume[0].case_id]), variants)
    assert selected == [consume[0]]


def test_every_cell_of_the_table_has_variants_and_an_expectation(matrix):
    for fmt in ("tf1_hub", "saved_model"):
        for op in ("create", "load", "fine_tune"):
            for modes, column in ((("tf1", "compat"), "tf1"), (("tf2",), "tf2")):
                assert any(v.format == fmt and v.operation == op and set(modes) & set(v.modes)
                           for v in registry.variants()), (fmt, op, column)
                assert matrix.expectation(fmt, op, column) is not None


def test_cli_unknown_env_is_one_line_exit_2(default_matrix_path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--matrix",
                           default_matrix_path, "--env", "tf999"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "--env 'tf999' is not in the matrix (known: tf115, tf215-hub015" in proc.stderr
