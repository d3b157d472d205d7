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


def test_interpreter_not_installed_is_no_validation_error(raw, tmp_path):
    """Only that env's runs are env_error (when it is in the run): ``unprovisionable``
    says which, for ``harness validate``'s warning."""
    raw["envs"][0]["python"] = "3.99"
    matrix = check(raw, tmp_path)
    (line,) = config.unprovisionable(matrix)
    assert line.startswith(f"{tmp_path / 'matrix.yaml'}: envs[0] (tf115): Python 3.99 is not "
                           "installed here (found ")
    assert line.endswith("; install it (pyenv install 3.99) or drop the env; its runs will be "
                         "env_error records")


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


# --- settings' directories: one line naming the setting and the fix, for validate and run ---

def _file(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    return f


def _unwritable_readonly_dir(tmp_path):
    """A directory this process cannot write in (root ignores mode bits: skip then)."""
    if os.geteuid() == 0:
        pytest.skip("root writes everywhere mode bits forbid it")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d / "reports"


@pytest.mark.parametrize("key", ["reports_dir", "envs_dir"])
@pytest.mark.parametrize("make, message", [
    (lambda t: "/etc/hostname/reports" if os.path.isfile("/etc/hostname") else
     str(_file(t) / "reports"), "cannot be created: {parent} is not a directory"),
    (lambda t: str(_file(t)), "{path} is not a directory"),
    (lambda t: str(_file(t) / "deeper" / "still"), "cannot be created: {file} is not a directory"),
    (lambda t: "/proc/tfhub-compat-reports", "cannot be created: /proc takes no new directory"),
    (lambda t: str(t / ("x" * 300)), "cannot be created in {tmp}: File name too long"),
    (_unwritable_readonly_dir, "cannot be created: {parent} takes no new directory"),
], ids=["under-a-file", "a-file", "deep-under-a-file", "proc", "name-too-long", "read-only"])
def test_unusable_directory_setting(raw, tmp_path, key, make, message):
    path = make(tmp_path)
    raw["settings"][key] = path
    matrix = check(raw, tmp_path)  # loading still works: `harness plan` needs no directory
    with pytest.raises(ConfigError) as info:
        config.check_dirs(matrix)
    text = str(info.value)
    expected = message.format(path=path, parent=os.path.dirname(path),
                              file=tmp_path / "a-file", tmp=tmp_path)
    assert text.startswith(f"{tmp_path / 'matrix.yaml'}: settings.{key}: {path} "), text
    assert expected in text, text
    assert text.endswith(f"; set settings.{key} to a directory you can write (or make it "
                         "writable)")
    assert "\n" not in text


def test_usable_directories_leave_nothing_behind(raw, tmp_path):
    raw["settings"].update(reports_dir=str(tmp_path / "new" / "reports"),
                           envs_dir=str(tmp_path / "envs"))
    (tmp_path / "envs").mkdir()
    config.check_dirs(check(raw, tmp_path))
    assert not (tmp_path / "new").exists()  # checked inside a probe, then removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envs", "matrix.yaml", "models"]


def _cli(path, *args):
    return subprocess.run([sys.executable, "-m", "harness", *args, "--matrix", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("key", ["reports_dir", "envs_dir"])
def test_cli_unusable_directory_one_line_exit_2(raw, tmp_path, command, key):
    raw["settings"].update(reports_dir=str(tmp_path / "reports"), envs_dir=str(tmp_path / "envs"))
    raw["settings"][key] = str(_file(tmp_path) / "sub")
    check(raw, tmp_path)
    proc = _cli(tmp_path / "matrix.yaml", command)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert (f"error: {tmp_path / 'matrix.yaml'}: settings.{key}: {tmp_path / 'a-file' / 'sub'} "
            f"cannot be created: {tmp_path / 'a-file'} is not a directory; set settings.{key} "
            "to a directory you can write") in proc.stderr
    assert not (tmp_path / "reports").exists() and not (tmp_path / "envs").exists()


def test_cli_validate_warns_about_a_missing_interpreter(raw, tmp_path):
    raw["settings"].update(reports_dir=str(tmp_path / "reports"), envs_dir=str(tmp_path / "envs"))
    raw["envs"].append({"id": "py34", "python": "3.4", "packages": ["tensorflow==1.0"],
                        "modes": ["tf1"]})
    check(raw, tmp_path)
    proc = _cli(tmp_path / "matrix.yaml", "validate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{tmp_path / 'matrix.yaml'}: ok (7 envs, ")
    (warning,) = proc.stderr.splitlines()
    assert warning.startswith(f"warning: {tmp_path / 'matrix.yaml'}: envs[6] (py34): Python 3.4 "
                              "is not installed here (found ")
    assert "install it (pyenv install 3.4) or drop the env; its runs will be env_error" in warning


def test_missing_interpreter_is_env_error_of_its_env_only(raw, tmp_path, monkeypatch):
    """A run narrowed to other envs never meets it; a run with it provisions it with the real
    venv backend, whose ProvisionError becomes that env's env_error records."""
    from harness import pipeline
    from harness.backends import ProvisionError
    from harness.backends.venv import VenvBackend
    raw["settings"].update(reports_dir=str(tmp_path / "reports"), envs_dir=str(tmp_path / "envs"))
    raw["envs"].append({"id": "py34", "python": "3.4", "packages": ["tensorflow==1.0"],
                        "modes": ["tf1"]})
    check(raw, tmp_path)
    options = pipeline.Options(matrix=str(tmp_path / "matrix.yaml"), envs=("tf115",))
    matrix = pipeline.load(options)
    selection = pipeline.select(matrix, options)
    assert {r.env.id for r in selection.create + selection.consume} == {"tf115"}

    with pytest.raises(ProvisionError) as info:
        VenvBackend(str(tmp_path / "envs"), "harness.whl", "id").provision(matrix.env("py34"))
    assert str(info.value).startswith("Python 3.4 is not installed here (found ")
    assert str(info.value).endswith("install it (pyenv install 3.4) or drop the env")

    options = pipeline.Options(matrix=str(tmp_path / "matrix.yaml"), envs=("py34",),
                               run_id="r")
    selection = pipeline.select(matrix, options)
    run = pipeline.Run(matrix, selection, "r", pipeline.RunPaths(str(tmp_path / "run")))
    monkeypatch.setattr(pipeline, "build_wheel", lambda cache: ("harness.whl", "id"))
    pipeline.provision(run)
    assert list(run.provisioned) == ["py34"]
    assert isinstance(run.provisioned["py34"], ProvisionError)
    assert "pyenv install 3.4" in str(run.provisioned["py34"])
