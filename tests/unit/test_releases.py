"""The release axis (``releases:``), ``sampling:``, expectations' ``calls`` and
``prerequisites``: expansion, one-line errors, and which (producer, variant) pairs a
sampled consumer runs."""
from __future__ import annotations

import copy
import os

import pytest
import yaml

from harness import config, expand, registry
from harness.errors import ConfigError
from harness.runtime import cases

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSIONS = os.path.join(ROOT, "matrices", "versions.yaml")


def _raw() -> dict:
    with open(VERSIONS) as fh:
        return yaml.safe_load(fh)


def _error(raw: dict, tmp_path) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_versions_matrix_expands_every_release_and_flavour():
    m = config.load(VERSIONS)
    ids = [e.id for e in m.envs]
    assert ids[0] == "tf1.15-hub015" and ids[-1] == "tf2.21-tfkeras"
    releases = sorted({e.release for e in m.envs}, key=lambda r: tuple(map(int, r.split("."))))
    assert releases == ["1.15"] + [f"2.{i}" for i in range(22)]
    env = m.env("tf2.18-tfkeras")
    assert "tf-keras~=2.18.0" in env.packages and dict(env.env_vars) == {
        "TF_USE_LEGACY_KERAS": "1"}
    assert m.env("tf2.18-keras3").env_vars == () and m.env("tf2.18-keras3").flavour == "keras3"
    assert "tf2.17-hub015" not in ids and "tf2.16-hub015" in ids  # hub 0.15: "<2.17"
    assert m.env("tf1.15-hub015").modes == ("tf1", "tf1_eager")
    assert m.env("tf2.15-setuptools82").packages[-1] == "setuptools>=82"
    assert m.prerequisites == ("import-tensorflow_hub",)
    assert m.expectation("tf1_hub", "load", "tf1").calls == ("hub.Module",)  # shared file
    assert m.sampling and ("saved_model", "tf2", "hub.load") in m.sampling.primary


@pytest.mark.parametrize("change, expected", [
    (lambda r: r["releases"]["table"].__setitem__(2.1, r["releases"]["table"].pop("2.10")),
     "releases.table.\"2.1\": 2.1 was read as a number; quote it"),
    (lambda r: r["releases"]["table"]["2.3"].__setitem__("flavours", ["keras3"]),
     "releases.table.\"2.3\".flavours[0]: flavour 'keras3' does not apply to 2.3"),
    (lambda r: r["releases"]["table"]["2.3"].__setitem__("flavours", ["hub17"]),
     "releases.table.\"2.3\".flavours[0]: unknown flavour 'hub17'"),
    (lambda r: r["releases"]["flavours"]["keras3"].__setitem__("releases", "from 2.16"),
     "releases.flavours.keras3.releases: 'from 2.16' is not a version specifier"),
    (lambda r: r["releases"]["flavours"]["keras3"].__setitem__("pakages", []),
     "releases.flavours.keras3.pakages: unknown key; did you mean 'packages'?"),
    (lambda r: r["releases"].__setitem__("id", "tf{release}"),
     "releases.id: 'tf{release}' must contain {release} and {flavour}"),
    (lambda r: r["sampling"]["full"].append("tf9.9-hub015"),
     "sampling.full[3]: 'tf9.9-hub015' is no env of the matrix"),
    (lambda r: r["sampling"]["primary"]["saved_model"].__setitem__("tf2", "hub.lod"),
     "sampling.primary.saved_model.tf2: unknown load call of saved_model 'hub.lod'"),
    (lambda r: r.__setitem__("prerequisites", ["import-tensorflow-hub"]),
     "prerequisites[0]: unknown health check"),
    (lambda r: r.__setitem__("expectations", "nowhere.yaml"),
     "expectations: cannot read 'nowhere.yaml'"),
    (lambda r: r["releases"]["flavours"]["hub015"].__setitem__("releases", ">=3"),
     "releases.table.\"1.15\": no flavour applies to release 1.15"),
])
def test_errors_are_one_line_and_name_the_place(change, expected, tmp_path):
    raw = _raw()
    raw["settings"] = {}
    raw["models"] = [{"name": m["name"], "definition": os.path.join(ROOT, "models",
                                                                   m["name"] + ".json")}
                     for m in raw["models"]]
    raw["expectations"] = os.path.join(ROOT, "matrix.yaml")
    change(raw)
    assert expected in _error(raw, tmp_path)


