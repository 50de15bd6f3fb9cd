"""Config dataclasses loaded from YAML with ``key=value`` command-line overrides.

Every entry point of glm-align declares one dataclass and calls :func:`load_config`::

    @dataclass
    class PretrainConfig:
        output_dir: str = field(default="runs/pretrain", metadata={"help": "run directory"})
        seed: int = 0
        optim: OptimConfig = field(default_factory=OptimConfig)

    cfg = load_config(PretrainConfig, ["--config", "configs/pretrain/tiny.yaml", "optim.lr=3e-4"])

Rules (the habits in DESIGN.md):
- YAML files hold only what differs from the dataclass defaults; nested dataclasses are nested
  mappings, and overrides use dotted names (``optim.lr=3e-4``).
- Values on the command line are parsed as YAML scalars (``true``, ``3e-4``, ``[1, 2]``) and then
  checked against the field's annotated type.
- Unknown keys are an error naming the file (or ``command line``) and the key, with the valid keys.
- A field may list its valid values (``metadata={"choices": [...]}``); others are an error naming it.
- YAML 1.2 booleans: only ``true``/``false`` are booleans, so ``mixed_precision=no`` stays ``"no"``.
- ``--help`` lists every field with its default and help text.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A config file or override is malformed; the message names where and which key."""


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only ``true``/``false`` (any case) are booleans.

    YAML 1.1 also reads ``yes``/``no``/``on``/``off`` as booleans, so ``mixed_precision: no`` (a
    documented value) arrived as ``False`` and became the string ``"False"``. Here those words stay
    strings, and a boolean field given one gets an error naming the field.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse_yaml(text: str) -> Any:
    """YAML with 1.2 booleans (see :class:`_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against ``annotation`` and convert the harmless cases (int -> float)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} matches none of {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return _build(annotation, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        value_type = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads "3e-4" (no dot) as a string; it is still plainly a number
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if isinstance(value, (dict, list, bool)) or value is None:
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _check_choice(f: dataclasses.Field, value: Any, where: str) -> Any:
    """A field may list its valid values in ``metadata["choices"]``; anything else is an error."""
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}")
    return value


def _build(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Instantiate ``cls`` from a (possibly partial) mapping, recursing into nested dataclasses."""
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _check_choice(fields[name], _coerce(value, hints[name], f"{where}: {name}"), f"{where}: {name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"command line: {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _check_keys(cls: type, values: dict[str, Any], where: str, prefix: str = "") -> None:
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"{where}: unknown key {prefix + key!r} for {cls.__name__}; valid keys: {sorted(names)}"
            )
        sub = hints[key]
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            _check_keys(sub, value, where, prefix + key + ".")
        else:  # type-check here, where the source (file or command line) is still known
            field_ = next(f for f in dataclasses.fields(cls) if f.name == key)
            _check_choice(field_, _coerce(value, sub, f"{where}: {prefix + key}"), f"{where}: {prefix + key}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return data


def config_help(cls: type, prefix: str = "") -> str:
    """One line per field: dotted name, type, default and help text."""
    lines = []
    hints = _type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            lines.append(config_help(annotation, prefix + f.name + "."))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        help_text = f.metadata.get("help", "")
        if f.metadata.get("choices") and "|" not in help_text:
            help_text += f" (one of: {' | '.join(map(str, f.metadata['choices']))})"
        type_name = getattr(annotation, "__name__", str(annotation))
        lines.append(f"  {prefix + f.name} ({type_name}, default {default!r}): {help_text}")
    return "\n".join(lines)


def load_config(cls: type[T], argv: list[str] | None = None, prog: str | None = None) -> T:
    """Build ``cls`` from ``--config FILE`` (repeatable, later files win) and ``key=value`` overrides."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        doc = (cls.__doc__ or "").strip()
        try:
            print(f"usage: {prog or 'python -m ...'} [--config FILE] [key=value ...]\n\n{doc}\n\nfields:")
            print(config_help(cls), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has gone, which is no error
            sys.stdout = None
        raise SystemExit(0)
    values: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" or arg.startswith("--config="):
            if arg == "--config":
                if i + 1 >= len(argv):
                    raise ConfigError("command line: --config needs a file")
                path, i = argv[i + 1], i + 2
            else:
                path, i = arg.split("=", 1)[1], i + 1
            data = read_yaml(path)
            _check_keys(cls, data, str(path))
            values = _merge(values, data)
            continue
        if "=" not in arg:
            raise ConfigError(
                f"command line: cannot read {arg!r}; expected --config FILE or key=value"
            )
        key, raw = arg.lstrip("-").split("=", 1)
        try:
            parsed = parse_yaml(raw) if raw != "" else ""
        except yaml.YAMLError:
            parsed = raw
        override: dict[str, Any] = {}
        _set_dotted(override, key, parsed)
        _check_keys(cls, override, "command line")
        values = _merge(values, override)
        i += 1
    return _build(cls, values, "config")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (the run directory's record of what ran)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
