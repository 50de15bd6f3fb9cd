"""Do pretrained weights know the world's facts? Mask a fact's value in held-out documents and infill.

For every held-out corpus document of the synthetic world that states a fact of one of its entities
("Jorbel Venbri lives in Nelgor."), the value ("Nelgor") is replaced by ``[MASK]`` and the model
fills it in with :func:`glm_base.generation.infill_with_spans` (greedy). A probe counts as recovered
when the generated span equals the value exactly (whitespace stripped).

Two baselines answer "is that more than chance?": ``chance`` is the mean over probes of 1 / (number
of distinct values the relation takes in the world), i.e. guessing uniformly among plausible values;
``majority`` always answers the relation's most common value.

Two scores: ``accuracy`` (free generation: the greedy span must be the value, and stop there) and
``choice_accuracy`` (the value gets the highest infill likelihood, span plus ``<eop>``, among all
the values the relation takes in the world, in the probe's language: the very setting of the chance
baseline). Generation is the harder test: a model can rank the right value first well before it
produces it unprompted and stops after it.

The result also breaks both scores down by relation (``by_relation``, with each relation's chance);
``--plot`` draws that as a bar chart.

    python -m glm_base.fact_probe --checkpoint runs/pretrain-tiny/model [--world DIR] [--limit 300] [--plot P.png]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from common.cli import run_main
from common.errors import UserError

from .generation import infill_with_spans, span_log_likelihoods


def _load_world(world_dir: Path):
    from world.config import WorldConfig
    from world.entities import make_world
    from world.io import sub_rng

    manifest = json.loads((world_dir / "manifest.json").read_text(encoding="utf-8"))
    cfg = WorldConfig(size=manifest["size"], seed=manifest["seed"])
    return make_world(cfg.counts, sub_rng(cfg.seed, "entities"))


def fact_probes(world_dir: str | Path, split: str = "eval", limit: int | None = 300, seed: int = 0) -> list[dict]:
    """Probes ``{"text", "value", "relation", "lang", "doc_id"}`` from the world's corpus ``split``."""
    from world.templates import sayable

    world_dir = Path(world_dir)
    world = _load_world(world_dir)
    probes = []
    for line in (world_dir / "corpus" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        text, lang = row["text"], row["lang"]
        for entity_id in row["meta"]["entities"]:
            entity = world.entities.get(entity_id)
            if entity is None or entity.name(lang) not in text:
                continue
            for fact in sayable(entity):
                value = fact.value(lang)
                if len(value) < 2 or text.count(value) != 1:
                    continue  # absent, or ambiguous to mask
                masked = text.replace(value, "[MASK]")
                probes.append({"text": masked, "value": value, "relation": fact.relation, "lang": lang,
                               "doc_id": row["id"]})
    random.Random(seed).shuffle(probes)
    return probes[:limit] if limit else probes


def relation_values(world_dir: str | Path) -> dict[tuple[str, str], Counter]:
    """(relation, lang) -> counts of the values that relation takes over the whole world."""
    world = _load_world(Path(world_dir))
    values: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for entity in world.entities.values():
        for fact in entity.facts:
            for lang in ("en", "zh"):
                values[(fact.relation, lang)][fact.value(lang)] += 1
    return values


@torch.no_grad()
def run_probe(model, tokenizer, world_dir: str | Path, split: str = "eval", limit: int | None = 300,
              progress: bool = True) -> dict:
    probes = fact_probes(world_dir, split, limit)
    values = relation_values(world_dir)
    model.eval()
    hits, chance, majority = 0, 0.0, 0
    by_lang: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    examples = []
    chosen_right = 0
    chosen_by_lang: dict[str, int] = defaultdict(int)
    by_relation: dict[str, dict[str, float]] = defaultdict(lambda: {"probes": 0, "accuracy": 0.0,
                                                                    "choice_accuracy": 0.0, "chance": 0.0})
    for probe in tqdm(probes, desc="fact probe", disable=not progress):
        result = infill_with_spans(model, tokenizer, probe["text"], max_new_tokens=12)
        guess = result.spans[0].strip()
        ok = guess == probe["value"]
        hits += ok
        by_lang[probe["lang"]][0] += ok
        by_lang[probe["lang"]][1] += 1
        counts = values[(probe["relation"], probe["lang"])]
        options = sorted(counts)
        scores = span_log_likelihoods(model, tokenizer, probe["text"], options)
        chosen = options[max(range(len(options)), key=scores.__getitem__)]
        chosen_ok, guess_chance = chosen == probe["value"], 1.0 / max(len(counts), 1)
        chosen_right += chosen_ok
        chosen_by_lang[probe["lang"]] += chosen_ok
        chance += guess_chance
        majority += counts.most_common(1)[0][0] == probe["value"]
        rel = by_relation[probe["relation"]]
        rel["probes"] += 1
        rel["accuracy"] += ok
        rel["choice_accuracy"] += chosen_ok
        rel["chance"] += guess_chance
        if len(examples) < 8:
            examples.append({"text": probe["text"], "value": probe["value"], "generated": guess, "chosen": chosen})
    n = max(len(probes), 1)
    return {
        "probes": len(probes),
        "accuracy": hits / n,
        "chance": chance / n,
        "majority": majority / n,
        "accuracy_by_lang": {lang: h / max(t, 1) for lang, (h, t) in by_lang.items()},
        "choice_accuracy": chosen_right / n,
        "choice_accuracy_by_lang": {lang: chosen_by_lang[lang] / max(t, 1) for lang, (_, t) in by_lang.items()},
        "by_relation": {name: {"probes": int(r["probes"]), **{k: r[k] / r["probes"] for k in
                                                              ("accuracy", "choice_accuracy", "chance")}}
                        for name, r in sorted(by_relation.items(), key=lambda item: (-item[1]["probes"], item[0]))},
        "examples": examples,
    }


def plot_by_relation(result: dict, out_png: str | Path, title: str = "held-out fact probe") -> Path:
    """Bars per relation (most probed first): exact infill and choice accuracy, with each
    relation's chance level marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result["by_relation"].items())
    names = [f"{name} ({r['probes']})" for name, r in rows]
    y = range(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 1.4))
    ax.barh([i - 0.2 for i in y], [r["accuracy"] for _, r in rows], height=0.4, label="exact infill")
    ax.barh([i + 0.2 for i in y], [r["choice_accuracy"] for _, r in rows], height=0.4, label="value ranked first")
    ax.scatter([r["chance"] for _, r in rows], list(y), marker="|", s=120, color="black", label="chance", zorder=3)
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.set_title(f"{title}: exact {result['accuracy']:.1%}, choice {result['choice_accuracy']:.1%}, "
                 f"chance {result['chance']:.1%}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glm_base.fact_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", "--checkpoint", dest="checkpoint", required=True,
                        help="model directory (a run's model/ or checkpoints/step-N/)")
    parser.add_argument("--world", default=None, help="world directory (default: the tiny world, seed 0)")
    parser.add_argument("--split", default="eval")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--out", default=None, help="write the result JSON here")
    parser.add_argument("--plot", default=None, help="write a per-relation bar chart (PNG) here")
    args = parser.parse_args(argv)
    run_main(lambda: probe(args))


def probe(args) -> None:
    from world.default import world_dir as default_world_dir

    from .loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(args.checkpoint)
    world = Path(args.world) if args.world else default_world_dir("tiny", 0)
    if not (world / "manifest.json").is_file():
        raise UserError(f"--world {world}: not a world directory (no manifest.json); build one with python -m world.build")
    result = run_probe(model, tokenizer, world, args.split, args.limit)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.plot:
        plot_by_relation(result, args.plot, f"fact probe, {'/'.join(Path(args.checkpoint).resolve().parts[-2:])}")
    print(text)


if __name__ == "__main__":
    main()
