"""Shared by tests/ and benchmarks/: pyfastdl's markers and GPU skips (pyfastdl/_pytest_plugin.py)."""

pytest_plugins = ["pyfastdl._pytest_plugin"]
