"""The whole GLM recipe in one command: ``python -m align.pipeline --config configs/pipeline/demo.yaml``.

Each stage runs its real entry point (the command a user would type) as a subprocess writing into
one run directory (``output_dir``, ``runs/demo`` for ``make demo``): the synthetic world, blank
infilling pretraining, infill, the fact probe, export to transformers, cloze, the annotation store,
and, where their configs exist, SFT, the annotation loop closed on the SFT model's own answers
(:mod:`align.feedback`), the reward model on that export and the world's preferences, DPO and PPO. A stage that finished writes
``<stage>/.done``; a rerun skips it, so an interrupted pipeline resumes where it stopped.
``--force STAGE`` (repeatable) reruns that stage and every stage after it that depends on it.

The terminal shows the stage list (done / running / left) and the running stage's own progress line
(its tqdm bar and latest figures); full logs go to ``<output_dir>/logs/<stage>.log``. The run ends
with ``summary.json`` (every stage's figures and time), ``SUMMARY.md`` and the report
(``report.md`` and a self-contained ``report.html``, :mod:`align.report`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from common.cli import fail, run_main
from common.config import load_config
from common.errors import UserError

from .report import build_report, fact_probe_note, read_json

PY = sys.executable


@dataclass
class PipelineConfig:
    """The end-to-end GLM recipe on the embedded default data (align.pipeline)."""

    output_dir: str = field(default="runs/demo", metadata={"help": "run directory of the whole pipeline"})
    stages: list[str] = field(default_factory=list, metadata={
        "help": "stages to run, in order (empty = every stage whose config exists)"})
    force: list[str] = field(default_factory=list, metadata={
        "help": "stages to rerun with everything that depends on them (also --force STAGE)"})
    world_scale: str = field(default="tiny", metadata={"help": "size of the synthetic world",
                                                       "choices": ["tiny", "small", "medium"]})
    world_seed: int = field(default=0, metadata={"help": "seed of the synthetic world"})
    configs: dict[str, str] = field(default_factory=dict, metadata={
        "help": "stage -> its YAML config (defaults: configs/<stage>/tiny.yaml)"})
    overrides: dict[str, list[str]] = field(default_factory=dict, metadata={
        "help": "stage -> extra key=value overrides for its entry point"})
    quick: bool = field(default=False, metadata={"help": "a few steps per stage (a smoke test of the wiring)"})
    fact_probe_limit: int = field(default=300, metadata={"help": "held-out facts probed"})
    feedback_prompts: int = field(default=60, metadata={"help": "prompts the SFT model answers for the annotation loop"})
    eval_prompts: int = field(default=0, metadata={"help": "held-out prompts per model in the final evaluation (0 = all: the world's eval prompts and the safety probe, ~500)"})


DEFAULT_CONFIGS = {"pretrain": "configs/pretrain/tiny.yaml", "cloze": "configs/cloze/tiny.yaml",
                   "sft": "configs/sft/tiny.yaml", "rm": "configs/rm/tiny.yaml", "dpo": "configs/dpo/tiny.yaml",
                   "ppo": "configs/ppo/tiny_grpo.yaml"}
QUICK = {"pretrain": ["max_steps=20", "eval_every=10", "save_every=10", "eval_batches=1"],
         "cloze": ["max_steps=10"], "sft": ["max_steps=10"], "rm": ["max_steps=10", "focus_steps=5"], "dpo": ["max_steps=5"],
         "ppo": ["max_steps=2", "eval.prompts=8", "eval.heldout_rows=8"]}


@dataclass
class Stage:
    """One step of the recipe: its command, what it needs first, and its figures for the summary."""

    name: str
    title: str
    after: tuple[str, ...]
    command: Callable[["Context"], list[str]]
    figures: Callable[["Context"], dict[str, Any]] = lambda ctx: {}
    needs_config: bool = False
    uses: tuple[str, ...] = ()  # stages whose output it reads when they ran (reruns with them)


@dataclass
class Context:
    cfg: PipelineConfig
    out: Path

    def dir(self, stage: str) -> Path:
        return self.out / stage

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def base_model(self) -> Path:
        return self.dir("pretrain") / "model"

    def config(self, stage: str) -> str:
        return self.cfg.configs.get(stage, DEFAULT_CONFIGS.get(stage, ""))

    def extra(self, stage: str) -> list[str]:
        return (QUICK.get(stage, []) if self.cfg.quick else []) + list(self.cfg.overrides.get(stage, []))

    def trainer(self, stage: str, module: str, *args: str) -> list[str]:
        """A training entry point into ``<out>/<stage>``, replacing what a forced rerun left there."""
        return [PY, "-m", module, "--config", self.config(stage), f"output_dir={self.dir(stage)}", "overwrite=true",
                *args, *self.extra(stage)]


def _pick(data: dict, keys) -> dict:
    return {k: data[k] for k in keys if k in data}


STAGES: list[Stage] = [
    Stage("world", "synthetic bilingual world", (),
          lambda c: [PY, "-m", "world.build", "--out", str(c.world), "--size", c.cfg.world_scale,
                     "--seed", str(c.cfg.world_seed)],
          lambda c: {kind: {"train": e["train"]["rows"], "eval": e["eval"]["rows"]}
                     for kind, e in read_json(c.world / "manifest.json").get("files", {}).items()}),
    Stage("pretrain", "tokenizer + GLM blank-infilling pretraining", ("world",),
          lambda c: c.trainer("pretrain", "glm_base.pretrain", f"data.train_files=[{c.world / 'corpus' / 'train.jsonl'}]",
                              f"data.eval_files=[{c.world / 'corpus' / 'eval.jsonl'}]"),
          lambda c: {k: v for k, v in read_json(c.dir("pretrain") / "summary.json").items()
                     if k.startswith("eval/") or k in ("steps", "tokens_seen")}, needs_config=True),
    Stage("infill", "infill with the pretrained model", ("pretrain",),
          lambda c: [PY, "-m", "glm_base.infill", "--model", str(c.base_model), "--spans",
                     "Jorbel Venbri is a painter by [MASK]. Jorbel Venbri lives in [MASK].",
                     "维达是洛林的首都。维达位于[MASK]河畔。", "The Nisbel kettle is made by[gMASK]"],
          lambda c: {"examples": (c.out / "logs" / "infill.log").read_text(encoding="utf-8").splitlines()[-8:]}),
    Stage("fact_probe", "held-out fact probe", ("pretrain",),
          lambda c: [PY, "-m", "glm_base.fact_probe", "--model", str(c.base_model), "--world", str(c.world),
                     "--limit", str(60 if c.cfg.quick else c.cfg.fact_probe_limit),
                     "--out", str(c.dir("fact_probe") / "fact_probe.json"), "--plot", str(c.dir("fact_probe") / "by_relation.png")],
          lambda c: _pick(read_json(c.dir("fact_probe") / "fact_probe.json"),
                          ("probes", "accuracy", "choice_accuracy", "chance", "majority", "accuracy_by_lang"))),
    Stage("export", "export to transformers' GlmForCausalLM (logit parity checked)", ("pretrain",),
          lambda c: [PY, "-m", "glm_base.export", "--model", str(c.base_model), "--out", str(c.dir("export") / "hf"),
                     "--check-parity"],
          lambda c: read_json(c.dir("export") / "hf" / "parity.json")),
    Stage("cloze", "PET cloze fine-tuning (32 examples) vs linear probe", ("pretrain",),
          lambda c: c.trainer("cloze", "glm_base.cloze", f"init_from={c.base_model}"),
          lambda c: _pick(read_json(c.dir("cloze") / "summary.json"), ("accuracy", "n_train")), needs_config=True),
    Stage("annotation", "annotation store: simulated annotators rank and write; export rankings, pairs, SFT rows",
          ("world",),
          lambda c: [PY, "-m", "scripts.annotation_demo", "--world", str(c.world), "--out", str(c.dir("annotation"))],
          lambda c: read_json(c.dir("annotation") / "summary.json")),
    Stage("sft", "supervised fine-tuning on human prompts and safety demonstrations", ("pretrain",),
          lambda c: c.trainer("sft", "align.sft", f"model.init_from={c.base_model}", f"data.world_dir={c.world}"),
          lambda c: read_json(c.dir("sft") / "summary.json"), needs_config=True),
    Stage("feedback", "the SFT model's candidates ranked in the annotation store, exported as rankings", ("sft",),
          lambda c: [PY, "-m", "align.feedback", "--policy", str(c.dir("sft") / "model"), "--world", str(c.world),
                     "--out", str(c.dir("feedback")), "--prompts", "6" if c.cfg.quick else str(c.cfg.feedback_prompts),
                     "--seed", str(c.cfg.world_seed)],
          lambda c: read_json(c.dir("feedback") / "summary.json")),
    Stage("rm", "reward model on the world's preferences + the feedback rankings", ("sft", "feedback"),
          lambda c: c.trainer("rm", "rewards.train", f"model.init_from={c.dir('sft') / 'model'}",
                              f"data.train_files=[{c.world / 'preferences' / 'train.jsonl'}, "
                              f"{c.dir('feedback') / 'rankings.jsonl'}]",
                              f"data.eval_files=[{c.world / 'preferences' / 'eval.jsonl'}]",
                              f"data.world_dir={c.world}"),  # the world whose corpus evidence.knowledge 'world' reads
          lambda c: read_json(c.dir("rm") / "summary.json"), needs_config=True),
    Stage("dpo", "DPO baseline from the SFT model (TRL's DPOTrainer)", ("sft",),
          lambda c: c.trainer("dpo", "align.dpo", f"init_from={c.dir('sft') / 'model'}",
                              f"data.train_files=[{c.world / 'preferences' / 'train.jsonl'}]",
                              f"data.eval_files=[{c.world / 'preferences' / 'eval.jsonl'}]"),
          lambda c: read_json(c.dir("dpo") / "summary.json"), needs_config=True),
    Stage("ppo", "RLHF (GRPO: PPO's update, group baseline) against the rule rewards, the reward model logged", ("sft", "rm"),
          lambda c: c.trainer("ppo", "align.ppo", f"model.init_from={c.dir('sft') / 'model'}",
                              f"reward.model={c.dir('rm') / 'model'}"),
          lambda c: read_json(c.dir("ppo") / "eval.json"), needs_config=True),
]


def evaluate_command(c: Context) -> list[str]:
    """Alignment metrics of every policy this run trained, side by side (align.evaluate)."""
    names = [n for n in ("pretrain", "sft", "dpo", "ppo") if (c.dir(n) / "model" / "config.json").is_file()]
    labels = ["base" if n == "pretrain" else n for n in names]
    quick = ["--prompts", "8", "--heldout-rows", "8", "--max-new-tokens", "16"] if c.cfg.quick else \
        ["--prompts", str(c.cfg.eval_prompts), "--heldout-rows", str(c.cfg.eval_prompts)]
    return [PY, "-m", "align.evaluate", "--model", *[str(c.dir(n) / "model") for n in names], "--names", *labels,
            "--world-scale", c.cfg.world_scale, "--world-seed", str(c.cfg.world_seed), *quick,
            "--out", str(c.dir("evaluate") / "metrics.json"), "--report-dir", str(c.out)]


STAGES.append(Stage("evaluate", "alignment metrics of base, SFT, DPO and PPO on held-out world prompts", ("sft",),
                    evaluate_command, lambda c: read_json(c.out / "metrics.json"), uses=("dpo", "ppo")))
BY_NAME = {s.name: s for s in STAGES}


def selected_stages(ctx: Context) -> list[Stage]:
    """The requested stages (default: every stage whose config file exists), dependencies checked."""
    if ctx.cfg.stages:
        unknown = [s for s in ctx.cfg.stages if s not in BY_NAME]
        if unknown:
            raise UserError(f"stages: unknown {unknown}; known: {list(BY_NAME)}")
        chosen = [BY_NAME[s] for s in BY_NAME if s in ctx.cfg.stages]
    else:  # every stage whose config exists and whose dependencies run too
        chosen = []
        for stage in STAGES:
            ready = all(d in {c.name for c in chosen} for d in stage.after)
            if ready and (not stage.needs_config or Path(ctx.config(stage.name)).is_file()):
                chosen.append(stage)
    names = {s.name for s in chosen}
    for stage in chosen:
        missing = [d for d in stage.after if d not in names and not (ctx.dir(d) / ".done").is_file()]
        if missing:
            raise UserError(f"stage {stage.name} needs {missing} first: add them to stages")
        if stage.needs_config and not Path(ctx.config(stage.name)).is_file():
            raise UserError(f"configs.{stage.name}: {ctx.config(stage.name)} not found")
    unknown_force = [s for s in ctx.cfg.force if s not in BY_NAME]
    if unknown_force:
        raise UserError(f"force: unknown stage(s) {unknown_force}; known: {list(BY_NAME)}")
    return chosen


def downstream(names: list[str]) -> set[str]:
    """``names`` and every stage that depends on them, directly or not."""
    out = set(names)
    changed = True
    while changed:
        changed = False
        for stage in STAGES:
            if stage.name not in out and out & set(stage.after + stage.uses):
                out.add(stage.name)
                changed = True
    return out


class Display:
    """The stage list and the running stage's latest progress line, on one terminal."""

    def __init__(self, stages: list[Stage], stream=sys.stdout):
        self.stages, self.stream = stages, stream
        self.tty = stream.isatty()
        self.state = {s.name: "left" for s in stages}
        self.last_print = 0.0

    def board(self) -> str:
        marks = {"done": "✓", "skipped": "✓", "running": "▶", "left": "·", "failed": "✗"}
        return "  ".join(f"{marks[self.state[s.name]]} {s.name}" for s in self.stages)

    def set(self, name: str, state: str) -> None:
        self.state[name] = state
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"[{self.board()}]\n")
        self.stream.flush()

    def progress(self, name: str, line: str) -> None:
        line = " ".join(line.split())[:160]
        if not line:
            return
        if self.tty:
            self.stream.write(f"\r\033[K  {name}: {line}")
            self.stream.flush()
        elif time.monotonic() - self.last_print > 15:
            self.stream.write(f"  {name}: {line}\n")
            self.stream.flush()
            self.last_print = time.monotonic()


