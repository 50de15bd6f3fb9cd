"""runconfig: YAML files and key=value overrides into typed config dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from common.config import ConfigError, load_config
from glm_base.trainkit.optim import OptimArgs


@dataclass
class ToyConfig:
    name: str = "toy"
    steps: int = 10
    optim: OptimArgs = field(default_factory=OptimArgs)


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 (PyYAML) reads 3e-4 as the string "3e-4"; a float field still takes it
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 3e-4\n  eps: 1E-10\n", encoding="utf-8")
    cfg = load_config(ToyConfig, ["--config", str(path), "optim.weight_decay=5e-2"])
    assert (cfg.optim.lr, cfg.optim.eps, cfg.optim.weight_decay) == (3e-4, 1e-10, 0.05)
    assert isinstance(cfg.optim.lr, float)


def test_later_sources_win_and_unset_fields_keep_defaults(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("steps: 5\noptim: {lr: 0.1, warmup_steps: 3}\n", encoding="utf-8")
    second.write_text("optim: {lr: 0.2}\n", encoding="utf-8")
    cfg = load_config(ToyConfig, ["--config", str(first), "--config", str(second), "steps=7"])
    assert (cfg.steps, cfg.optim.lr, cfg.optim.warmup_steps, cfg.optim.beta2) == (7, 0.2, 3, 0.95)


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", "command line: optim.lr: expected a number, got 'fast'"),
    ("steps=2.5", "command line: steps: expected an integer"),
    ("optim.betas=1", "unknown key 'optim.betas'"),
])
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ToyConfig, [override])


def test_bad_file_value_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: [1, 2]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.lr: expected a number, got \[1, 2\]"):
        load_config(ToyConfig, ["--config", str(path)])
