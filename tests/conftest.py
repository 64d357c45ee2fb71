"""The kit's fixtures (tiny victim, tiny oracle, harness_env) for every test."""

pytest_plugins = ["harness.testing.plugin"]
