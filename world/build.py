"""Build the synthetic bilingual world: ``python -m world.build --out DIR --size tiny --seed 0``.

Writes ``DIR/<kind>/train.jsonl`` and ``DIR/<kind>/eval.jsonl`` for every kind in
:data:`world.schema.KINDS` plus ``DIR/manifest.json`` (version, seed, size, config, per-file rows,
bytes and sha256, schema, flaw rates configured and realised, cloze verbalizers). The same seed,
size and config give byte-identical files. Also accepts ``--config FILE`` and ``key=value``
overrides of :class:`world.config.WorldConfig` (e.g. ``flaws.mixed=0.2``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

from common.cli import run_main
from common.config import ConfigError, load_config

from world import schema
from world.config import WORLD_VERSION, WorldConfig
from world.corpus import build_corpus
from world.entities import World, make_world
from world.io import number_ids, split, sub_rng, write_jsonl

log = logging.getLogger("world.build")

DESCRIPTIONS = {
    "corpus": "EN/ZH pretraining documents about the world's entities (profiles, stories, lists, arithmetic, QA)",
    "cloze": "EN/ZH product reviews labelled positive/negative, for PET-style cloze fine-tuning",
    "sft": "chat SFT rows (single and multi-turn) with reference answers; train rows carry flaws at known rates",
    "preferences": "ranked responses per prompt (ranking[i] = rank of responses[i], 1 = best, ties share a rank)",
    "safety": "harmful (clearly fictional) vs benign-but-alarming prompts with the expected behaviour",
    "long": "long-context SFT: needle retrieval, multi-document QA, long-list summary, 1k-32k approx tokens",
}


def _generators() -> dict[str, Callable[[World, WorldConfig], tuple[list[dict], list[dict], dict]]]:
    """kind -> function(world, cfg) returning (train_rows, eval_rows, manifest_extra)."""

    def corpus(world: World, cfg: WorldConfig):
        docs = build_corpus(world, sub_rng(cfg.seed, "corpus"))
        train, evl = split(docs, cfg.eval_fraction / 2, sub_rng(cfg.seed, "corpus-split"))
        return number_ids(train, "corpus-train"), number_ids(evl, "corpus-eval"), {}

    gens: dict[str, Callable] = {"corpus": corpus}
    try:
        from world import cloze, long, preferences, safety, sft  # noqa: F401
    except ImportError:  # pragma: no cover - during incremental development
        return gens
    gens.update(cloze=cloze.generate, sft=sft.generate, preferences=preferences.generate,
                safety=safety.generate, long=long.generate)
    return gens


def build(cfg: WorldConfig) -> dict[str, Any]:
    """Generate every file of the world into ``cfg.out``; return the manifest."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    world = make_world(cfg.counts, sub_rng(cfg.seed, "entities"))
    manifest: dict[str, Any] = {
        "name": "glm-align synthetic bilingual world",
        "version": WORLD_VERSION,
        "seed": cfg.seed,
        "size": cfg.size,
        "config": dataclasses.asdict(cfg) | {"out": None},
        "entities": {k: len(v) for k, v in sorted(world.by_type.items())},
        "files": {},
    }
    for kind, gen in _generators().items():
        train, evl, extra = gen(world, cfg)
        entry: dict[str, Any] = {"description": DESCRIPTIONS[kind], "schema": schema_doc(kind)}
        for split_name, rows in (("train", train), ("eval", evl)):
            target = out / kind / f"{split_name}.jsonl"
            info = write_jsonl(target, rows)
            info["path"] = f"{kind}/{split_name}.jsonl"
            entry[split_name] = info
        entry.update(extra)
        manifest["files"][kind] = entry
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest


def schema_doc(kind: str) -> dict[str, str]:
    """Field -> description, as written in the manifest."""
    common = {"id": "string, unique per file", "lang": "'en' | 'zh' (language of the prompt/text)"}
    docs = {
        "corpus": {"text": "document text (sentences end with . ! ? or 。！？)",
                   "meta": "{kind: profile|story|list|arithmetic|qa, entities: [entity ids], pair: id shared by an EN/ZH parallel pair or ''}"},
        "cloze": {"text": "review", "label": "label name", "label_id": "index into labels",
                  "meta": "{product: entity id}"},
        "sft": {"category": "fact_qa|multi_turn|instruction|rewrite|translation|arithmetic|safety",
                "messages": "[{role: system|user|assistant, content}] ending with the assistant answer",
                "meta": "{flaw: none|mixed|needless_refusal|padding, answer_lang, expected: help|refuse, answers: [accepted answers], wrong: [competing values]}"},
        "preferences": {"category": "|".join(schema.PREFERENCE_CATEGORIES),
                        "prompt": "single-turn prompt (absent when messages is given)",
                        "messages": "multi-turn context ending with a user turn (absent when prompt is given)",
                        "responses": "[K strings], K = 2..6",
                        "ranking": "[K ints], ranking[i] = rank of responses[i], 1 = best, ties share a rank (dense)",
                        "reasons": "[K strings], why each response sits where it does",
                        "meta": "{labels: [K flaw codes], answer_lang, answers, wrong}"},
        "safety": {"prompt": "user prompt", "label": "harmful | benign", "expected": "refuse | help",
                   "category": "topic", "reference": "reference reply with the expected behaviour"},
        "long": {"task": "needle | multidoc_qa | list_summary",
                 "messages": "[user (long context + question), assistant (answer)]",
                 "meta": "{approx_tokens, chars, answer, answers, needle, needle_start, needle_end, depth, gold_doc, n_docs, n_items}"},
    }
    return common | docs[kind]


def _translate_flags(argv: list[str]) -> list[str]:
    """--out DIR --size S --seed N (argparse style) -> key=value overrides for load_config."""
    out, i = [], 0
    flags = {"--out": "out", "--size": "size", "--seed": "seed"}
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in flags:
            if "=" in arg:
                out.append(f"{flags[name]}={arg.split('=', 1)[1]}")
                i += 1
            else:
                if i + 1 >= len(argv):
                    raise ConfigError(f"command line: {arg} needs a value")
                out.append(f"{flags[name]}={argv[i + 1]}")
                i += 2
            continue
        out.append(arg)
        i += 1
    return out


def parse_config(argv: list[str]) -> WorldConfig:
    """``--out/--size/--seed`` (argparse style), ``--config FILE``, ``key=value`` overrides and
    ``--help``, through the torch-free :mod:`common.config`."""
    return load_config(WorldConfig, _translate_flags(argv), prog="python -m world.build")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = run_main(lambda: parse_config(argv))
    start = time.perf_counter()
    manifest = build(cfg)
    took = time.perf_counter() - start
    for kind, entry in manifest["files"].items():
        log.info("%-12s train %6d rows %9d bytes | eval %5d rows %8d bytes", kind,
                 entry["train"]["rows"], entry["train"]["bytes"], entry["eval"]["rows"], entry["eval"]["bytes"])
    log.info("built the %s world (seed %d) in %s in %.1f s", cfg.size, cfg.seed, cfg.out, took)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
