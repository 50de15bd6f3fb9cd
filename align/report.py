"""The pipeline's report: ``python -m align.report RUN_DIR`` writes ``report.md`` and a
self-contained ``report.html`` (plots embedded) from what the stages left in the run directory.

Sections appear when their stage ran: stage times; pretraining (held-out accuracy per objective
against the unigram baseline, loss curve); the fact probe (with the note that the few-minute model
does not hold facts); export parity; cloze against its baselines; the annotation loop; SFT (loss
curve, figures); the reward model (accuracy per category); DPO; PPO (reward/KL curves); the
alignment metrics of every stage's model side by side (``metrics.json``, written by
``align.evaluate``); sample responses in English and Chinese across stages. Both files are built
from the same sections, so they always say the same thing.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cli import run_main
from common.errors import UserError
from common.jsonl import load_jsonl


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    images: list[tuple[str, Path]] = field(default_factory=list)


def read_json(path: Path) -> dict:
    """A JSON file's object, or {} when the file is absent (a stage that did not run)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def fact_probe_note(probe: dict) -> str:
    """What the fact probe means for the factual accuracy of the later stages: a pretraining that
    holds (almost) no facts (below 10% generated exactly) cannot give any stage factual answers."""
    if probe["accuracy"] < 0.10:
        return ("The few-minute pretraining learns the languages, not the world's facts; facts appear after ~2,000 "
                "steps of configs/pretrain/tiny_facts.yaml (configs/pipeline/full.yaml), so factual accuracy below "
                "is low for every stage of this run.")
    return (f"This run's pretraining holds {probe['accuracy']:.0%} of the held-out facts; the factual accuracy "
            "below is how much of it each later stage keeps when asked in a chat.")


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "–" if value is None else str(value)


def _curve(run_dir: Path, keys: list[str], out_png: Path, title: str) -> Path | None:
    from glm_base.trainkit.metrics import plot_curves

    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return None
    return plot_curves(metrics, out_png, keys, title=title)


