"""Fixtures for the align tests (models come from tests/align/rl_helpers.py)."""

import pytest


@pytest.fixture(params=["glm1", "glm4"])
def architecture(request) -> str:
    return request.param
