"""matrix.yaml validation: every problem is one located, fixable line (exit 2)."""
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from harness import config
from harness.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def raw(default_matrix_path):
    with open(default_matrix_path) as fh:
        return yaml.safe_load(fh)


def check(raw, tmp_path, **kwargs):
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / "models").mkdir(exist_ok=True)
    for name in ("mlp.json", "my_mul.json"):
        shutil.copy(os.path.join(ROOT, "models", name), tmp_path / "models" / name)
    return config.load(str(path), **kwargs)


def error_of(raw, tmp_path):
    with pytest.raises(ConfigError) as info:
        check(raw, tmp_path)
    return str(info.value)


def test_default_matrix_is_valid(default_matrix_path):
    m = config.load(default_matrix_path)
    assert [e.id for e in m.envs] == ["tf115", "tf215-hub015", "tf215-hub015-setuptools82",
                                      "tf215-hub016", "tf221-keras3",
                                      "tf221-tfkeras"]
    assert m.env("tf115").modes == ("tf1", "tf1_eager")
    assert m.env("tf221-tfkeras").env_vars == (("TF_USE_LEGACY_KERAS", "1"),)
    assert len(m.expectations) == 15  # 2 formats x 3 operations x 2 columns + Keras (TF2)
    assert m.expectation("tf1_hub", "fine_tune", "tf2").documented == "not_supported"
    assert m.models[0].spec["input_dim"] == 4


def test_unknown_key_suggests(raw, tmp_path):
    raw["envs"][1]["pakages"] = raw["envs"][1].pop("packages")
    msg = error_of(raw, tmp_path)
    assert "matrix.yaml: envs[1].pakages: unknown key; did you mean 'packages'?" in msg


def test_unknown_top_level_key(raw, tmp_path):
    raw["environments"] = []
    assert "environments: unknown key" in error_of(raw, tmp_path)


def test_wrong_type(raw, tmp_path):
    raw["envs"][0]["modes"] = "tf1"
    assert "envs[0].modes: expected list, got a string 'tf1'" in error_of(raw, tmp_path)


def test_unknown_mode(raw, tmp_path):
    raw["envs"][0]["modes"] = ["tf1", "eager"]
    msg = error_of(raw, tmp_path)
    assert "envs[0].modes[1]: unknown mode 'eager' (known: tf1, tf1_eager, compat, tf2)" in msg


def test_unknown_format_in_expectation(raw, tmp_path):
    raw["expectations"][0]["format"] = "tf1hub"
    msg = error_of(raw, tmp_path)
    assert "expectations[0].format: unknown format 'tf1hub'" in msg
    assert "did you mean 'tf1_hub'?" in msg


def test_unknown_level(raw, tmp_path):
    raw["expectations"][3]["documented"] = "maybe"
    assert "expectations[3].documented: unknown level 'maybe'" in error_of(raw, tmp_path)


def test_duplicate_env_ids(raw, tmp_path):
    raw["envs"][2]["id"] = "tf215-hub015"
    msg = error_of(raw, tmp_path)
    assert "envs[2].id: duplicate id 'tf215-hub015' (also envs[1])" in msg


def test_duplicate_expectation(raw, tmp_path):
    raw["expectations"].append(dict(raw["expectations"][0]))
    assert "duplicate expectation for tf1_hub/load/tf1" in error_of(raw, tmp_path)


def test_interpreter_not_installed(raw, tmp_path):
    raw["envs"][0]["python"] = "3.99"
    msg = error_of(raw, tmp_path)
    assert "envs[0].python: 3.99 is not installed here (found " in msg
    assert "install it (pyenv install 3.99) or drop the env" in msg


def test_python_read_as_number(raw, tmp_path):
    raw["envs"][0]["python"] = 3.10
    assert "envs[0].python: 3.1 was read as a number; quote it" in error_of(raw, tmp_path)


def test_bad_requirement(raw, tmp_path):
    raw["envs"][0]["packages"].append("tensorflow>=>1")
    assert "envs[0].packages[7]: 'tensorflow>=>1' is not a requirement" in error_of(raw, tmp_path)


def test_missing_required(raw, tmp_path):
    del raw["envs"][0]["modes"]
    assert "envs[0]: missing required key 'modes'" in error_of(raw, tmp_path)


def test_bad_tolerance(raw, tmp_path):
    raw["settings"]["tolerance"]["atol"] = "small"
    assert "settings.tolerance.atol: expected float" in error_of(raw, tmp_path)


def test_model_definition_checked(raw, tmp_path):
    raw["models"][0]["definition"] = "models/none.json"
    assert "model definition not found" in error_of(raw, tmp_path)


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_text("envs:\n  - id: x\n   python: 3.7\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert f"{path}: line 3, column 4: invalid YAML" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        config.load(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("command", ["validate", "run"])
def test_cli_one_line_exit_2(raw, tmp_path, command):
    raw["envs"][0]["modes"] = ["tf3"]
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "harness", command, "--matrix", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "envs[0].modes[0]: unknown mode 'tf3'" in proc.stderr


def test_parallel_must_be_positive(raw, tmp_path):
    raw["settings"]["parallel"] = 0
    assert "settings.parallel: must be >= 1" in error_of(raw, tmp_path)
