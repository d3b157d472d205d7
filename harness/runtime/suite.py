"""The one test function; its cases come from ``pytest_generate_tests`` in the plugin."""


def test_case(tfhub_case, tfhub_run):
    tfhub_run(tfhub_case)
