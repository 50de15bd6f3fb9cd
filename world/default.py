"""The embedded default data of every stage: the synthetic bilingual world, built on first use.

Every stage's tiny config runs on the world when it names no files of its own. The world is
generated (never downloaded) into ``data/world/<size>-seed<seed>`` once; later calls reuse it. A
build goes to a temporary directory and is renamed when complete, so concurrent processes (e.g. the
ranks of a launch) and interrupted builds never see half a world; trainers also let only their main
process build it while the others wait (``Run.main_process_first``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from world.build import build
from world.config import WORLD_VERSION, WorldConfig
from world.schema import KINDS

DEFAULT_ROOT = Path(os.environ.get("GLM_ALIGN_DATA", "data")) / "world"


def world_dir(size: str = "tiny", seed: int = 0, root: str | Path | None = None) -> Path:
    """Directory of the world of ``size`` and ``seed``, building it if absent."""
    root = Path(root) if root is not None else DEFAULT_ROOT
    final = root / f"{size}-seed{seed}"
    if _complete(final):
        return final
    if final.exists():  # built by an older world version, or incomplete: rebuild
        shutil.rmtree(final, ignore_errors=True)
    tmp = root / f".{size}-seed{seed}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    build(WorldConfig(out=str(tmp), size=size, seed=seed))
    try:
        tmp.rename(final)
    except OSError:  # another process finished first: its copy is identical (same seed, same size)
        shutil.rmtree(tmp, ignore_errors=True)
        for _ in range(100):
            if (final / "manifest.json").is_file():
                break
            time.sleep(0.1)
    return final


def built_version(path: str | Path) -> str | None:
    """The world version recorded in the manifest of the world built at ``path``, or None when there is
    no manifest (nothing built there, or a build that did not finish)."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text(encoding="utf-8")).get("version"))


def _complete(path: Path) -> bool:
    return built_version(path) == WORLD_VERSION and all(
        (path / kind / f"{split}.jsonl").is_file() for kind in KINDS for split in ("train", "eval"))


def world_files(kind: str, size: str = "tiny", seed: int = 0, root: str | Path | None = None) -> tuple[str, str]:
    """``(train.jsonl, eval.jsonl)`` paths of one kind of world data (corpus, sft, preferences, ...)."""
    base = world_dir(size, seed, root) / kind
    return str(base / "train.jsonl"), str(base / "eval.jsonl")


def split_files(kind: str, size: str = "tiny", seed: int = 0, built_dir: str | Path = "") -> tuple[str, str]:
    """``(train, eval)`` of the world split ``kind``: from ``built_dir`` (a ``python -m world.build
    --out DIR`` directory, the config's ``data.world_dir``; each file must be there, else a
    :class:`UserError`) when given, else the cached world of ``size`` and ``seed`` (built on first use)."""
    if not built_dir:
        return world_files(kind, size, seed)
    files = tuple(str(Path(built_dir) / kind / f"{name}.jsonl") for name in ("train", "eval"))
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        from common.errors import UserError

        raise UserError(f"data.world_dir: {missing[0]} does not exist (build the world with: "
                        f"python -m world.build --out {built_dir})")
    return files  # type: ignore[return-value]


def safety_probe(n: int, size: str = "tiny", seed: int = 0) -> list[dict]:
    """``n`` held-out safety rows beyond the world's eval split (:func:`world.safety.probe`), built in
    memory: the same size and seed give the same rows."""
    from world.entities import make_world
    from world.io import sub_rng
    from world.safety import probe

    cfg = WorldConfig(size=size, seed=seed)
    return probe(make_world(cfg.counts, sub_rng(seed, "entities")), cfg, n) if n else []
