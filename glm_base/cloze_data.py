"""Labelled rows for cloze fine-tuning: reading (every field checked), sampling, default files."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.errors import UserError
from common.jsonl import read_jsonl

from .cloze_task import ClozeTask


@dataclass
class ClozeRow:
    text: str
    lang: str
    label: int
    where: str  # "file: row i"


def read_rows(path: str | Path, task: ClozeTask, args) -> list[ClozeRow]:
    """Read a JSONL file of labelled rows, checking every field.

    Raises ``FileNotFoundError`` for a missing file and :class:`UserError` naming the file, the row (1-based
    line) and the field for invalid JSON, a missing field, a label without a verbalizer or a language
    without a pattern. A row without the language field uses the pattern when only one is configured.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cloze data file not found: {path}")
    rows = []
    for line_no, record in read_jsonl(path):
        where = f"{path}: row {line_no}"
        text = record.get(args.text_field)
        if not isinstance(text, str):
            raise UserError(f"{where}: field {args.text_field!r} is missing or not a string (keys: {sorted(record)})")
        if args.label_field not in record:
            raise UserError(f"{where}: field {args.label_field!r} is missing (keys: {sorted(record)})")
        label = record[args.label_field]
        if label not in task.labels:
            raise UserError(f"{where}: field {args.label_field!r} = {label!r} has no verbalizer; "
                             f"labels with verbalizers: {task.labels}")
        lang = record.get(args.lang_field)
        if lang is None and len(task.patterns) == 1:
            lang = next(iter(task.patterns))
        if lang not in task.patterns:
            raise UserError(f"{where}: field {args.lang_field!r} = {lang!r} has no pattern; "
                             f"patterns for {sorted(task.patterns)}")
        rows.append(ClozeRow(text, lang, task.labels.index(label), where))
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def sample_train(rows: Sequence[ClozeRow], n: int, seed: int, balanced: bool = True) -> list[ClozeRow]:
    """``n`` rows drawn with ``seed``: round-robin over the labels when ``balanced`` (as even as the
    data allow), else uniformly. Raises ``ValueError`` when there are fewer than ``n`` rows."""
    if n > len(rows):
        raise UserError(f"n_train={n} but the training file has only {len(rows)} rows")
    rng = random.Random(seed)
    if not balanced:
        return rng.sample(list(rows), n)
    by_label: dict[int, list[ClozeRow]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    pools = [rng.sample(group, len(group)) for _, group in sorted(by_label.items())]
    picked: list[ClozeRow] = []
    while len(picked) < n:
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(pool.pop())
    rng.shuffle(picked)
    return picked


def resolve_files(cfg) -> tuple[str, str]:
    """The train and eval files: the configured ones, or the world's cloze split (built on first
    use, and rebuilt when a stale world lacks it, by ``world.default``)."""
    from world.default import world_files

    if cfg.data.train_file and cfg.data.eval_file:
        return cfg.data.train_file, cfg.data.eval_file
    train, evaluation = world_files("cloze", size=cfg.data.world_scale, seed=cfg.data.world_seed)
    return cfg.data.train_file or train, cfg.data.eval_file or evaluation