def test_an_expectation_call_must_be_a_variant_of_its_cell(tmp_path):
    with open(os.path.join(ROOT, "matrix.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"] = {}
    for m in raw["models"]:
        m["definition"] = os.path.join(ROOT, m["definition"])
    raw["expectations"][0]["calls"] = ["hub.load"]  # tf1_hub / load has no such variant
    assert "expectations[0].calls[0]: unknown tf1_hub load variant 'hub.load'" in \
        _error(raw, tmp_path)


def _manifest(env_id, mode, fmt, model):
    return {"format": fmt, "model": model, "producer": {"env_id": env_id, "mode": mode},
            "dir": f"/store/{env_id}/{mode}/{fmt}/{model}", "spec": {"kind": "mlp"}}


def test_sampled_consumer_runs_all_variants_on_references_and_the_primary_call_elsewhere(
        monkeypatch):
    m = config.load(VERSIONS)
    consumer = m.env("tf2.6-hub016")
    manifests = [_manifest(e, mode, "saved_model", model)
                 for e, modes in (("tf2.6-hub016", ("compat", "tf2")),
                                  ("tf1.15-hub015", ("tf1", "tf1_eager")),
                                  ("tf2.21-tfkeras", ("compat", "tf2")),
                                  ("tf2.10-hub015", ("compat", "tf2")),
                                  ("tf2.10-hub016", ("compat", "tf2")),
                                  ("tf2.6-hub015", ("tf2",)))
                 for mode in modes for model in ("mlp", "mlp.refvars")]
    monkeypatch.setattr(cases, "read_manifests", lambda store: manifests)
    run = expand.EnvRun(consumer, "tf2")
    plan = expand.stage_plan(m, run, "consume", "r", "/store", "/r")
    planned = cases.plan_cases(plan, registry.variants())
    by_producer: dict[tuple, set] = {}
    for c in planned:
        by_producer.setdefault((c.producer_env, c.producer_mode, c.model), set()).add(c.api)
    # own env: every variant on every model, made in the consumer's own mode
    own = by_producer[("tf2.6-hub016", "tf2", "mlp")]
    assert {"hub.load", "hub.KerasLayer", "hub.KerasLayer-trainable-fit"} <= own
    assert by_producer[("tf2.6-hub016", "tf2", "mlp.refvars")]
    assert ("tf2.6-hub016", "compat", "mlp") not in by_producer
    # a full producer: every variant, on one mode per model (the consumer's column's)
    assert ("tf1.15-hub015", "tf1", "mlp") in by_producer
    assert ("tf1.15-hub015", "tf1_eager", "mlp") not in by_producer
    assert ("tf2.21-tfkeras", "tf2", "mlp") in by_producer and \
        ("tf2.21-tfkeras", "compat", "mlp") not in by_producer
    assert len(by_producer[("tf2.21-tfkeras", "tf2", "mlp")]) > 3
    # another release: the primary call only, on the base model of the consumer's flavour
    assert by_producer[("tf2.10-hub016", "tf2", "mlp")] == {"hub.load"}
    assert not [k for k in by_producer if k[0] == "tf2.10-hub015" or k[2] == "mlp.refvars"
                and k[0] == "tf2.10-hub016"]
    # the consumer's own release is covered by its own env: no other env of 2.6 is sampled
    assert not [k for k in by_producer if k[0] == "tf2.6-hub015"]


def test_no_sampling_keeps_every_pair(monkeypatch):
    m = config.load(VERSIONS)
    m = copy.copy(m)
    object.__setattr__(m, "sampling", None)
    manifests = [_manifest("tf2.10-hub015", "tf2", "saved_model", "mlp")]
    monkeypatch.setattr(cases, "read_manifests", lambda store: manifests)
    plan = expand.stage_plan(m, expand.EnvRun(m.env("tf2.6-hub016"), "tf2"), "consume", "r",
                             "/store", "/r")
    assert plan["sample"] is None
    apis = {c.api for c in cases.plan_cases(plan, registry.variants())}
    assert {"hub.load", "hub.KerasLayer", "hub.KerasLayer-trainable-fit"} <= apis
