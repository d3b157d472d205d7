"""Built-in format adapters; each is a plugin registered through ``pytest11``."""

BUILTIN = (
    "harness.runtime.formats.tf1_hub",
    "harness.runtime.formats.saved_model",
    "harness.runtime.formats.keras_saved_model",
    "harness.runtime.formats.user",
    "harness.runtime.formats.environment",
)
