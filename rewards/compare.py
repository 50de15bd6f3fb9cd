"""Compare reward checkpoints and rule rewards on one preference file.

    python -m rewards.compare runs/rm-tiny/model rules rules:mixing --data prefs.jsonl --out runs/compare

Each positional argument is a scorer: a reward-model directory (a trained ``rewards.train`` model),
``rules`` (the combined rule reward: ``--rule-weights``, by default every rule that applies to
preference rows with weight 1), ``rules:<name>`` (one rule: mixing, refusal, safety, consistency,
format), or a weighted sum of these joined by ``+`` (``runs/rm/model+2*rules``: the reward model's
centred reward plus twice the rules, as PPO combines them). ``--data`` is a file in the shared preference schema (rankings or pairs, see
:mod:`rewards.data`); by default the tiny world's held-out preferences.

For every scorer, on every ordered pair the rankings imply:

- **pairwise accuracy** overall, per category and per language, with bootstrap 95% confidence
  intervals (prompts resampled with replacement, since the pairs of one prompt are not independent).
  **A tie (equal scores) counts as half right**: a rule that gives two responses the same score is at
  chance on that pair;
- **ties**: the share of pairs scored equal;
- **calibration**: each pair in both orientations, binned by reward gap ``r_first - r_second``; per
  bin, how often the first response is the preferred one against σ(gap), the Bradley–Terry
  prediction (meaningful for reward models, whose gaps are logits; rules' scores are not), and the
  expected calibration error;
- **length**: Spearman correlation of reward and response length (characters), and accuracy on the
  pairs where the chosen response is the longer vs the shorter one: a reward that has learnt "longer
  is better" is right on the first kind and wrong on the second (a reward-hacking signal);
- **agreement** with every other scorer: the share of pairs on which both give the same outcome, and
  Kendall's τ-b between their scores over all responses.

Writes ``report.json`` (``{name: {"accuracy", "accuracy_ci", "by_category", "by_lang", ...}}``),
``report.md`` and PNG plots (accuracy by category, reliability, score histograms) to ``--out`` and
prints a table. Errors (a missing model directory, an unknown rule, a bad row) end with one
``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from common.cli import run_main
from common.errors import UserError

from .data import PreferenceGroup, encode_groups, read_preferences
from .scoring import PairOutcome, accuracy, pair_outcomes

# The combined rule reward when --rule-weights is not given: the rules that score preference rows
# (format needs truncation metadata that preference rows do not carry).
DEFAULT_RULE_WEIGHTS = {"mixing": 1.0, "refusal": 1.0, "safety": 1.0, "consistency": 1.0}


# --- scorers ---------------------------------------------------------------------------------------

def rule_scores(spec: str, groups: Sequence[PreferenceGroup], weights: dict[str, float],
                world_dir: str | None = None) -> list[list[float]]:
    """Per-response scores of ``rules`` (the weighted combination) or ``rules:<name>`` (one rule)."""
    from .rules import build_rules, world_from_dir

    names = weights if spec == "rules" else {spec: 1.0}
    world = world_from_dir(world_dir) if world_dir else None
    try:
        rules = build_rules(names, world=world)
    except ValueError as err:
        raise UserError(str(err)) from None
    prompts = [g.context for g in groups for _ in g.responses]
    responses = [r for g in groups for r in g.responses]
    metadata = [g.meta for g in groups for _ in g.responses]
    flat = rules.score(prompts, responses, metadata).total
    out, start = [], 0
    for g in groups:
        out.append(flat[start:start + len(g.responses)])
        start += len(g.responses)
    return out


def model_scores(path: str, groups: Sequence[PreferenceGroup], max_length: int, batch_size: int) -> list[list[float]]:
    """Per-response rewards of the reward model in directory ``path`` (its own tokenizer and offset)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from glm_base.loading import load_model_and_tokenizer

    from .scoring import score_groups

    model, tokenizer = load_model_and_tokenizer(path, model_class=AutoModelForSequenceClassification,
                                                what="reward model directory", eval_mode=True)
    if model.config.num_labels != 1:
        raise UserError(f"{path} has num_labels={model.config.num_labels}: not a reward model (expected 1)")
    from .evidence import load_evidence

    encoded, _ = encode_groups(groups, tokenizer, max_length, truncation="left",
                               evidence=load_evidence(path, model.config))
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id or 0
    with torch.no_grad():
        return score_groups(model, encoded, pad, batch_size)


