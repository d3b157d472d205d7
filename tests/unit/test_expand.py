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
        "tf115/tf1", "tf115/tf1_eager", "tf215-hub015/compat", "tf215-hub015/tf2",
        "tf215-hub015-setuptools82/tf2",
        "tf215-hub016/compat",
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


def _manifest(store, env, mode, fmt, model="mlp", spec=None, **extra):
    d = store / env / mode / fmt / model
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps(dict(
        {"format": fmt, "model": model, "producer": {"env_id": env, "mode": mode},
         "spec": spec or {"kind": "mlp"}}, **extra)))


def test_plan_cases_create_and_consume(matrix, tmp_path):
    runs = {r.key: r for r in expand(matrix)}
    variants = registry.variants()
    create = plan_cases(stage_plan(matrix, runs["tf115/tf1"], "create", "r", str(tmp_path),
                                   str(tmp_path)), variants)
    health = [c for c in create if c.operation == "health"]
    assert health and create[:len(health)] == health  # health checks first, one per check
    assert {c.case_id for c in create if c.operation == "create"} == {
        "tf115/tf1/keras_saved_model/create/Model.save-include_optimizer=False/mlp",
        "tf115/tf1/keras_saved_model/create/piece_to_share.save/mlp.piece",
        "tf115/tf1/keras_saved_model/create/get_layer-cut.save/mlp.cut",
        "tf115/tf1/saved_model/create/tf.saved_model.save/mlp",
        "tf115/tf1/saved_model/create/tf.saved_model.save-ref-variables/mlp.refvars",
        "tf115/tf1/saved_model/create/MyMulModel/my_mul",
        "tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp"}  # in-tf.Graph: tf2 only
    assert {c.kind for c in create if c.model == "my_mul"} == {"my_mul"}
    _manifest(tmp_path, "tf115", "tf1", "tf1_hub")
    _manifest(tmp_path, "tf221-keras3", "tf2", "saved_model")
    _manifest(tmp_path, "tf221-keras3", "tf2", "saved_model", "my_mul", {"kind": "my_mul"})
    consume = plan_cases(stage_plan(matrix, runs["tf221-tfkeras/tf2"], "consume", "r",
                                    str(tmp_path), str(tmp_path)), variants)
    by_model = {}
    for c in consume:
        by_model.setdefault((c.format, c.model, c.producer_env), set()).add(c.api)
    assert by_model[("saved_model", "my_mul", "tf221-keras3")] == {
        "hub.load", "hub.KerasLayer", "tf.saved_model.load", "MyMulModel-trainable"}
    assert {"hub.load-signatures", "hub.load-signatures-positional", "hub.KerasLayer-tags-strings",
            "tf.saved_model.load", "hub.KerasLayer-trainable"} <= \
        by_model[("tf1_hub", "mlp", "tf115")]
    assert not any(a.startswith("hub.Module") for a in by_model[("tf1_hub", "mlp", "tf115")])
    assert {"Estimator-model_fn", "re-export", "hub.load-GradientTape", "signatures",
            "hub.KerasLayer-Sequential"} <= by_model[("saved_model", "mlp", "tf221-keras3")]
    graph = plan_cases(stage_plan(matrix, runs["tf215-hub015/compat"], "consume", "r",
                                  str(tmp_path), str(tmp_path)), variants)
    graph_apis = {c.api for c in graph if c.format == "tf1_hub"}
    assert {"hub.Module", "hub.Module-trainable", "hub.load-signatures"} <= graph_apis
    assert "hub.KerasLayer-trainable" not in graph_apis  # not proposed by any document there
    selected = plan_cases(dict(stage_plan(matrix, runs["tf221-tfkeras/tf2"], "consume", "r",
                                          str(tmp_path), str(tmp_path)),
                               select=[consume[0].case_id]), variants)
    assert selected == [consume[0]]


