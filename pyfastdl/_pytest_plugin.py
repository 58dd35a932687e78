"""pytest plugin shared by tests/, benchmarks/ and `pyfastdl bench`: registers pyfastdl's markers and
skips GPU-marked items, with the reason, where CUDA is unusable."""

import pytest

MARKERS = (
    "gpu: needs a CUDA device and a CUDA build of pyfastdl (skipped otherwise)",
    "slow: trains a model to a target; run with `pytest -m slow`",
)


def pytest_configure(config):
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            if reason is None:
                from pyfastdl import backend

                reason = backend.cuda_unavailable_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"no CUDA device: {reason}"))