def run_stage(stage: Stage, ctx: Context, display: Display) -> float:
    """Run one stage's command, its output teed to its log and its progress to the display."""
    ctx.dir(stage.name).mkdir(parents=True, exist_ok=True)
    log = ctx.out / "logs" / f"{stage.name}.log"
    cmd = stage.command(ctx)
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        handle.write("$ " + " ".join(cmd) + "\n")
        handle.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
        pending = b""
        while True:
            chunk = proc.stdout.read(4096)
            if not chunk:
                break
            handle.write(chunk.decode("utf-8", errors="replace"))
            handle.flush()
            pending = (pending + chunk)[-4096:]
            pieces = [p for p in pending.replace(b"\r", b"\n").split(b"\n") if p.strip()]
            if pieces:
                display.progress(stage.name, pieces[-1].decode("utf-8", errors="replace"))
        code = proc.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        display.set(stage.name, "failed")
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        print(tail, file=sys.stderr)
        fail(f"stage {stage.name} failed (exit {code}); full log: {log}; rerun the pipeline to resume from it")
    (ctx.dir(stage.name) / ".done").write_text(json.dumps({"seconds": seconds, "command": cmd}) + "\n")
    return seconds


def write_summary(ctx: Context, stages: list[Stage]) -> dict:
    """``summary.json`` (each stage's time and figures) and ``SUMMARY.md`` (the same, readable)."""
    summary: dict[str, Any] = {"output_dir": str(ctx.out), "stages": {}}
    for stage in stages:
        done = read_json(ctx.dir(stage.name) / ".done")
        summary["stages"][stage.name] = {"seconds": done.get("seconds"), **stage.figures(ctx)}
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (ctx.out / "SUMMARY.md").write_text("\n".join(summary_lines(summary["stages"], ctx)) + "\n", encoding="utf-8")
    return summary


