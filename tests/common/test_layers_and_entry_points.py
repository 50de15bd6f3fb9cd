"""The layers import one way (the base and the world never pull in torch), and every entry point
ends a user's mistake with one ``error:`` line and exit status 2 (tracebacks are for bugs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "datasets", "accelerate")


def modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('LOADED:', *(m for m in sys.modules if m.split('.')[0] in %r))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.rsplit("LOADED:", 1)[1].split())


@pytest.mark.parametrize("code", [
    "import common, common.config, common.jsonl, common.rankings, common.cli",
    "import world, world.build, world.default, world.judge, world.schema",
    "import runpy, sys\nsys.argv = ['world.build', '--help']\ntry:\n    runpy.run_module('world.build', run_name='__main__')\nexcept SystemExit:\n    pass",
], ids=["common", "world", "world.build --help"])
def test_base_and_world_do_not_import_torch(code):
    assert modules_after(code) == set()


def test_world_imports_nothing_of_ours_but_common():
    for path in (REPO / "world").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for package in ("glm_base", "rewards", "align", "annotation_ui"):
            assert f"from {package}" not in text and f"import {package}" not in text, f"{path} imports {package}"


def test_common_imports_nothing_of_ours():
    for path in (REPO / "common").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for package in ("glm_base", "world", "rewards", "align", "annotation_ui"):
            assert f"from {package}" not in text and f"import {package}" not in text, f"{path} imports {package}"


def test_model_code_knows_no_particular_data():
    for name in ("modeling.py", "configuration.py", "tokenizer.py", "infilling.py", "generation.py"):
        text = (REPO / "glm_base" / name).read_text(encoding="utf-8")
        assert "world" not in {line.split()[1].split(".")[0] for line in text.splitlines()
                               if line.startswith(("from ", "import "))}, name
    for path in (REPO / "glm_base" / "trainkit").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "from world" not in text and "modeling" not in text, f"{path}: trainkit knows no model and no data"


@pytest.mark.parametrize("argv, expected", [
    (["-m", "glm_base.pretrain", "optim.lrr=1"], "unknown key 'optim.lrr'"),
    (["-m", "glm_base.pretrain", "mixed_precision=fp8"], "'fp8' is not one of"),
    (["-m", "glm_base.cloze", "init_from=/nowhere/model"], "init_from /nowhere/model not found"),
    (["-m", "glm_base.infill", "--model", "/nowhere/model", "a [MASK] b"], "model directory /nowhere/model not found"),
    (["-m", "glm_base.fact_probe", "--model", "/nowhere/model"], "model directory /nowhere/model not found"),
    (["-m", "glm_base.export", "--checkpoint", "/nowhere/model", "--out", "/tmp/x"], "/nowhere/model"),
    (["-m", "glm_base.tokenizer", "--corpus", "/nowhere.txt", "--vocab-size", "300", "--out", "/tmp/x"], "/nowhere.txt"),
    (["-m", "world.build", "--size", "huge"], "'huge' is not one of"),
    (["-m", "world.build", "--config", "/nowhere.yaml"], "config file not found: /nowhere.yaml"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_user_errors_end_with_one_error_line_and_status_2(argv, expected, tmp_path):
    out = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert lines[-1].startswith("error: ") and expected in lines[-1], lines[-1]
