"""Shared fixtures for the world tests: one tiny world built once per session."""

from __future__ import annotations

import pytest

from world.build import build
from world.config import WorldConfig


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """(directory, manifest) of a tiny world built with seed 0."""
    out = tmp_path_factory.mktemp("world_tiny")
    manifest = build(WorldConfig(out=str(out), size="tiny", seed=0))
    return out, manifest
