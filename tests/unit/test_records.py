"""Records: the schema every report reads, written line by line."""
import json

from harness.runtime.cases import Case
from harness.runtime.records import FIELDS, RecordWriter, describe_exception, make_record

CASE = Case("consume", "tf221-tfkeras", "tf2", "tf1_hub", "load", "hub.load-signatures",
            "mlp", "tf115", "tf1")


def test_record_has_every_contract_field():
    rec = make_record(CASE, {"python": "3.12.1", "tensorflow": "2.21.0"}, outcome="passed",
                      run_id="r1")
    assert set(FIELDS) <= set(rec)
    assert rec["case_id"] == "tf221-tfkeras/tf2/tf1_hub/load/hub.load-signatures/mlp@tf115/tf1"
    assert rec["column"] == "tf2" and rec["schema_version"] == 1
    assert (rec["producer_env"], rec["producer_mode"]) == ("tf115", "tf1")


def test_writer_appends_one_line_per_record(tmp_path):
    path = tmp_path / "sub" / "w.jsonl"
    writer = RecordWriter(str(path))
    writer.write(make_record(CASE, {}, outcome="passed"))
    writer.write(make_record(CASE, {}, outcome="error", message="boom"))
    lines = path.read_text().splitlines()
    assert [json.loads(x)["outcome"] for x in lines] == ["passed", "error"]


def test_describe_exception_keeps_real_type_and_message():
    class NotFoundError(Exception):
        pass
    NotFoundError.__module__ = "tensorflow.python.framework.errors_impl"
    try:
        raise NotFoundError("Op type not registered 'DisableCopyOnRead'")
    except NotFoundError as exc:
        etype, message, tb = describe_exception(exc)
    assert etype == "tensorflow.python.framework.errors_impl.NotFoundError"
    assert message == "Op type not registered 'DisableCopyOnRead'"
    assert "Traceback" in tb