def scorer_terms(spec: str) -> list[tuple[float, str]]:
    """The ``(weight, scorer)`` terms of a scorer: one scorer, or a weighted sum such as
    ``runs/rm/model+2*rules`` (what PPO optimises when it adds the reward model to the rules). A
    path that exists is one scorer even when its name holds a ``+``."""
    if "+" not in spec or Path(spec).exists():
        return [(1.0, spec)]
    terms = []
    for part in spec.split("+"):
        weight, star, name = part.partition("*")
        if not star:
            weight, name = "1", part
        try:
            value = float(weight)
        except ValueError:
            raise UserError(f"scorer {spec!r}: bad weight {weight!r} in {part!r} (write e.g. 2*rules)") from None
        if not name.strip():
            raise UserError(f"scorer {spec!r}: an empty term (write e.g. runs/rm/model+rules)")
        terms.append((value, name.strip()))
    return terms


def single_scores(spec: str, groups, args) -> list[list[float]]:
    if spec == "rules" or spec.startswith("rules:"):
        return rule_scores(spec, groups, args.rule_weights, args.world)
    return model_scores(spec, groups, args.max_length, args.batch_size)


def scores_for(spec: str, groups, args, cache: dict | None = None) -> list[list[float]]:
    """Per-response scores of a scorer (a sum scores each response with its terms' weighted sum);
    ``cache`` keeps each term's scores so a model named alone and in a sum is run once."""
    cache = {} if cache is None else cache
    total: list[list[float]] | None = None
    for weight, name in scorer_terms(spec):
        if name not in cache:
            cache[name] = single_scores(name, groups, args)
        part = [[weight * x for x in row] for row in cache[name]]
        total = part if total is None else [[a + b for a, b in zip(x, y)] for x, y in zip(total, part)]
    return total  # type: ignore[return-value]


# --- statistics ------------------------------------------------------------------------------------

