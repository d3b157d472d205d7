"""``harness bisect``: the binary search over a release axis, with the probes' runs faked
(the real probes run in tests/integration/test_versions_matrix.py)."""
from __future__ import annotations

import json
import os

import pytest
import yaml

from harness import bisect, pipeline
from harness.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASE = "tf1.15-hub015/tf1/saved_model/load/hub.load/mlp@tf2.10-hub015/tf2"


@pytest.fixture
def matrix(tmp_path):
    with open(os.path.join(ROOT, "matrices", "versions.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(reports_dir=str(tmp_path / "reports"), envs_dir=str(tmp_path))
    raw["models"] = [{"name": m["name"], "definition": os.path.join(ROOT, "models",
                                                                   m["name"] + ".json")}
                     for m in raw["models"]]
    raw["expectations"] = os.path.join(ROOT, "matrix.yaml")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(raw))
    return str(tmp_path / "m.yaml"), tmp_path / "reports"


def _fake(reports, first_bad):
    probed = []

    def execute(options):
        producer = options.case.split("@")[1].split("/")[0]
        release = producer[2:].split("-")[0]
        probed.append(release)
        bad = tuple(map(int, release.split("."))) >= first_bad
        rec = {"case_id": options.case, "outcome": "error" if bad else "passed",
               "error_type": "NotFoundError" if bad else None,
               "message": "Op type not registered 'DisableCopyOnRead'" if bad else None}
        os.makedirs(reports / options.run_id)
        (reports / options.run_id / "results.jsonl").write_text(json.dumps(rec) + "\n")
        return 0
    return execute, probed


def test_finds_the_first_producer_release_in_few_probes(matrix, monkeypatch):
    path, reports = matrix
    execute, probed = _fake(reports, (2, 6))
    monkeypatch.setattr(pipeline, "execute", execute)
    found = bisect.bisect(CASE, path, side="producer", log=lambda m: None)
    assert (found["boundary"]["before"], found["boundary"]["after"]) == (
        "tf2.5-hub015", "tf2.6-hub015")
    assert len(probed) <= 7 < len(found["envs"])  # 2.0 ... 2.16 with hub 0.15
    assert "tf2.5-hub015 -> tf2.6-hub015" in bisect.describe(found)


def test_no_change_between_the_ends_is_said(matrix, monkeypatch):
    path, reports = matrix
    execute, probed = _fake(reports, (9, 0))
    monkeypatch.setattr(pipeline, "execute", execute)
    found = bisect.bisect(CASE, path, side="producer", log=lambda m: None)
    assert found["boundary"] is None and len(probed) == 2
    assert bisect.describe(found).startswith("no change along tensorflow")


def test_hub_axis_orders_by_the_pinned_version(matrix):
    from harness import config
    m = config.load(matrix[0])
    line = bisect.candidates(m, m.env("tf2.10-hub016"), "tf2", "tensorflow_hub")
    assert [e.id for e in line] == ["tf2.10-hub015", "tf2.10-hub016"]


def test_bad_requests_are_one_line(matrix):
    path, _ = matrix
    with pytest.raises(UserError, match="has no producer"):
        bisect.bisect("tf2.10-hub015/tf2/saved_model/create/tf.saved_model.save/mlp", path,
                      side="producer")
    with pytest.raises(UserError, match="not in"):
        bisect.bisect("nope/tf2/saved_model/create/tf.saved_model.save/mlp", path)
    with pytest.raises(UserError, match="not on a release axis"):
        bisect.bisect("tf115/tf1/saved_model/create/tf.saved_model.save/mlp",
                      os.path.join(ROOT, "matrix.yaml"))
