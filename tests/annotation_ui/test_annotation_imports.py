"""The app stays light: importing it, its serve path and `serve --help` never import torch or
transformers (only `annotation_ui.generate` loads a model, lazily, inside its function)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers")

PROBE = """
import json, runpy, sys
{body}
print("MODULES=" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def heavy_modules_after(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=HEAVY)
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    line = [x for x in p.stdout.splitlines() if x.startswith("MODULES=")][-1]
    return json.loads(line[len("MODULES="):])


@pytest.mark.parametrize("body", [
    "import annotation_ui",
    "import annotation_ui.app, annotation_ui.serve, annotation_ui.handlers, annotation_ui.io, annotation_ui.store",
    "import annotation_ui.generate",  # the model loads only when generate_candidates runs
    "import annotation_ui.__main__ as m\nm.build_parser()",
])
def test_imports_do_not_load_torch(body):
    assert heavy_modules_after(body) == []


def test_serve_help_does_not_load_torch():
    body = """
sys.argv = ["annotation_ui", "serve", "--help"]
try:
    runpy.run_module("annotation_ui", run_name="__main__")
except SystemExit as e:
    assert e.code in (0, None), e.code
"""
    assert heavy_modules_after(body) == []


def test_serve_help_lists_the_fields():
    p = subprocess.run([sys.executable, "-m", "annotation_ui", "serve", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for f in ("db", "port", "overlap", "write_overlap", "lease_seconds"):
        assert f in p.stdout
