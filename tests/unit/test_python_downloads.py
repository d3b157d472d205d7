"""settings.python_downloads: never (the default: the machine's interpreters only) or allow
(CI: uv installs a Python the machine lacks); TFHUB_COMPAT_PYTHON_DOWNLOADS overrides it."""
import os
import shutil
import stat
import sys
import textwrap

import pytest
import yaml

from harness import config, interpreters
from harness.backends import ProvisionError
from harness.backends.venv import VenvBackend
from harness.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MISSING = "3.99"  # no machine has it: find_interpreter gives None


@pytest.fixture
def raw(default_matrix_path):
    with open(default_matrix_path) as fh:
        return yaml.safe_load(fh)


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(interpreters.PYTHON_DOWNLOADS_ENV, raising=False)


def load(raw, tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / "models").mkdir(exist_ok=True)
    for name in ("mlp.json", "my_mul.json"):
        shutil.copy(os.path.join(ROOT, "models", name), tmp_path / "models" / name)
    return config.load(str(path))


def test_default_is_never(raw, tmp_path):
    raw["settings"].pop("python_downloads", None)
    assert load(raw, tmp_path).settings.python_downloads == "never"


@pytest.mark.parametrize("value", ["never", "allow"])
def test_setting(raw, tmp_path, value):
    raw["settings"]["python_downloads"] = value
    assert load(raw, tmp_path).settings.python_downloads == value


def test_bad_setting_is_one_line(raw, tmp_path):
    raw["settings"]["python_downloads"] = "alow"
    with pytest.raises(ConfigError) as info:
        load(raw, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith("settings.python_downloads: unknown value 'alow' (known: never, "
                            "allow); did you mean 'allow'?")


def test_bad_setting_type(raw, tmp_path):
    raw["settings"]["python_downloads"] = True
    with pytest.raises(ConfigError, match=r"settings.python_downloads: expected str, got a "
                                          r"boolean True"):
        load(raw, tmp_path)


def test_env_var_overrides(raw, tmp_path, monkeypatch):
    raw["settings"]["python_downloads"] = "never"
    monkeypatch.setenv(interpreters.PYTHON_DOWNLOADS_ENV, "allow")
    assert load(raw, tmp_path).settings.python_downloads == "allow"
    monkeypatch.setenv(interpreters.PYTHON_DOWNLOADS_ENV, "")  # empty = unset
    assert load(raw, tmp_path).settings.python_downloads == "never"


def test_bad_env_var_is_one_line(raw, tmp_path, monkeypatch):
    monkeypatch.setenv(interpreters.PYTHON_DOWNLOADS_ENV, "yes")
    with pytest.raises(ConfigError) as info:
        load(raw, tmp_path)
    assert str(info.value).endswith(
        "settings.python_downloads: TFHUB_COMPAT_PYTHON_DOWNLOADS='yes' overrides it with an "
        "unknown value; set it to never or allow (or unset it)")


def test_unprovisionable_warns_only_when_downloads_are_off(raw, tmp_path):
    raw["envs"][0]["python"] = MISSING
    assert config.unprovisionable(load(raw, tmp_path))
    raw["settings"]["python_downloads"] = "allow"
    assert config.unprovisionable(load(raw, tmp_path)) == []


@pytest.fixture
def fake_uv(tmp_path, monkeypatch):
    """A ``uv`` on PATH that logs its calls; ``python install`` makes the managed Python
    (unless FAKE_UV_FAIL is set) that ``python find --managed-python`` then prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "uv"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, sys
        state = {str(tmp_path)!r}
        with open(os.path.join(state, "calls"), "a") as fh:
            fh.write(" ".join(sys.argv[1:]) + " | " + os.environ["UV_PYTHON_DOWNLOADS"] + "\\n")
        managed = os.path.join(state, "managed", "bin", "python" + sys.argv[-1])
        if sys.argv[1:3] == ["python", "find"]:
            if os.path.exists(managed):
                print(managed)
                sys.exit(0)
            print("error: No interpreter found for Python", file=sys.stderr)
            sys.exit(2)
        if sys.argv[1:3] == ["python", "install"]:
            if os.environ.get("FAKE_UV_FAIL"):
                print("error: No download found for request: cpython-" + sys.argv[-1],
                      file=sys.stderr)
                sys.exit(2)
            os.makedirs(os.path.dirname(managed))
            os.symlink({sys.executable!r}, managed)
            sys.exit(0)
        sys.exit(99)
        """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def calls():
        path = tmp_path / "calls"
        return path.read_text().splitlines() if path.exists() else []
    return calls


def test_never_does_not_call_uv(fake_uv):
    assert interpreters.resolve_interpreter(MISSING, "never") is None
    assert fake_uv() == []


def test_found_on_the_machine_does_not_call_uv(fake_uv):
    version = "%d.%d" % sys.version_info[:2]
    found = interpreters.find_interpreter(version)
    assert found is not None  # the test's own Python is on this machine
    assert interpreters.resolve_interpreter(version, "allow") == found
    assert fake_uv() == []


def test_allow_installs_a_missing_python_once(fake_uv, tmp_path):
    path = interpreters.resolve_interpreter(MISSING, "allow")
    assert path == os.path.realpath(sys.executable)
    assert fake_uv() == [f"python find --managed-python {MISSING} | never",
                         f"python install {MISSING} | manual",
                         f"python find --managed-python {MISSING} | never"]
    interpreters.resolve_interpreter(MISSING, "allow")  # installed: found, not installed again
    assert fake_uv()[3:] == [f"python find --managed-python {MISSING} | never"]


def test_uv_without_a_build_is_a_one_line_provision_error(fake_uv, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_UV_FAIL", "1")
    backend = VenvBackend(str(tmp_path / "envs"), "", "", log=lambda m: None,
                          python_downloads="allow")
    env = config.Env(id="py399", python=MISSING, packages=("numpy",), modes=("tf2",))
    with pytest.raises(ProvisionError) as info:
        backend.provision(env)
    assert str(info.value) == (
        f"Python {MISSING} is not installed here and `uv python install {MISSING}` failed "
        f"(error: No download found for request: cpython-{MISSING}); install it on the "
        "machine (pyenv, actions/setup-python) or drop the env")
    assert not (tmp_path / "envs").exists()


def test_backend_default_never_says_not_installed(fake_uv, tmp_path):
    backend = VenvBackend(str(tmp_path / "envs"), "", "", log=lambda m: None)
    env = config.Env(id="py399", python=MISSING, packages=("numpy",), modes=("tf2",))
    with pytest.raises(ProvisionError, match=rf"^Python {MISSING} is not installed here"):
        backend.provision(env)
    assert fake_uv() == []


def test_no_uv_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(interpreters.InterpreterError, match="uv not found on PATH"):
        interpreters.resolve_interpreter(MISSING, "allow")
