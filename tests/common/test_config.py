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


def config_classes():
    from annotation_ui.app import ServeConfig
    from glm_base.cloze import ClozeConfig
    from glm_base.pretrain import PretrainConfig
    from world.config import WorldConfig

    return [PretrainConfig, ClozeConfig, ServeConfig, WorldConfig]


def fields_with_choices(cls, prefix=""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from fields_with_choices(hints[f.name], prefix + f.name + ".")
        elif f.metadata.get("choices"):
            yield prefix + f.name, f.metadata["choices"]


def test_every_documented_value_of_every_field_parses_to_itself(tmp_path):
    """mixed_precision=no used to arrive as the string "False" (YAML 1.1 reads no/yes/on/off as
    booleans); every value a field documents must come back as itself, from the command line and
    from a file."""
    checked = 0
    for cls in config_classes():
        for dotted, choices in fields_with_choices(cls):
            for value in choices:
                cfg = load_config(cls, [f"{dotted}={value}"])
                node = cfg
                for part in dotted.split("."):
                    node = getattr(node, part)
                assert node == value, f"{cls.__name__}.{dotted}={value} parsed as {node!r}"
                path = tmp_path / "c.yaml"
                section, _, leaf = dotted.rpartition(".")
                text = f"{leaf}: {value}\n" if not section else f"{section}:\n  {leaf}: {value}\n"
                path.write_text(text)
                cfg = load_config(cls, ["--config", str(path)])
                node = cfg
                for part in dotted.split("."):
                    node = getattr(node, part)
                assert node == value, f"{cls.__name__}.{dotted}: {value} in a file parsed as {node!r}"
                checked += 1
    assert checked >= 15  # precision x2, architecture, world sizes x3, scoring, probe features ...


def test_yaml_booleans_are_only_true_and_false():
    @dataclass
    class Flags:
        resume: bool = False
        mode: str = "auto"

    assert load_config(Flags, ["resume=true", "mode=no"]) == Flags(resume=True, mode="no")
    assert load_config(Flags, ["mode=off"]).mode == "off"
    with pytest.raises(ConfigError, match=r"command line: resume: expected true or false, got 'yes'"):
        load_config(Flags, ["resume=yes"])
    with pytest.raises(ConfigError, match=r"mode: expected a string, got True"):
        load_config(Flags, ["mode=true"])


def test_a_value_outside_the_choices_names_the_field():
    from glm_base.pretrain import PretrainConfig

    with pytest.raises(ConfigError, match=r"command line: mixed_precision: 'fp8' is not one of \['auto', 'no', 'bf16', 'fp16'\]"):
        load_config(PretrainConfig, ["mixed_precision=fp8"])
    with pytest.raises(ConfigError, match=r"model\.architecture: 'glm3' is not one of"):
        load_config(PretrainConfig, ["model.architecture=glm3"])
