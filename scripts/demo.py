"""``make demo``: the end-to-end pipeline on the embedded default data, stage by stage.

Each stage runs its real entry point (the same command a user would type) as a subprocess, writes
into ``--out`` (default ``runs/demo``), and the demo ends with ``SUMMARY.md`` and ``summary.json``
holding every figure. Stages so far: the synthetic world, blank-infilling pretraining (with its
tokenizer), infill and the held-out fact probe, export to transformers' ``GlmForCausalLM`` with a
logit-parity check, PET cloze fine-tuning, and the annotation store (import the world's
preferences, record rankings, export training pairs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable


def stage(title: str, cmd: list[str], log: Path) -> float:
    print(f"\n=== {title}\n$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        raise SystemExit(f"demo: stage '{title}' failed (exit {proc.returncode}); last lines of {log}:\n{tail}")
    print(f"    done in {seconds:.0f}s (log: {log})", flush=True)
    return seconds


def export_parity(checkpoint: Path, exported: Path) -> float:
    """Max |logit difference| between our checkpoint and the exported GlmForCausalLM on causal text."""
    import torch
    from transformers import AutoTokenizer, GlmForCausalLM

    import glm_base  # noqa: F401
    from glm_base import GLMForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = tokenizer(["Velda is the capital of Lorin.", "维达是洛林的首都。"], return_tensors="pt", padding=True)
    ours = GLMForCausalLM.from_pretrained(checkpoint).eval()
    theirs = GlmForCausalLM.from_pretrained(exported).eval()
    with torch.no_grad():
        a = ours(**ids).logits
        b = theirs(**ids).logits
    mask = ids["attention_mask"].bool()
    return float((a - b).abs()[mask].max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--pretrain-config", default="configs/pretrain/tiny.yaml")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage (smoke test)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    summary: dict = {"stages": {}}
    quick = ["max_steps=20", "eval_every=10", "save_every=10", "eval_batches=1"] if args.quick else []

    world = out / "world"
    summary["stages"]["world"] = stage("1. synthetic bilingual world",
                                       [PY, "-m", "world.build", "--out", str(world), "--size", "tiny", "--seed", "0"],
                                       logs / "world.log")
    manifest = json.loads((world / "manifest.json").read_text(encoding="utf-8"))
    summary["world"] = {kind: {"train": entry["train"]["rows"], "eval": entry["eval"]["rows"]}
                        for kind, entry in manifest["files"].items()}

    pretrain_dir = out / "pretrain"
    summary["stages"]["pretrain"] = stage(
        "2. tokenizer + GLM blank-infilling pretraining",
        [PY, "-m", "glm_base.pretrain", "--config", args.pretrain_config, f"output_dir={pretrain_dir}", "overwrite=true",
         f"data.train_files=[{world / 'corpus' / 'train.jsonl'}]",
         f"data.eval_files=[{world / 'corpus' / 'eval.jsonl'}]", *quick],
        logs / "pretrain.log")
    pretrain = json.loads((pretrain_dir / "summary.json").read_text(encoding="utf-8"))
    summary["pretrain"] = {k: v for k, v in pretrain.items() if k.startswith("eval/") or k in ("steps", "tokens_seen")}
    model = pretrain_dir / "model"

    summary["stages"]["infill"] = stage(
        "3. infill with the pretrained model",
        [PY, "-m", "glm_base.infill", "--model", str(model), "--spans",
         "Jorbel Venbri is a painter by [MASK]. Jorbel Venbri lives in [MASK].",
         "维达是洛林的首都。维达位于[MASK]河畔。", "The Nisbel kettle is made by[gMASK]"],
        logs / "infill.log")
    summary["infill_examples"] = (logs / "infill.log").read_text(encoding="utf-8").splitlines()[-8:]
    probe_json = out / "fact_probe.json"
    summary["stages"]["fact_probe"] = stage(
        "4. held-out fact probe",
        [PY, "-m", "glm_base.fact_probe", "--model", str(model), "--world", str(world),
         "--limit", "60" if args.quick else "300", "--out", str(probe_json), "--plot", str(out / "fact_probe.png")],
        logs / "fact_probe.log")
    probe = json.loads(probe_json.read_text(encoding="utf-8"))
    summary["fact_probe"] = {k: probe[k] for k in ("probes", "accuracy", "choice_accuracy", "chance", "majority",
                                                   "accuracy_by_lang")}

    exported = out / "export-hf"
    summary["stages"]["export"] = stage("5. export to transformers GlmForCausalLM",
                                        [PY, "-m", "glm_base.export", "--model", str(model), "--out", str(exported)],
                                        logs / "export.log")
    summary["export_max_abs_logit_diff"] = export_parity(model, exported)

    cloze_config = Path("configs/cloze/tiny.yaml")
    if cloze_config.is_file():
        cloze_dir = out / "cloze"
        summary["stages"]["cloze"] = stage(
            "6. PET cloze fine-tuning (32 examples) vs linear probe",
            [PY, "-m", "glm_base.cloze", "--config", str(cloze_config), f"output_dir={cloze_dir}", "overwrite=true",
             f"init_from={model}", *(["max_steps=10"] if args.quick else [])],
            logs / "cloze.log")
        cloze_summary = cloze_dir / "summary.json"
        if cloze_summary.is_file():
            summary["cloze"] = json.loads(cloze_summary.read_text(encoding="utf-8"))

    annotation_dir = out / "annotation"
    summary["stages"]["annotation"] = stage(
        "7. annotation store: 3 simulated annotators rank the world's held-out prompts; export pairs",
        [PY, "-m", "scripts.annotation_demo", "--world", str(world), "--out", str(annotation_dir)],
        logs / "annotation.log")
    summary["annotation"] = json.loads((annotation_dir / "summary.json").read_text(encoding="utf-8"))

    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = ["# glm-align demo", "", f"Output: `{out}`", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.0f} |" for name, sec in summary["stages"].items()]
    lines += ["", "## Pretraining (held-out masked-token accuracy vs unigram baseline)", "",
              "| objective | loss | accuracy | unigram baseline |", "|---|---|---|---|"]
    for objective in ("blank", "sentence", "document"):
        lines.append(f"| {objective} | {pretrain[f'eval/{objective}/loss']:.3f} | "
                     f"{pretrain[f'eval/{objective}/accuracy']:.3f} | {pretrain[f'eval/{objective}/unigram_accuracy']:.3f} |")
    lines += ["", f"Loss curve: `{pretrain_dir / 'loss_curve.png'}`", "",
              "## Fact probe", "", f"{probe['probes']} held-out facts: generated exactly {probe['accuracy']:.3f}, "
              f"ranked first among the relation's values {probe['choice_accuracy']:.3f}; "
              f"chance {probe['chance']:.3f}, majority {probe['majority']:.3f}. "
              f"By relation: `{out / 'fact_probe.png'}`", "",
              f"Export parity (max |logit diff|): {summary['export_max_abs_logit_diff']:.2e}", "",
              "## Annotation", "", f"{summary['annotation']['submissions']} simulated rankings of "
              f"{summary['annotation']['items']} prompts -> {summary['annotation']['pairs']} training pairs; "
              f"consensus equals the world's ground truth on "
              f"{100 * summary['annotation']['consensus_equals_ground_truth']:.0f}% of prompts", ""]
    (out / "SUMMARY.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
