"""Fixtures for the annotation app tests.

`db_url` runs a test once on SQLite (a file in tmp_path) and once on PostgreSQL, in a fresh schema
of the database at $GLM_ALIGN_TEST_PG_URL (default postgresql://glm:glm@127.0.0.1:5432/glm_align_test,
created by .ci/services.sh); the PostgreSQL case skips with the reason when no server answers.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

PG_URL = os.environ.get("GLM_ALIGN_TEST_PG_URL", "postgresql://glm:glm@127.0.0.1:5432/glm_align_test")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

_pg_state: dict = {}


def pg_unavailable_reason() -> str | None:
    if "reason" not in _pg_state:
        try:
            import psycopg2

            conn = psycopg2.connect(PG_URL.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=3)
            conn.close()
            _pg_state["reason"] = None
        except Exception as e:  # noqa: BLE001
            _pg_state["reason"] = f"PostgreSQL not reachable at {PG_URL} ({type(e).__name__}: {str(e).strip()[:120]}); run .ci/services.sh as root"
    return _pg_state["reason"]


@pytest.fixture
def pg_url():
    """A URL of a fresh, empty PostgreSQL schema (dropped afterwards)."""
    reason = pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    import psycopg2

    schema = "t_" + uuid.uuid4().hex[:12]
    conn = psycopg2.connect(PG_URL, connect_timeout=3)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'annotations.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'annotations.db'}"
    return request.getfixturevalue("pg_url")