def bootstrap_ci(outcomes: Sequence[PairOutcome], resamples: int, seed: int) -> list[float]:
    """95% interval of pairwise accuracy, resampling prompts (all pairs of a prompt together)."""
    if not outcomes:
        return [float("nan"), float("nan")]
    per_group: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for o in outcomes:
        per_group[o.group][0] += o.outcome
        per_group[o.group][1] += 1
    sums = np.array([v[0] for v in per_group.values()])
    counts = np.array([v[1] for v in per_group.values()])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(resamples, len(sums)))
    values = sums[picks].sum(1) / counts[picks].sum(1)
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either variable corrected); nan when one variable is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    dx, dy = dx[upper], dy[upper]
    denominator = math.sqrt(float((dx != 0).sum()) * float((dy != 0).sum()))
    return float((dx * dy).sum() / denominator) if denominator else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ (average ranks for ties); nan when one variable is constant."""
    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # average the ranks of tied values
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def calibration(outcomes: Sequence[PairOutcome], bins: int = 10) -> dict:
    """Both orientations of every pair binned by gap ``r_first - r_second``: mean gap, mean σ(gap),
    the observed share of entries whose first response is the preferred one, count; ECE =
    count-weighted mean |observed - predicted|. The label is the preference, never the scores."""
    gaps = np.array([o.chosen_score - o.rejected_score for o in outcomes] +
                    [o.rejected_score - o.chosen_score for o in outcomes])
    wins = np.array([1.0] * len(outcomes) + [0.0] * len(outcomes))
    predicted = 1 / (1 + np.exp(-gaps))
    edges = np.unique(np.quantile(gaps, np.linspace(0, 1, bins + 1)))
    index = np.clip(np.searchsorted(edges, gaps, side="right") - 1, 0, max(len(edges) - 2, 0))
    table = []
    for b in range(max(len(edges) - 1, 1)):
        chosen = index == b
        if chosen.any():
            table.append({"gap": float(gaps[chosen].mean()), "predicted": float(predicted[chosen].mean()),
                          "observed": float(wins[chosen].mean()), "count": int(chosen.sum())})
    ece = sum(abs(row["observed"] - row["predicted"]) * row["count"] for row in table) / max(len(gaps), 1)
    return {"bins": table, "ece": float(ece)}


def scorer_report(groups, scores, resamples: int, seed: int) -> dict:
    outcomes = pair_outcomes(groups, scores)
    by_category, by_lang = defaultdict(list), defaultdict(list)
    for o in outcomes:
        by_category[o.category].append(o)
        by_lang[o.lang].append(o)
    lengths = [len(r) for g in groups for r in g.responses]
    flat = [s for group in scores for s in group]
    longer, shorter = [], []
    for o, (g, pair) in zip(outcomes, [(g, p) for g in groups for p in g.pairs]):
        chosen_len, rejected_len = len(g.responses[pair.chosen]), len(g.responses[pair.rejected])
        (longer if chosen_len > rejected_len else shorter if chosen_len < rejected_len else []).append(o)
    return {
        "accuracy": accuracy(outcomes),
        "accuracy_ci": bootstrap_ci(outcomes, resamples, seed),
        "pairs": len(outcomes),
        "ties": sum(o.outcome == 0.5 for o in outcomes) / max(len(outcomes), 1),
        "by_category": {k: accuracy(v) for k, v in sorted(by_category.items())},
        "by_category_ci": {k: bootstrap_ci(v, resamples, seed) for k, v in sorted(by_category.items())},
        "by_category_pairs": {k: len(v) for k, v in sorted(by_category.items())},
        "by_lang": {k: accuracy(v) for k, v in sorted(by_lang.items())},
        "by_lang_ci": {k: bootstrap_ci(v, resamples, seed) for k, v in sorted(by_lang.items())},
        "calibration": calibration(outcomes),
        "length": {"spearman": spearman(flat, lengths),
                   "accuracy_chosen_longer": accuracy(longer), "pairs_chosen_longer": len(longer),
                   "accuracy_chosen_shorter": accuracy(shorter), "pairs_chosen_shorter": len(shorter)},
        "scores": {"mean": float(np.mean(flat)), "std": float(np.std(flat)), "min": float(np.min(flat)),
                   "max": float(np.max(flat))},
    }


def agreement(groups, a: list[list[float]], b: list[list[float]]) -> dict:
    oa, ob = pair_outcomes(groups, a), pair_outcomes(groups, b)
    same = sum(x.outcome == y.outcome for x, y in zip(oa, ob)) / max(len(oa), 1)
    return {"pairwise": same, "kendall_tau": kendall_tau_b([s for g in a for s in g], [s for g in b for s in g])}


# --- output ----------------------------------------------------------------------------------------

def _fmt(value: float) -> str:
    return "  -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _ci(interval) -> str:
    return f"[{_fmt(interval[0])}, {_fmt(interval[1])}]"


def terminal_table(report: dict) -> str:
    names = list(report)
    categories = sorted({c for r in report.values() for c in r["by_category"]})
    langs = sorted({lang for r in report.values() for lang in r["by_lang"]})
    header = ["scorer", "accuracy", "95% CI", "ties", *categories, *langs, "len rho"]
    rows = [[name, _fmt(r["accuracy"]), _ci(r["accuracy_ci"]), _fmt(r["ties"]),
             *[_fmt(r["by_category"].get(c, float("nan"))) for c in categories],
             *[_fmt(r["by_lang"].get(lang, float("nan"))) for lang in langs], _fmt(r["length"]["spearman"])]
            for name, r in report.items()]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)]) if names else ""


def markdown(report: dict, data: str, resamples: int) -> str:
    names = list(report)
    categories = sorted({c for r in report.values() for c in r["by_category"]})
    langs = sorted({lang for r in report.values() for lang in r["by_lang"]})
    first = report[names[0]]
    out = [f"# Reward comparison on `{data}`", "",
           f"{first['pairs']} ordered pairs from the rankings. Pairwise accuracy: the share of pairs whose "
           f"chosen response scores higher; **a tie (equal scores) counts as half right**. 95% intervals: "
           f"{resamples} bootstrap resamples of the prompts.", "",
           "| scorer | accuracy | 95% CI | ties | " + " | ".join(langs) + " |",
           "|---|---|---|---|" + "---|" * len(langs)]
    for name, r in report.items():
        out.append(f"| `{name}` | {_fmt(r['accuracy'])} | {_ci(r['accuracy_ci'])} | {_fmt(r['ties'])} | "
                   + " | ".join(f"{_fmt(r['by_lang'].get(lang))} {_ci(r['by_lang_ci'].get(lang, [None, None]))}"
                                for lang in langs) + " |")
    out += ["", "## By category", "", "| category (pairs) | " + " | ".join(f"`{n}`" for n in names) + " |",
            "|---|" + "---|" * len(names)]
    for c in categories:
        pairs = first["by_category_pairs"].get(c, 0)
        out.append(f"| {c} ({pairs}) | " + " | ".join(
            f"{_fmt(report[n]['by_category'].get(c))} {_ci(report[n]['by_category_ci'].get(c, [None, None]))}"
            for n in names) + " |")
    out += ["", "## Length (reward-hacking signal)", "",
            "| scorer | Spearman(reward, length) | accuracy, chosen longer | accuracy, chosen shorter |",
            "|---|---|---|---|"]
    for name, r in report.items():
        length = r["length"]
        out.append(f"| `{name}` | {_fmt(length['spearman'])} | {_fmt(length['accuracy_chosen_longer'])} "
                   f"({length['pairs_chosen_longer']}) | {_fmt(length['accuracy_chosen_shorter'])} "
                   f"({length['pairs_chosen_shorter']}) |")
    out += ["", "## Calibration", "",
            "Each pair in both orientations, binned by reward gap r_first - r_second: how often the first is the preferred response, against σ(gap). "
            "Only a reward model's gaps are logits; for rules σ(gap) is not a prediction.", "",
            "| scorer | ECE | bins (gap: observed / σ(gap), n) |", "|---|---|---|"]
    for name, r in report.items():
        bins = "; ".join(f"{b['gap']:+.2f}: {b['observed']:.2f}/{b['predicted']:.2f}, {b['count']}"
                         for b in r["calibration"]["bins"])
        out.append(f"| `{name}` | {_fmt(r['calibration']['ece'])} | {bins} |")
    if len(names) > 1:
        out += ["", "## Agreement", "", "Pairwise: the share of pairs with the same outcome (right, wrong or tie). "
                "τ: Kendall's τ-b of the two scorers' rewards over all responses.", "",
                "| | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
        for a in names:
            cells = []
            for b in names:
                if a == b:
                    cells.append("-")
                else:
                    ag = report[a]["agreement"][b]
                    cells.append(f"{ag['pairwise']:.2f} (τ {_fmt(ag['kendall_tau'])})")
            out.append(f"| `{a}` | " + " | ".join(cells) + " |")
    out += ["", "![accuracy by category](accuracy_by_category.png)", "", "![reliability](reliability.png)", "",
            "![score histograms](score_histograms.png)", ""]
    return "\n".join(out)


def plots(report: dict, scores: dict, groups, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report)
    categories = sorted({c for r in report.values() for c in r["by_category"]})
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * (len(categories) + 1)), 4.6))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [report[name]["accuracy"]] + [report[name]["by_category"].get(c, float("nan")) for c in categories]
        ax.bar(np.arange(len(values)) + k * width, values, width, label=name)
    ax.set_xticks(np.arange(len(categories) + 1) + 0.4 - width / 2, ["all", *categories], rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("pairwise accuracy")
    ax.legend(fontsize=7, ncol=min(len(names), 3), loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(out / "accuracy_by_category.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    grid = np.linspace(-6, 6, 200)
    ax.plot(grid, 1 / (1 + np.exp(-grid)), color="grey", lw=1, label="σ(gap)")
    for name in names:
        bins = report[name]["calibration"]["bins"]
        ax.plot([b["gap"] for b in bins], [b["observed"] for b in bins], marker="o", label=name)
    ax.set_xlabel("reward gap (first - second)")
    ax.set_ylabel("observed P(first preferred)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        best = [s for g, gs in zip(groups, scores[name]) for s, rank in zip(gs, g.ranking or [1, 2]) if rank == 1]
        rest = [s for g, gs in zip(groups, scores[name]) for s, rank in zip(gs, g.ranking or [1, 2]) if rank != 1]
        ax.hist([best, rest], bins=20, label=["rank 1", "others"], stacked=False)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "score_histograms.png", dpi=120)
    plt.close(fig)


# --- entry point -----------------------------------------------------------------------------------

def parse_weights(text: str) -> dict[str, float]:
    weights = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected name=number, got {item!r}") from None
    return weights


def compare(scorers: Sequence[str], data: Sequence[str], out: str | Path, args) -> dict:
    """Score ``data`` with every scorer, write the report files to ``out``; return ``report.json``'s dict."""
    if len(set(scorers)) != len(scorers):
        raise UserError(f"a scorer is named twice: {list(scorers)}")
    groups, data_report = read_preferences(list(data), args.bad_rows)
    cache: dict = {}
    scores = {spec: scores_for(spec, groups, args, cache) for spec in scorers}
    report = {spec: scorer_report(groups, s, args.bootstrap, args.seed) for spec, s in scores.items()}
    for a in scorers:
        report[a]["agreement"] = {b: agreement(groups, scores[a], scores[b]) for b in scorers if b != a}
        report[a]["dropped_rows"] = data_report.to_dict()["dropped"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "report.md").write_text(markdown(report, ", ".join(map(str, data)), args.bootstrap), encoding="utf-8")
    plots(report, scores, groups, out)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rewards.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("scorers", nargs="+", help="reward-model directories, 'rules', 'rules:<name>', or sums of them such as 'DIR+2*rules'")
    p.add_argument("--data", nargs="+", default=None, help="preference JSONL file(s); default: the tiny world's held-out preferences")
    p.add_argument("--out", required=True, help="directory for report.md, report.json and the plots")
    p.add_argument("--rule-weights", type=parse_weights, default=dict(DEFAULT_RULE_WEIGHTS),
                   help="weights of the combined 'rules' scorer, e.g. mixing=1,refusal=2 (default: %(default)s)")
    p.add_argument("--world", default=None, help="world directory for the consistency rule's world facts")
    p.add_argument("--bad-rows", choices=["error", "drop"], default="error", help="a bad row stops (error) or is skipped")
    p.add_argument("--max-length", type=int, default=1024, help="token limit per prompt + response (prompt cut on the left)")
    p.add_argument("--batch-size", type=int, default=32, help="responses per reward-model forward")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)

    def body():
        data = args.data
        if not data:
            from .data import default_files

            data = [default_files()[1]]
        report = compare(args.scorers, data, args.out, args)
        print(terminal_table(report))
        print(f"\nties count as half right; report: {Path(args.out) / 'report.md'}")
        return report

    return run_main(body)


if __name__ == "__main__":
    main()
