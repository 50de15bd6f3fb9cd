"""Suite-wide fixtures."""

import pytest


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one process-wide AcceleratorState; a test that builds an Accelerator with other
    settings (TRL's trainers pick their own precision) must not leak them into the next test."""
    yield
    import sys

    if "accelerate" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
