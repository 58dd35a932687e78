"""Shared by tests/ and benchmarks/: GPU-marked items skip, with the reason, where CUDA is unusable."""

import pytest


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            if reason is None:
                from pyfastdl import backend

                reason = backend.cuda_unavailable_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"no CUDA device: {reason}"))