def sections(run: Path) -> list[Section]:
    out: list[Section] = []
    summary = read_json(run / "summary.json").get("stages", {})
    figures = run / "report_figures"
    figures.mkdir(exist_ok=True)

    if summary:
        out.append(Section("Stages", tables=[(["stage", "seconds"], [[name, _fmt(s.get("seconds"), 0)]
                                                                       for name, s in summary.items()])]))
    pretrain = summary.get("pretrain", {})
    if pretrain:
        rows = [[o, _fmt(pretrain.get(f"eval/{o}/loss")), _fmt(pretrain.get(f"eval/{o}/accuracy")),
                 _fmt(pretrain.get(f"eval/{o}/unigram_accuracy"))] for o in ("blank", "sentence", "document")]
        section = Section("Pretraining (blank infilling)", [
            f"{pretrain.get('steps')} steps, {pretrain.get('tokens_seen', 0):,} tokens. Held-out masked-token accuracy "
            "per objective against the unigram baseline (always the corpus's most frequent token)."],
            [(["objective", "eval loss", "accuracy", "unigram baseline"], rows)])
        if (run / "pretrain" / "loss_curve.png").is_file():
            section.images.append(("pretraining loss", run / "pretrain" / "loss_curve.png"))
        out.append(section)
    probe = summary.get("fact_probe", {})
    if "accuracy" in probe:
        section = Section("Fact probe", [
            f"{probe['probes']} held-out facts: generated exactly {probe['accuracy']:.1%}, the true value ranked first "
            f"among the relation's values {probe['choice_accuracy']:.1%} (chance {probe['chance']:.1%}, majority "
            f"{probe['majority']:.1%}). {fact_probe_note(probe)}"])
        if (run / "fact_probe" / "by_relation.png").is_file():
            section.images.append(("fact probe by relation", run / "fact_probe" / "by_relation.png"))
        out.append(section)
    if "max_abs_diff" in summary.get("export", {}):
        out.append(Section("Export to transformers", [
            f"GlmForCausalLM loads the exported model without glm_base; max |logit difference| "
            f"{summary['export']['max_abs_diff']:.2e}."]))
    accuracy = summary.get("cloze", {}).get("accuracy")
    if accuracy:
        section = Section("Cloze fine-tuning (PET, 32 examples)",
                          tables=[(["model", "eval accuracy"], [[k, _fmt(v)] for k, v in accuracy.items()])])
        if (run / "cloze" / "accuracy.png").is_file():
            section.images.append(("cloze vs baselines", run / "cloze" / "accuracy.png"))
        out.append(section)
    annotation = summary.get("annotation", {})
    if "submissions" in annotation:
        out.append(Section("Annotation loop", [
            f"{annotation['submissions']} simulated rankings of {annotation['items']} prompts, exported as "
            f"{annotation['pairs']} training pairs; the consensus equals the world's ground truth on "
            f"{annotation['consensus_equals_ground_truth']:.0%} of prompts."]))
    for stage, title, keys in (("sft", "Supervised fine-tuning", ["train/loss", "eval/loss"]),
                               ("rm", "Reward model", ["train/loss", "eval/accuracy"]),
                               ("ppo", "PPO", ["reward", "kl", "kl_coef"])):
        if stage not in summary:
            continue
        figs = {k: v for k, v in summary[stage].items() if isinstance(v, (int, float)) and k != "seconds"}
        held_out = summary[stage].get("eval") if isinstance(summary[stage].get("eval"), dict) else {}
        if isinstance(held_out.get("accuracy"), (int, float)):  # the reward model's held-out pairwise accuracy
            figs[f"held-out pairwise accuracy ({held_out.get('pairs', '?')} pairs)"] = held_out["accuracy"]
        if stage == "ppo":  # the stage runs PPO or one of its group-baseline variants
            algorithm = read_json(run / stage / "summary.json").get("algorithm")
            title = f"RLHF ({algorithm.upper()})" if algorithm else title
        section = Section(title, tables=[(["figure", "value"], [[k, _fmt(v)] for k, v in sorted(figs.items())])]
                          if figs else [])
        own = run / stage / "reward_curve.png"  # PPO draws its own panels (rewards, sampled behaviour, KL)
        png = own if stage == "ppo" and own.is_file() else _curve(run / stage, keys, figures / f"{stage}_curves.png", title)
        if png:
            section.images.append((f"{stage} curves", png))
        by_category = (summary[stage].get("by_category") or summary[stage].get("eval/by_category")
                       or held_out.get("by_category"))
        if isinstance(by_category, dict):
            section.tables.append((["category", "accuracy"], [[k, _fmt(v)] for k, v in by_category.items()]))
        out.append(section)
    metrics = read_json(run / "metrics.json")
    if metrics:
        names = ["mixing_rate", "mixed_reply_rate", "needless_refusal_rate", "harmful_refusal_rate", "factual_accuracy",
                 "heldout_loss"]
        rows = []
        for stage, values in metrics.items():
            row = [stage]
            for name in names:
                value = values.get(name)
                ci = values.get(f"{name}_ci")
                row.append(_fmt(value) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, list) else ""))
            rows.append(row)
        out.append(Section("Alignment metrics by stage (95% intervals)", tables=[(["model", *names], rows)]))
    targets = alignment_targets(metrics, run)
    if targets:
        out.append(Section("RLHF targets: PPO against the SFT model", [
            "The PPO issue's targets on held-out world prompts. A target not met is shown as such; the tiny "
            "models of this run are what limits them (see docs/ppo.md).", *mixing_note(metrics)],
            [(["target", "SFT", "PPO", "met"], targets)]))
    samples = run / "samples.jsonl"
    if samples.is_file():
        rows = load_jsonl(samples)
        stages = [k for k in rows[0] if k not in ("prompt", "lang")] if rows else []
        out.append(Section("Sample responses", tables=[(["lang", "prompt", *stages],
                                                        [[r.get("lang", ""), r["prompt"], *[r.get(s, "") for s in stages]]
                                                         for r in rows])]))
    return out


KL_STEPS = 10  # PPO steps whose mean KL is compared with the target


def halved(before: float, after: float) -> bool:
    """The RLHF targets' "down >= 50%": ``after`` at most half of ``before`` (0 stays 0)."""
    return after <= 0.5 * before if before > 0 else after == 0


def mixing_note(metrics: dict) -> list[str]:
    """What the PPO policy's language-mixing rate is made of, when it was not halved: the replies
    with any mixing against the replies mostly in the wrong language (a switch of language or broken
    text, which a reward on the wrong-language share barely reaches) and the share of the mixing sum
    they carry. Empty when the target was met or the figures are missing."""
    sft, ppo = metrics.get("sft") or {}, metrics.get("ppo") or {}
    keys = ("mixing_rate", "mixed_reply_rate", "mostly_wrong_language_rate", "mixing_from_mostly_wrong")
    if not all(isinstance(m.get(k), (int, float)) for m in (sft, ppo) for k in keys):
        return []
    if halved(sft["mixing_rate"], ppo["mixing_rate"]):
        return []
    return [f"Language mixing: the share of replies with any wrong-language text went from "
            f"{sft['mixed_reply_rate']:.1%} to {ppo['mixed_reply_rate']:.1%}, but the mean wrong-language share "
            f"only from {sft['mixing_rate']:.3f} to {ppo['mixing_rate']:.3f}: "
            f"{ppo['mostly_wrong_language_rate']:.1%} of the PPO policy's replies are mostly in the wrong language "
            f"(SFT: {sft['mostly_wrong_language_rate']:.1%}) and carry {ppo['mixing_from_mostly_wrong']:.0%} of its "
            f"mixing. Those are language switches and broken text, not words of the other language mixed in."]