def test_handle_cases_need_a_hub_url_take_base_models_and_one_producer(matrix, tmp_path):
    runs = {r.key: r for r in expand(matrix)}
    variants = registry.variants()
    for env, mode in (("tf115", "tf1"), ("tf221-keras3", "tf2"), ("tf221-tfkeras", "tf2")):
        _manifest(tmp_path, env, mode, "saved_model")
    _manifest(tmp_path, "tf115", "tf1", "saved_model", "mlp.refvars")
    plan = stage_plan(matrix, runs["tf221-tfkeras/tf2"], "consume", "r", str(tmp_path),
                      str(tmp_path))
    assert not [c for c in plan_cases(plan, variants) if c.api.endswith("-url")
                or c.operation == "download"]  # no server, no handle cases
    cases = plan_cases(dict(plan, hub_url="http://127.0.0.1:1"), variants)
    url = {(c.api, c.producer_env) for c in cases if c.api.endswith("-url")}
    assert ("hub.KerasLayer-trainable-fit-url", "tf115") in url
    assert ("hub.load-url", "tf221-keras3") in url
    assert not [c for c in cases if c.api.endswith("-url") and c.model != "mlp"]
    download = [c for c in cases if c.operation == "download"]
    assert {(c.producer_env, c.producer_mode, c.model) for c in download} == {
        ("tf221-tfkeras", "tf2", "mlp")}  # its own model, once
    assert {c.api for c in download} >= {"cache-TFHUB_CACHE_DIR", "fault-truncated",
                                         "redirect-308", "two-processes-one-download",
                                         "TFHUB_MODEL_LOAD_FORMAT-UNCOMPRESSED"}
    other = plan_cases(dict(stage_plan(matrix, runs["tf215-hub016/tf2"], "consume", "r",
                                       str(tmp_path), str(tmp_path)),
                            hub_url="http://127.0.0.1:1"), variants)
    assert not [c for c in other if c.operation == "download"]  # it made nothing itself
    _manifest(tmp_path, "tf215-hub016", "compat", "saved_model")
    other = plan_cases(dict(stage_plan(matrix, runs["tf215-hub016/tf2"], "consume", "r",
                                       str(tmp_path), str(tmp_path)),
                            hub_url="http://127.0.0.1:1"), variants)
    assert {(c.producer_env, c.producer_mode) for c in other if c.operation == "download"} == {
        ("tf215-hub016", "compat")}  # another mode of its env
    assert {c.via for c in cases} == {"path", "url"}


def test_user_models_are_consumed_from_their_reference_only(matrix, tmp_path):
    runs = {r.key: r for r in expand(matrix)}
    user = {"kind": "user", "format": "saved_model", "handle": "/m", "name": "mine"}
    for env, mode in (("tf115", "tf1"), ("tf221-keras3", "tf2")):
        _manifest(tmp_path, env, mode, "saved_model", "mine", user, handle="/m",
                  capabilities=["signatures"])
    plan = dict(stage_plan(matrix, runs["tf215-hub015/tf2"], "consume", "r", str(tmp_path),
                           str(tmp_path)), references={"mine": ["tf221-keras3", "tf2"]})
    cases = plan_cases(plan, registry.variants())
    assert {(c.producer_env, c.kind) for c in cases} == {("tf221-keras3", "user")}
    # no __call__ recorded: only the signature-based calls are attempted
    assert {c.api for c in cases} == {"signatures"}


def test_every_cell_of_the_table_has_variants_and_an_expectation(matrix):
    for fmt in ("tf1_hub", "saved_model", "keras_saved_model"):
        for op in ("create", "load", "fine_tune"):
            for modes, column in ((("tf1", "compat"), "tf1"), (("tf2",), "tf2")):
                assert any(v.format == fmt and v.operation == op and set(modes) & set(v.modes)
                           for v in registry.variants()), (fmt, op, column)
                assert fmt == "keras_saved_model" and column == "tf1" or \
                    matrix.expectation(fmt, op, column) is not None


def test_cli_unknown_env_is_one_line_exit_2(default_matrix_path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--matrix",
                           default_matrix_path, "--env", "tf999"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "--env 'tf999' is not in the matrix (known: tf115, tf215-hub015" in proc.stderr


def test_every_claim_of_the_documents_maps_to_variants_and_back():
    from harness import coverage
    claims = coverage.load_claims()
    assert coverage.problems(claims, registry.variants()) == []
    sources = {c["source"] for c in claims}
    assert {"model-compatibility.en.txt", "tf1-to-tf2-migration.zh.txt",
            "tf2-saved-model-guide.tr.txt"} <= sources
    with open(coverage.COVERAGE) as fh:
        assert fh.read() == coverage.render(claims, registry.variants()), \
            "docs/coverage.md is stale: run `harness coverage`"


def test_a_claim_naming_a_missing_variant_is_reported(tmp_path):
    from harness import coverage
    path = tmp_path / "claims.yaml"
    path.write_text("- {id: x, source: s, quote: q, cases: [saved_model/load/hub.nope]}\n")
    found = coverage.problems(coverage.load_claims(str(path)), registry.variants())
    assert "claim x: no variant saved_model/load/hub.nope" in found
    assert any(p.startswith("variant tf1_hub/load/hub.Module is tied to no claim") for p in found)
