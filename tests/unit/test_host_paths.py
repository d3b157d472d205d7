"""redact.host_paths (harness publish refuses a file naming this host's directories): a
path inside a placeholder (``<run>/tmp/...``) is the run's, not the host's /tmp."""
from harness.report.redact import host_paths


def test_a_host_path_is_found():
    assert host_paths("OSError: at /tmp/x/saved_model.pb", ["/tmp"]) == ["/tmp"]
    assert host_paths('"<code>/tmp/x</code>"', ["/tmp"]) == ["/tmp"]


def test_a_path_under_a_placeholder_is_not_the_host_s():
    for text in ("OSError: at <run>/tmp/consume.tf115.tf1/x",
                 "at &lt;run&gt;/tmp/consume.tf115.tf1/x",
                 '"at \\u003crun\\u003e/tmp/consume.tf115.tf1/x"',
                 "in <env:tf115>/tmp/x"):
        assert host_paths(text, ["/tmp"]) == [], text


def test_one_bare_occurrence_among_placeholders_is_found():
    text = "<run>/tmp/a and then /tmp/b"
    assert host_paths(text, ["/tmp"]) == ["/tmp"]
