"""Hook specifications of the in-environment plugin: the extension points.

A third-party plugin adds formats and API variants exactly as the built-in
``formats.tf1_hub`` and ``formats.saved_model`` do: a module registered through
the ``pytest11`` entry point that implements ``pytest_tfhub_compat_variants``.
"""


def pytest_tfhub_compat_variants():
    """Return a list of ``harness.runtime.cases.Variant`` this plugin contributes.

    Each variant names its format, operation (``create``, ``load``, ``fine_tune``),
    a stable ``api`` id, the modes it is attempted in, and ``run(ctx)``: the case
    body.  ``run`` makes the documented call(s) it tests inside
    ``with ctx.under_test():`` and lets what they raise propagate (recorded as
    ``error``, the library's answer); an exception raised anywhere else in the
    body is the plugin's own bug (``harness_error``).  It raises
    ``records.CheckFailed`` for a wrong result (``failed``) and returns a dict
    with optional ``max_abs_err``, ``max_rel_err``, ``details``; a create variant
    also returns ``golden`` (inputs, outputs) and ``manifest`` extras.
    """
