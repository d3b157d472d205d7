"""Users' models: format detection, names, and one-line errors for what cannot be read."""
import pytest
import yaml

from harness import config
from harness.errors import UserError
from harness.usermodels import format_of, name_for, user_model


def _model(tmp_path, *files):
    d = tmp_path / "my_model"
    d.mkdir()
    for name in files:
        (d / name).write_bytes(b"")
    return d


@pytest.mark.parametrize("files, fmt", [
    ({"saved_model.pb", "tfhub_module.pb", "variables"}, "tf1_hub"),
    ({"saved_model.pb", "keras_metadata.pb", "variables"}, "keras_saved_model"),
    ({"saved_model.pb", "variables", "fingerprint.pb"}, "saved_model"),
    ({"model.keras"}, None),
])
def test_format_of(files, fmt):
    assert format_of(files) == fmt


def test_name_for():
    assert name_for("https://hub.example/google/nnlm-en-dim128/2") == "nnlm-en-dim128-v2"
    assert name_for("/models/my encoder/") == "my-encoder"


def test_user_model_spec(tmp_path):
    d = _model(tmp_path, "saved_model.pb", "tfhub_module.pb")
    spec = user_model(str(d))
    assert spec == {"name": "my_model", "kind": "user", "handle": str(d), "format": "tf1_hub",
                    "inputs": None, "signature": None}


@pytest.mark.parametrize("make, fmt, inputs, message", [
    (lambda t: t / "nope", "auto", None, "does not exist"),
    (lambda t: _model(t, "notes.txt"), "auto", None,
     "is not a SavedModel or TF1 Hub module (no saved_model.pb; found notes.txt)"),
    (lambda t: _model(t, "saved_model.pb"), "tf1_hub", None,
     "looks like saved_model, not tf1_hub"),
    (lambda t: _model(t, "saved_model.pb"), "auto", "x.txt", "is not an .npz file"),
    (lambda t: _model(t, "saved_model.pb"), "onnx", None, "unknown format 'onnx'"),
])
def test_unreadable_models_are_one_line_errors(tmp_path, make, fmt, inputs, message):
    with pytest.raises(UserError) as info:
        user_model(str(make(tmp_path)), fmt, inputs)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("--model")


def test_models_entry_in_matrix(tmp_path, default_matrix_path):
    d = _model(tmp_path, "saved_model.pb", "keras_metadata.pb")
    with open(default_matrix_path) as fh:
        raw = yaml.safe_load(fh)
    raw["models"] = [{"name": "mine", "handle": str(d)}]
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    (m,) = config.load(str(path)).models
    assert (m.name, m.spec["kind"], m.spec["format"]) == ("mine", "user", "keras_saved_model")
    raw["models"] = [{"name": "mine", "handle": str(tmp_path / "missing")}]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"matrix.yaml: models\[0\]: .*missing does not exist"):
        config.load(str(path))
