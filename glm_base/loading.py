"""Load a model directory (a Hugging Face directory: ``config.json``, weights, tokenizer files).

Every stage that reads a model someone else trained goes through :func:`load_model_and_tokenizer`,
so a wrong path gets the same clear error everywhere ("model directory ... not found") instead of
the hub's "Repo id must be in the form 'repo_name'...", and glm_base's auto classes are registered.
"""

from __future__ import annotations

from pathlib import Path

from common.errors import UserError


class ModelDirError(UserError):
    """The path is not a model directory (missing, or without config.json / tokenizer files)."""


def check_model_dir(path: str | Path, what: str = "model directory", hint: str = "") -> Path:
    """``path`` as a Path if it holds ``config.json``; else :class:`ModelDirError` naming it."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"{what} {path} not found{': ' + hint if hint else ''}")
    if not (path / "config.json").is_file():
        raise ModelDirError(f"{what} {path} has no config.json: it is not a Hugging Face model directory"
                            f"{'; ' + hint if hint else ''}")
    return path


def load_model_and_tokenizer(path: str | Path, *, model_class=None, what: str = "model directory",
                             hint: str = "", eval_mode: bool = False, **model_kwargs):
    """``(model, tokenizer)`` from a model directory. ``model_class`` defaults to
    ``AutoModelForCausalLM`` (glm_base's classes are registered by importing this package)."""
    path = check_model_dir(path, what, hint)
    import glm_base  # noqa: F401  (registers GLMConfig / GLMForCausalLM with the auto classes)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise ModelDirError(f"{what} {path} has no tokenizer files (tokenizer.json)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = (model_class or AutoModelForCausalLM).from_pretrained(path, **model_kwargs)
    if eval_mode:
        model.eval()
    return model, tokenizer