def summary_lines(stages: dict[str, dict], ctx: Context) -> list[str]:
    lines = ["# glm-align pipeline", "", f"Run directory: `{ctx.out}`", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {(s['seconds'] or 0):.0f} |" for name, s in stages.items()]
    pretrain = stages.get("pretrain", {})
    if "eval/blank/accuracy" in pretrain:
        lines += ["", "## Pretraining: held-out masked-token accuracy vs the unigram baseline", "",
                  "| objective | loss | accuracy | unigram baseline |", "|---|---:|---:|---:|"]
        lines += [f"| {o} | {pretrain[f'eval/{o}/loss']:.3f} | {pretrain[f'eval/{o}/accuracy']:.3f} | "
                  f"{pretrain[f'eval/{o}/unigram_accuracy']:.3f} |" for o in ("blank", "sentence", "document")
                  if f"eval/{o}/loss" in pretrain]
        lines += ["", f"Loss curve: `{ctx.dir('pretrain') / 'loss_curve.png'}`"]
    probe = stages.get("fact_probe", {})
    if "accuracy" in probe:
        lines += ["", "## Fact probe", "", f"{probe['probes']} held-out facts: generated exactly {probe['accuracy']:.3f}, "
                  f"ranked first among the relation's values {probe['choice_accuracy']:.3f}; chance {probe['chance']:.3f}, "
                  f"majority {probe['majority']:.3f}. {fact_probe_note(probe)}"]
    if "max_abs_diff" in stages.get("export", {}):
        lines += ["", f"Export to transformers' GlmForCausalLM: max |logit difference| "
                  f"{stages['export']['max_abs_diff']:.2e}"]
    accuracy = stages.get("cloze", {}).get("accuracy")
    if accuracy:
        lines += ["", "## Cloze (32 examples)", "", ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items())]
    annotation = stages.get("annotation", {})
    if "submissions" in annotation:
        lines += ["", "## Annotation", "", f"{annotation['submissions']} simulated rankings of {annotation['items']} "
                  f"prompts -> {annotation['pairs']} training pairs; consensus equals the world's ground truth on "
                  f"{100 * annotation['consensus_equals_ground_truth']:.0f}% of prompts"]
    return lines


