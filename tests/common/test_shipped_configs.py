"""Every shipped YAML config loads into its entry point's dataclass, holds every value it sets, and
starts with a comment showing the command that runs it."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from common.config import load_config, read_yaml

REPO = Path(__file__).resolve().parents[2]

# config folder -> (module whose command the file's first line names, config class)
ENTRY_POINTS = {
    "pretrain": ("glm_base.pretrain", "PretrainConfig"),
    "cloze": ("glm_base.cloze", "ClozeConfig"),
    "sft": ("align.sft", "SFTConfig"),
    "rm": ("rewards.train", "RMConfig"),
    "annotation": ("annotation_ui", "annotation_ui.app:ServeConfig"),
    "pipeline": ("align.pipeline", "PipelineConfig"),
    "dpo": ("align.dpo", "DPOConfig"),
    "ppo": ("align.ppo", "PPOConfig"),
}


def shipped_configs():
    for folder, (module, cls) in ENTRY_POINTS.items():
        for path in sorted((REPO / "configs" / folder).glob("*.yaml")):
            yield pytest.param(path, module, cls, id=f"{folder}/{path.name}")


def config_class(module: str, name: str):
    where, _, attr = name.rpartition(":")
    return getattr(importlib.import_module(where or module), attr)


def assert_holds(cfg, values: dict, where: str = "") -> None:
    """Each value the YAML sets is the config's value (nested sections compared field by field)."""
    for key, expected in values.items():
        actual = getattr(cfg, key)
        if dataclasses.is_dataclass(actual) and isinstance(expected, dict):
            assert_holds(actual, expected, f"{where}{key}.")
        elif isinstance(actual, float):
            assert actual == pytest.approx(float(expected)), f"{where}{key}"
        else:
            assert actual == expected, f"{where}{key}: file says {expected!r}, config holds {actual!r}"


def test_every_config_folder_is_covered():
    folders = {p.name for p in (REPO / "configs").iterdir() if p.is_dir()} - {"accelerate"}
    assert folders <= set(ENTRY_POINTS), f"configs/ folders without a test entry: {folders - set(ENTRY_POINTS)}"


@pytest.mark.parametrize("path, module, cls", list(shipped_configs()))
def test_shipped_config_loads_with_every_value_it_sets(path, module, cls):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and module in first and str(path.relative_to(REPO)) in first, first
    cfg = load_config(config_class(module, cls), ["--config", str(path)])
    values = read_yaml(path)
    assert values, f"{path} sets nothing"
    assert_holds(cfg, values)
