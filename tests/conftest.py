"""Suite-wide fixtures."""

import pytest


@pytest.fixture(autouse=True)
def restore_environment():
    """Code under test may set process-wide variables (the colocated vLLM engine sets RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT as a launcher would); they must not make later tests look distributed."""
    import os

    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one process-wide AcceleratorState; a test that builds an Accelerator with other
    settings (TRL's trainers pick their own precision) must not leak them into the next test."""
    yield
    import sys

    if "accelerate" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