def stale_world(ctx: Context) -> str | None:
    """The world version of a finished world stage when this checkout would build another world
    (``world.config.WORLD_VERSION``), else None: its stage and everything after it must rerun."""
    from world.config import WORLD_VERSION
    from world.default import built_version

    if not (ctx.dir("world") / ".done").is_file():
        return None
    version = built_version(ctx.world)
    return version if version not in (None, WORLD_VERSION) else None


def run(cfg: PipelineConfig) -> dict:
    ctx = Context(cfg, Path(cfg.output_dir))
    stages = selected_stages(ctx)
    (ctx.out / "logs").mkdir(parents=True, exist_ok=True)
    force = list(cfg.force)
    old_world = stale_world(ctx)
    if old_world is not None and "world" not in force:
        print(f"  world: {ctx.world} was built by world version {old_world}; this checkout builds another "
              "world: rebuilding it and rerunning every stage after it", flush=True)
        force.append("world")
    for name in downstream(force):
        (ctx.dir(name) / ".done").unlink(missing_ok=True)
    display = Display(stages)
    total = time.perf_counter()
    for stage in stages:
        if (ctx.dir(stage.name) / ".done").is_file():
            display.set(stage.name, "skipped")
            continue
        display.set(stage.name, "running")
        print(f"  {stage.name}: {stage.title} (log: {ctx.out / 'logs' / (stage.name + '.log')})", flush=True)
        seconds = run_stage(stage, ctx, display)
        display.set(stage.name, "done")
        print(f"  {stage.name}: done in {seconds:.0f} s", flush=True)
    summary = write_summary(ctx, stages)
    md, page = build_report(ctx.out)
    print(f"report: {md} and {page}")
    print(f"pipeline finished in {time.perf_counter() - total:.0f} s: {ctx.out / 'SUMMARY.md'}")
    return summary


def _translate_force(argv: list[str]) -> list[str]:
    """``--force STAGE`` (repeatable) -> ``force=[...]``."""
    out, forced, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--force":
            if i + 1 >= len(argv):
                raise UserError("command line: --force needs a stage name")
            forced.append(argv[i + 1])
            i += 2
        elif argv[i].startswith("--force="):
            forced.append(argv[i].split("=", 1)[1])
            i += 1
        else:
            out.append(argv[i])
            i += 1
    return out + ([f"force=[{', '.join(forced)}]"] if forced else [])


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_main(lambda: run(load_config(PipelineConfig, _translate_force(argv), prog="python -m align.pipeline")))


if __name__ == "__main__":
    main()
