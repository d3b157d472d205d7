"""Version ranges and failure conditions derived from synthetic records."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from harness.report.conditions import derive, dimensions, failure_conditions, release_ranges

MODULE = ("AttributeError", "module 'tensorflow_hub' has no attribute 'Module'")
PKG = ("ModuleNotFoundError", "No module named 'pkg_resources'")
OP = ("NotFoundError", "Op type not registered 'DisableCopyOnRead' in binary running on 0x7f3a")
CELL = ("saved_model", "load", "tf2")


def env(release, hub="0.12.0", setuptools="70.0.0", keras=None):
    versions = {"tensorflow": f"{release}.0", "tensorflow-hub": hub, "setuptools": setuptools}
    if keras:
        versions["keras"] = keras
    return {"release": release, "versions": versions, "env_vars": {}}


def rec(env_id, envs, outcome="passed", err=None, producer="p", api="hub.load", mode="tf2",
        operation="load", fmt="saved_model", keras="tf.keras 2.15.0"):
    return {"case_id": f"{env_id}/{mode}/{fmt}/{operation}/{api}/mlp@{producer}",
            "env_id": env_id, "mode": mode, "column": None, "format": fmt,
            "operation": operation, "api": api, "model": "mlp", "producer_env": producer,
            "producer_mode": "tf2", "outcome": outcome,
            "error_type": err[0] if err else None, "message": err[1] if err else None,
            "keras": keras, "tensorflow": envs[env_id]["versions"]["tensorflow"],
            "tensorflow_hub": envs[env_id]["versions"]["tensorflow-hub"]}


RELEASES = ["1.15"] + [f"2.{i}" for i in range(22)]


def axis(releases, fails, apis=("a", "b", "c")):
    envs = {f"tf{r}": env(r) for r in releases}
    envs["p"] = env("2.15")
    records = [rec(f"tf{r}", envs, "error" if fails(r, api) else "passed",
                   MODULE if fails(r, api) else None, api=api)
               for r in releases for api in apis]
    return records, envs


def test_monotone_two_ranges_and_one_exact_threshold():
    records, envs = axis(RELEASES, lambda r, api: r in RELEASES[RELEASES.index("2.16"):])
    cell = derive(records, envs)[CELL]
    assert [(r["status"], r["from"], r["to"], r["text"]) for r in cell["ranges"]] == [
        ("supported", "1.15", "2.15", "TF 1.15–2.15"),
        ("unsupported", "2.16", "2.21",
         "from TF 2.16: AttributeError: module 'tensorflow_hub' has no attribute 'Module'")]
    assert cell["ranges"][0]["releases"] == RELEASES[:17]
    assert (cell["ranges"][0]["passed"], cell["ranges"][1]["attempted"]) == (51, 18)
    [cond] = cell["conditions"]
    assert cond["condition"] == [{"dim": "release", "op": "≥", "value": "2.16"}]
    assert cond["text"] == ("consumer TF ≥ 2.16 → AttributeError: module 'tensorflow_hub' "
                            "has no attribute 'Module'")
    assert (cond["exact"], cond["cases"], cond["matched"], cond["missed"], cond["over"]) == (
        True, 18, 18, 0, 0)
    assert cond["example"].startswith("tf2.16/")


def test_non_monotone_three_ranges_in_version_order():
    releases = [f"2.{i}" for i in range(13)]  # 2.9 < 2.10: never string order
    records, envs = axis(releases, lambda r, api: r in ("2.4", "2.5", "2.6", "2.7", "2.8",
                                                        "2.9"))
    cell = derive(records, envs)[CELL]
    assert [r["text"] for r in cell["ranges"]] == [
        "TF 2.0–2.3",
        "TF 2.4–2.9: AttributeError: module 'tensorflow_hub' has no attribute 'Module'",
        "TF 2.10–2.12"]
    [cond] = cell["conditions"]
    assert cond["condition"] == [{"dim": "release", "op": "–", "value": "2.4–2.9"}]
    assert cond["exact"] and cond["text"].startswith("consumer TF 2.4–2.9 → AttributeError")


def _two_causes(extra_envs=()):
    envs = {"c115": env("1.15"), "c20": env("2.0"), "c210a": env("2.10"),
            "c210b": env("2.10", setuptools="82.0.0"), "c215": env("2.15", setuptools="82.0.1"),
            "c216": env("2.16"), **dict(extra_envs)}
    producers = {"p115": "1.15", "p20": "2.0", "p25": "2.5", "p26": "2.6", "p210": "2.10",
                 "p215": "2.15"}
    envs.update({p: env(r) for p, r in producers.items()})
    records = []
    for c in [e for e in envs if e.startswith("c")]:
        for p in producers:
            info = envs[c]
            err = (PKG if info["versions"]["setuptools"] >= "82" else
                   OP if info["release"] == "1.15" and producers[p] not in ("1.15", "2.0", "2.5")
                   else None)
            records.append(rec(c, envs, "error" if err else "passed", err, producer=p))
    return derive(records, envs)[CELL]["conditions"]


def test_two_causes_in_one_cell_each_exact():
    pkg, op = _two_causes()
    assert pkg["condition"] == [{"dim": "setuptools", "op": "≥", "value": "82"}]
    assert pkg["text"] == "setuptools ≥ 82 → ModuleNotFoundError: No module named 'pkg_resources'"
    assert op["condition"] == [{"dim": "release", "op": "=", "value": "1.15"},
                               {"dim": "producer_release", "op": "≥", "value": "2.6"}]
    assert op["text"] == ("consumer TF 1.15 and producer TF ≥ 2.6 → NotFoundError: Op type not "
                          "registered 'DisableCopyOnRead' in binary running on 0x…")
    assert all(c["exact"] and c["over"] == c["missed"] == 0 for c in (pkg, op))
    assert (pkg["cases"], op["cases"]) == (12, 3)


def test_overlapping_causes_count_another_failure_as_over_coverage():
    # a TF 1.15 env with setuptools 82 fails on pkg_resources for every producer: the
    # DisableCopyOnRead condition must leave those cases out, so it needs a third predicate
    pkg, op = _two_causes({"c115new": env("1.15", setuptools="82.0.0")})
    assert pkg["condition"] == [{"dim": "setuptools", "op": "≥", "value": "82"}]
    assert op["condition"] == [{"dim": "release", "op": "=", "value": "1.15"},
                               {"dim": "setuptools", "op": "=", "value": "70"},
                               {"dim": "producer_release", "op": "≥", "value": "2.6"}]
    assert op["text"].startswith("consumer TF 1.15 and setuptools 70 and producer TF ≥ 2.6 → ")
    assert op["exact"] and pkg["exact"]


def test_inexact_condition_keeps_its_counts():
    releases = [f"2.{i}" for i in range(10, 22)]
    noise = {("2.18", "c"): False, ("2.10", "c"): True}  # mixed tuples: nothing is exact
    records, envs = axis(releases, lambda r, api: noise.get((r, api), r >= "2.16"))
    [cond] = derive(records, envs)[CELL]["conditions"]
    assert cond["condition"] == [{"dim": "release", "op": "≥", "value": "2.16"}]
    assert (cond["exact"], cond["cases"], cond["matched"], cond["missed"], cond["over"]) == (
        False, 18, 17, 1, 1)
    assert cond["text"].endswith("has no attribute 'Module' (covers 17 of 18, also 1 other)")
    assert [r["text"] for r in derive(records, envs)[CELL]["ranges"]] == [
        "TF 2.10: partial 2/3", "TF 2.11–2.15",
        "TF 2.16–2.17: AttributeError: module 'tensorflow_hub' has no attribute 'Module'",
        "TF 2.18: partial 1/3",
        "from TF 2.19: AttributeError: module 'tensorflow_hub' has no attribute 'Module'"]


def test_qualifier_separates_a_partial_release_by_hub_version():
    envs, records = {}, []
    for r in RELEASES[:18]:  # 1.15 .. 2.16
        hubs = ["0.12.0", "0.15.0", "0.16.1"] if r == "1.15" else ["0.15.0", "0.16.1"]
        for hub in hubs if r != "2.16" else ["0.16.1"]:
            envs[f"tf{r}-{hub}"] = env(r, hub=hub)
    envs["p"] = env("2.15")
    for e, info in envs.items():
        if e != "p":
            bad = info["versions"]["tensorflow-hub"] == "0.16.1"
            records.append(rec(e, envs, "error" if bad else "passed", MODULE if bad else None))
    cell = derive(records, envs)[CELL]
    first, last = cell["ranges"]
    assert (first["status"], first["qualifier"], first["text"]) == (
        "supported", "tensorflow_hub ≤ 0.15", "TF 1.15–2.15 (tensorflow_hub ≤ 0.15)")
    assert (first["passed"], first["attempted"], first["error"]) == (
        18, 35, "AttributeError: module 'tensorflow_hub' has no attribute 'Module'")
    assert last["text"].startswith("from TF 2.16: AttributeError")
    [cond] = cell["conditions"]
    assert cond["text"].startswith("tensorflow_hub ≥ 0.16.1 → AttributeError") and cond["exact"]


def test_infrastructure_outcomes_never_count():
    envs = {"a": env("2.14"), "b": env("2.15"), "p": env("2.15")}
    records = [rec("a", envs), rec("b", envs)]
    for outcome in ("skipped", "crashed", "timeout", "env_error", "harness_error"):
        records += [rec("a", envs, outcome, ("RuntimeError", "boom"), api=outcome),
                    rec("c", {"c": env("2.16")}, outcome, ("RuntimeError", "boom"))]
    frame = dimensions(records, envs)
    assert list(frame["outcome"]) == ["passed", "passed"]
    cell = derive(records, envs)[CELL]
    assert [r["text"] for r in cell["ranges"]] == ["TF 2.14–2.15"]
    assert cell["conditions"] == []


def test_dimensions_columns_and_fallbacks():
    envs = {"old": {"versions": {"tensorflow": "2.9.3", "setuptools": "65.5.0"}},
            "new": {"release": "2.21", "versions": {"tensorflow": "2.21.0", "keras": "3.15.0",
                                                    "tf-keras": "2.21.0"},
                    "env_vars": {"TF_USE_LEGACY_KERAS": "1"}}}
    base = {"case_id": "x", "format": "saved_model", "api": "a", "tensorflow_hub": "0.16.1",
            "outcome": "error", "error_type": "ValueError", "message": "bad at 0xdeadbeef\nmore"}
    records = [dict(base, env_id="old", mode="compat", operation="create", producer_env="old",
                    tensorflow="2.9.3", keras="keras 2.9.0"),
               dict(base, env_id="new", mode="tf2", operation="load", producer_env="old",
                    outcome="passed", keras=None)]
    frame = dimensions(records, envs)
    assert list(frame.columns) == ["case_id", "format", "operation", "column", "outcome",
                                   "failure", "release", "tensorflow_hub", "keras",
                                   "setuptools", "mode", "producer_release"]
    assert frame.iloc[0].tolist() == ["x", "saved_model", "create", "tf1", "error",
                                      "ValueError: bad at 0x…", "2.9", "0.16.1", "Keras 2",
                                      "65.5.0", "compat", None]
    assert frame.iloc[1][["failure", "release", "keras", "producer_release"]].tolist() == [
        None, "2.21", "tf-keras", "2.9"]
    [cond] = failure_conditions(frame.iloc[:1])
    assert cond["text"] == "every case → ValueError: bad at 0x…" and cond["exact"]
    assert release_ranges(frame.iloc[:0]) == [] and failure_conditions(frame.iloc[:0]) == []


def test_twenty_thousand_rows_complete():
    rng = np.random.default_rng(7)
    n = 20_000
    rel = [f"2.{i}" for i in range(40)]
    frame = pd.DataFrame({
        "case_id": [f"c{i}" for i in range(n)], "format": "saved_model", "operation": "load",
        "column": "tf2", "release": rng.choice(rel, n),
        "tensorflow_hub": rng.choice(["0.12.0", "0.13.0", "0.15.0", "0.16.1"], n),
        "keras": rng.choice(["Keras 3", "tf-keras"], n),
        "setuptools": rng.choice(["65.0.0", "70.0.0", "80.0.0", "82.0.0"], n),
        "mode": rng.choice(["compat", "tf2"], n), "producer_release": rng.choice(rel, n)})
    ver = frame["release"].map(lambda r: int(r.split(".")[1]))
    prod = frame["producer_release"].map(lambda r: int(r.split(".")[1]))
    failure = np.where(frame["setuptools"] == "82.0.0", "E1: pkg", np.where(
        (ver < 5) & (prod >= 20), "E2: op", np.where(rng.random(n) < 0.05, "E3: noise", None)))
    frame["failure"] = pd.Series(failure, dtype=object).where(pd.notna(failure), None)
    frame["outcome"] = np.where(frame["failure"].isna(), "passed", "error")
    start = time.perf_counter()
    ranges, conds = release_ranges(frame), failure_conditions(frame)
    seconds = time.perf_counter() - start
    assert seconds < 30, seconds
    by = {c["failure"]: c for c in conds}
    assert by["E1: pkg"]["text"] == "setuptools ≥ 82 → E1: pkg" and by["E1: pkg"]["exact"]
    assert by["E2: op"]["condition"] == [  # setuptools 82 fails first (E1): over-coverage
        {"dim": "release", "op": "≤", "value": "2.4"},
        {"dim": "setuptools", "op": "≤", "value": "80"},
        {"dim": "producer_release", "op": "≥", "value": "2.20"}]
    assert by["E2: op"]["exact"]
    assert not by["E3: noise"]["exact"] and "(covers" in by["E3: noise"]["text"]
    assert sum(r["attempted"] for r in ranges) == n


def test_create_cell_names_the_release_plain_tf():
    envs = {"a": env("2.14"), "b": env("2.15")}
    records = [rec("a", envs, operation="create", producer="a"),
               rec("b", envs, "error", MODULE, operation="create", producer="b")]
    cell = derive(records, envs)[("saved_model", "create", "tf2")]
    assert dimensions(records, envs)["producer_release"].tolist() == [None, None]
    assert cell["conditions"][0]["text"].startswith("TF ≥ 2.15 → AttributeError")