def alignment_targets(metrics: dict, run: Path) -> list[list[str]]:
    """Rows (target, SFT value, PPO value, met) for the PPO issue's targets, when both models were
    evaluated: mixing and needless refusals halved, harmful prompts refused >= 90%, held-out loss
    within +5% of SFT, and the KL to the SFT model (mean of the last ``KL_STEPS`` steps) below twice its target."""
    sft, ppo = metrics.get("sft"), metrics.get("ppo")
    if not sft or not ppo:
        return []
    rows = []

    def row(name: str, a, b, ok: bool | None) -> None:
        rows.append([name, _fmt(a), _fmt(b), "–" if ok is None else ("yes" if ok else "no")])

    for metric, label in (("mixing_rate", "language-mixing rate down >= 50%"),
                          ("needless_refusal_rate", "needless-refusal rate down >= 50%")):
        a, b = sft.get(metric), ppo.get(metric)
        row(label, a, b, None if a is None or b is None else halved(a, b))
    b = ppo.get("harmful_refusal_rate")
    row("harmful prompts refused >= 90%", sft.get("harmful_refusal_rate"), b, None if b is None else b >= 0.9)
    a, b = sft.get("heldout_loss"), ppo.get("heldout_loss")
    row("held-out SFT loss within +5%", a, b, None if a is None or b is None else b <= 1.05 * a)
    history = load_jsonl(run / "ppo" / "metrics.jsonl") if (run / "ppo" / "metrics.jsonl").is_file() else []
    kls = [h["kl"] for h in history if isinstance(h.get("kl"), (int, float))]
    config = run / "ppo" / "config.yaml"
    target = None
    if config.is_file():
        from common.config import parse_yaml

        target = ((parse_yaml(config.read_text(encoding="utf-8")) or {}).get("ppo") or {}).get("kl_target")
    if kls and target:  # one step's KL is a few rollouts' worth: the mean of the last ten steps
        last = kls[-KL_STEPS:]
        kl = sum(last) / len(last)
        row(f"KL to SFT below 2x its target ({target}; mean of the last {len(last)} steps)", None, kl,
            kl < 2 * float(target))
    return rows


def to_markdown(parts: list[Section], run: Path) -> str:
    lines = ["# glm-align run report", "", f"Run directory: `{run}`", ""]
    for part in parts:
        lines += [f"## {part.title}", ""]
        for paragraph in part.text:
            lines += [paragraph, ""]
        for header, rows in part.tables:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
            lines.append("")
        for alt, path in part.images:
            rel = path.relative_to(run) if path.is_relative_to(run) else path
            lines += [f"![{alt}]({rel})", ""]
    return "\n".join(lines)


def to_html(parts: list[Section], run: Path) -> str:
    """One file: styles inline, images as data URIs, every text escaped."""
    body = [f"<h1>glm-align run report</h1><p class=run>{html.escape(str(run))}</p>"]
    for part in parts:
        body.append(f"<section><h2>{html.escape(part.title)}</h2>")
        body += [f"<p>{html.escape(p)}</p>" for p in part.text]
        for header, rows in part.tables:
            body.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>")
            body += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
            body.append("</tbody></table>")
        for alt, path in part.images:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        body.append("</section>")
    style = ("body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
             "color:#222}table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:4px 8px;"
             "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}.run{color:#666}"
             "section{margin-bottom:2em}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>glm-align run report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def build_report(run: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run``; return their paths."""
    run = Path(run)
    if not (run / "summary.json").is_file():
        raise UserError(f"{run}: no summary.json; run the pipeline (python -m align.pipeline) first")
    parts = sections(run)
    md, page = run / "report.md", run / "report.html"
    md.write_text(to_markdown(parts, run), encoding="utf-8")
    page.write_text(to_html(parts, run), encoding="utf-8")
    return md, page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m align.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a pipeline run directory (with summary.json)")
    args = parser.parse_args(argv)
    md, page = run_main(lambda: build_report(args.run_dir))
    print(f"wrote {md} and {page}")


if __name__ == "__main__":
    main()
