"""Reward-model training: Bradley–Terry on ranked responses, K-way batching, centred rewards.

    python -m rewards.train --config configs/rm/tiny.yaml [key=value ...]
    torchrun --standalone --nproc_per_node 2 -m rewards.train --config configs/rm/tiny.yaml
    accelerate launch --config_file configs/accelerate/ddp.yaml -m rewards.train --config configs/rm/base.yaml

The model is :class:`glm_base.GLMForSequenceClassification` with one label, started from a model
directory (``model.init_from``: an SFT or pretrained causal LM; its score head starts at random) and
read at each row's last real token. Data (:mod:`rewards.data`): prompts with K ranked responses (ties
allowed) or chosen/rejected pairs; by default the world's ``preferences`` split. A micro-batch is a
number of *prompts*; all responses of a prompt are in it and each is encoded once; the loss sums over
the batch's pairs and is normalised by the pairs (their summed weight) of the whole optimizer step,
so batch 8 x accumulation 1 equals batch 2 x accumulation 4 and one process equals two.

Loss (:mod:`rewards.loss`): ``-log σ(r_chosen - r_rejected - margin)``; ``margin=rank_gap`` uses
``margin_scale`` x the rank gap. ``length_balanced`` reweights pairs so that "the longer response
wins" holds for half of the weighted pairs (see :mod:`rewards.data`). ``lora.enabled`` trains LoRA
adapters (PEFT) and the score head only; the final model has the adapters merged.

**Evidence** (``evidence``, :mod:`rewards.evidence`): the reward model can read what a calculator and
a knowledge lookup say about each response (an observation turn after the reply), the knowledge
being JSONL documents or ``world`` (the world's corpus). The index is saved with every checkpoint and
the final model (``knowledge.jsonl``, settings in ``config.reward_evidence``), and everything that
loads the model (``rewards.compare``, PPO's scorer) renders its inputs the same way.

Evaluation, every ``eval_every`` steps: pairwise accuracy on the eval files overall, per category and
per language (equal scores count half). **Centring**: after training, the mean reward over every
response of the reference set (``center_on``: eval or train) is stored as ``config.reward_offset``,
which the model subtracts, so the saved model's rewards have mean 0 on that set.

The run directory holds ``config.yaml``, ``metrics.jsonl`` (+ TensorBoard), ``checkpoints/``
(``resume=true`` continues exactly), the final model in ``model/`` (with tokenizer),
``summary.json`` (accuracies, data counts with dropped rows by reason, the offset) and
``curves.png`` / ``accuracy_by_category.png``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from common.errors import UserError
from glm_base.loading import load_model_and_tokenizer
from glm_base.trainkit.args import TrainArgs
from glm_base.trainkit.batches import GlobalBatchStream, PermutationSampler, PhasedSampler
from glm_base.trainkit.metrics import StepWindow, plot_bars, plot_curves
from glm_base.trainkit.optim import OptimArgs, build_optimizer
from glm_base.trainkit.run import Run, start_run, train_main
from glm_base.trainkit.steps import at_step, train_step
from world.config import SIZES as WORLD_SIZES

from .evidence import KNOWLEDGE_FILE, Evidence, EvidenceArgs, build_evidence
from .data import (BAD_ROWS, TRUNCATION, DataReport, EncodedGroup, balance_lengths, collate_groups,
                   encode_groups, read_preferences)
from .loss import rm_loss
from .scoring import accuracy_report, pair_outcomes, score_groups

logger = logging.getLogger("rewards.train")


# --- config --------------------------------------------------------------------------------------

@dataclass
class RMModelArgs:
    init_from: str = field(default="runs/pretrain-tiny/model", metadata={
        "help": "model directory to start from (SFT or pretrained causal LM, or a reward model)"})


@dataclass
class RMDataArgs:
    train_files: list[str] = field(default_factory=list, metadata={"help": "JSONL rankings/pairs; empty = the world's preferences train split"})
    eval_files: list[str] = field(default_factory=list, metadata={"help": "held-out JSONL; empty = the world's preferences eval split"})
    world_scale: str = field(default="tiny", metadata={"help": "size of the synthetic world used when no files are given", "choices": list(WORLD_SIZES)})
    world_seed: int = field(default=0, metadata={"help": "seed of the synthetic world (kept apart from the training seed)"})
    world_dir: str = field(default="", metadata={
        "help": "a built world (python -m world.build --out DIR) to take the default preferences split and the "
                "'world' knowledge from; empty = the world of world_scale and world_seed, built and cached on first use"})
    bad_rows: str = field(default="error", metadata={"help": "error: stop at a bad row naming file/row/field | drop: skip and count it", "choices": list(BAD_ROWS)})
    max_length: int = field(default=512, metadata={"help": "longest prompt + response in tokens"})
    truncation: str = field(default="left", metadata={"help": "left: cut the prompt's start to fit | none: an overlong row is a bad row", "choices": list(TRUNCATION)})


@dataclass
class LoraArgs:
    enabled: bool = field(default=False, metadata={"help": "train LoRA adapters (PEFT) and the score head only"})
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                      metadata={"help": "module names that get adapters"})


@dataclass
class RMOptimArgs(OptimArgs):
    """The shared optimizer fields with fine-tuning defaults; the score head never decays."""

    lr: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay (not on norms, biases, embeddings, score)"})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warmup steps"})
    no_decay: list[str] = field(default_factory=lambda: ["embed", "score", "lora_"], metadata={
        "help": "parameters whose name contains one of these never decay (1-D ones never do)"})


@dataclass
class RMConfig(TrainArgs):
    """Reward-model training on ranked responses (rewards.train)."""

    output_dir: str = field(default="runs/rm", metadata={"help": "run directory"})
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "prompts (each with all its responses) per global micro-batch"})
    eval_every: int = field(default=50, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    model: RMModelArgs = field(default_factory=RMModelArgs)
    data: RMDataArgs = field(default_factory=RMDataArgs)
    optim: RMOptimArgs = field(default_factory=RMOptimArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    evidence: EvidenceArgs = field(default_factory=EvidenceArgs)
    margin: str = field(default="none", metadata={"help": "none | rank_gap: require r_chosen - r_rejected > margin_scale x rank gap", "choices": ["none", "rank_gap"]})
    margin_scale: float = field(default=1.0, metadata={"help": "margin per rank of gap (margin=rank_gap)"})
    length_balanced: bool = field(default=False, metadata={"help": "reweight pairs so the longer response is chosen in half of them"})
    center_on: str = field(default="eval", metadata={"help": "reference set whose mean reward becomes 0: eval | train", "choices": ["eval", "train"]})
    eval_batch_size: int = field(default=32, metadata={"help": "responses per scoring forward"})
    focus_categories: list[str] = field(default_factory=list, metadata={
        "help": "curriculum: the first focus_steps steps train on the rows of these categories only"})
    focus_steps: int = field(default=0, metadata={
        "help": "steps of the first phase (counted in max_steps; 0 = none); a skill that one category needs "
                "(consistency: comparing the reply with the dialogue) is learnt there before the mix"})

    def __post_init__(self):
        if self.focus_steps < 0 or (self.focus_steps > 0 and not self.focus_categories):
            raise ValueError("focus_steps must be >= 0, and a focus phase (focus_steps > 0) needs focus_categories")
        if self.focus_steps and self.focus_steps >= self.max_steps:
            raise ValueError(f"focus_steps={self.focus_steps} must be below max_steps={self.max_steps}")
        super().__post_init__()
        if self.margin not in ("none", "rank_gap"):
            raise ValueError(f"margin must be 'none' or 'rank_gap', got {self.margin!r}")
        if self.center_on not in ("eval", "train"):
            raise ValueError(f"center_on must be 'eval' or 'train', got {self.center_on!r}")
        if self.data.bad_rows not in BAD_ROWS or self.data.truncation not in TRUNCATION:
            raise ValueError(f"data.bad_rows must be one of {list(BAD_ROWS)} and data.truncation one of {list(TRUNCATION)}")


# --- setup pieces ----------------------------------------------------------------------------

def resolve_files(data: RMDataArgs) -> tuple[list[str], list[str]]:
    """The configured files, or the world's preferences split for whichever list is empty."""
    if data.train_files and data.eval_files:
        return list(data.train_files), list(data.eval_files)
    from world.default import split_files

    train, evaluation = split_files("preferences", data.world_scale, data.world_seed, data.world_dir)
    return list(data.train_files) or [train], list(data.eval_files) or [evaluation]


def load_reward_model(cfg: RMConfig):
    """The reward model (one label) and tokenizer from ``model.init_from``, LoRA-wrapped if asked."""
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = load_model_and_tokenizer(
        cfg.model.init_from, model_class=AutoModelForSequenceClassification, what="model.init_from",
        hint="build it with `python -m glm_base.pretrain --config configs/pretrain/tiny.yaml` or set "
        "model.init_from=DIR", num_labels=1)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                                 target_modules=list(cfg.lora.target_modules), modules_to_save=["score"]))
    return model, tokenizer


def load_evidence_tools(cfg: RMConfig) -> Evidence | None:
    """The configured tools; ``world`` in ``evidence.knowledge`` is the world's corpus (train split)."""
    world_corpus = None
    if "world" in cfg.evidence.knowledge:
        from world.default import split_files

        world_corpus = split_files("corpus", cfg.data.world_scale, cfg.data.world_seed, cfg.data.world_dir)[0]
    return build_evidence(cfg.evidence, world_corpus)


def load_data(cfg: RMConfig, run: Run, tokenizer, evidence: Evidence | None = None
              ) -> tuple[list[EncodedGroup], list[EncodedGroup], dict[str, Any]]:
    """Encoded train and eval groups (each response with ``evidence``'s observation when given), and
    the data counts (dropped rows by reason) for the summary."""
    with run.main_process_first():  # the main process builds the default world; the others wait
        train_files, eval_files = resolve_files(cfg.data)
    counts = {}
    encoded = {}
    for split, files in (("train", train_files), ("eval", eval_files)):
        report = DataReport()
        groups, _ = read_preferences(files, cfg.data.bad_rows, report)
        encoded[split], _ = encode_groups(groups, tokenizer, cfg.data.max_length, cfg.data.truncation, cfg.margin,
                                          cfg.margin_scale, cfg.data.bad_rows, report, evidence)
        counts[f"{split}_data"] = {"files": files, **report.to_dict()}
    if cfg.length_balanced:
        counts["length_balance"] = balance_lengths(encoded["train"])
    return encoded["train"], encoded["eval"], counts


def train_sampler(cfg: RMConfig, groups: list[EncodedGroup]):
    """The global batches' prompts: one permutation per epoch, after ``focus_steps`` on the
    ``focus_categories`` rows when the config asks for that first phase."""
    everything = PermutationSampler(len(groups), cfg.batch_size, cfg.seed)
    if not cfg.focus_steps:
        return everything
    subset = [i for i, g in enumerate(groups) if g.category in cfg.focus_categories]
    missing = sorted(set(cfg.focus_categories) - {groups[i].category for i in subset})
    if missing:
        known = sorted({g.category for g in groups})
        raise UserError(f"focus_categories: no training row of {missing}; the training data has {known}")
    return PhasedSampler(subset, cfg.focus_steps * cfg.grad_accum, cfg.batch_size, cfg.seed, everything)


def shard_rows(n: int, rank: int, world: int) -> list[int]:
    """The row indices process ``rank`` of ``world`` scores: rows ``rank::world``, and as many on every
    process (a process short of rows repeats row 0), so every process runs the same number of forwards,
    which ZeRO-3 and FSDP need (each forward gathers the sharded weights collectively)."""
    per_process = -(-n // world)
    return [i if i < n else 0 for i in range(rank, per_process * world, world)]


def score_sharded(run: Run, model, groups: list[EncodedGroup], pad_id: int, batch_size: int) -> list[list[float]]:
    """Every group's rewards: each process scores its share of the responses (:func:`shard_rows`) with
    the model as prepared (DDP, FSDP or ZeRO-3 wrapped), and all gather."""
    from accelerate.utils import gather_object

    flat = [(g, k) for g, group in enumerate(groups) for k in range(len(group.input_ids))]
    mine = shard_rows(len(flat), run.rank, run.world)
    rows = [EncodedGroup([groups[flat[i][0]].input_ids[flat[i][1]]], []) for i in mine]
    scores = [row[0] for row in score_groups(model, rows, pad_id, batch_size, run.accelerator.device)]
    pairs = list(zip(mine, scores))
    if run.world > 1:
        pairs = gather_object(pairs)
    out = [[0.0] * len(group.input_ids) for group in groups]
    for i, score in pairs:
        g, k = flat[i]
        out[g][k] = score
    return out


def evaluate(run: Run, model, groups: list[EncodedGroup], pad_id: int, batch_size: int) -> dict:
    return accuracy_report(pair_outcomes(groups, score_sharded(run, model, groups, pad_id, batch_size)))


def eval_metrics(report: dict) -> dict[str, float]:
    out = {"eval/accuracy": report["accuracy"]}
    out.update({f"eval/accuracy/category/{k}": v for k, v in report["by_category"].items()})
    out.update({f"eval/accuracy/lang/{k}": v for k, v in report["by_lang"].items()})
    return out


def center(run: Run, model, groups: list[EncodedGroup], pad_id: int, batch_size: int) -> dict[str, float]:
    """Set ``config.reward_offset`` so the mean reward over every response of ``groups`` is 0."""
    scores = [s for group in score_sharded(run, model, groups, pad_id, batch_size) for s in group]
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    config = run.accelerator.unwrap_model(model).config
    config.reward_offset = float(getattr(config, "reward_offset", 0.0) or 0.0) + mean
    return {"reward_offset": config.reward_offset, "reference_mean_before": mean, "reference_std": std,
            "reference_responses": len(scores)}


# --- the loop ------------------------------------------------------------------------------------

def run(cfg: RMConfig) -> dict[str, Any]:
    """Train, evaluate, centre and save a reward model; return the summary."""
    run = start_run(cfg, "rm")
    accelerator = run.accelerator
    if cfg.batch_size % run.world:
        raise UserError(f"batch_size={cfg.batch_size} must be a multiple of the {run.world} processes")
    model, tokenizer = load_reward_model(cfg)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    with run.main_process_first():  # the world's corpus may be built here
        evidence = load_evidence_tools(cfg)
    files = {}
    # the settings go into config.json (None: a model started from an evidence-reading one reads none now),
    # the index next to every saved model
    reward_evidence = evidence.config() if evidence is not None else None  # once: it hashes the whole index
    model.config.reward_evidence = reward_evidence
    if evidence is not None:
        if evidence.index is not None:
            files = {KNOWLEDGE_FILE: evidence.index.save}
        logger.info("evidence: calculator %s, knowledge %s (%d sentences)", evidence.calculator,
                    list(cfg.evidence.knowledge), len(evidence.index.rows) if evidence.index else 0)
    train_groups, eval_groups, data_counts = load_data(cfg, run, tokenizer, evidence)
    logger.info("data: train %d prompts / %d pairs, eval %d prompts / %d pairs; dropped %s",
                len(train_groups), data_counts["train_data"]["pairs"], len(eval_groups),
                data_counts["eval_data"]["pairs"], {k: v["dropped"] for k, v in data_counts.items() if "dropped" in v})

    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = run.resume(cfg.signature(max_length=cfg.data.max_length, train_prompts=len(train_groups),
                                     length_balanced=cfg.length_balanced, focus_categories=cfg.focus_categories,
                                     focus_steps=cfg.focus_steps,
                                     evidence=reward_evidence))
    position = state.get("data_position", 0)
    # every process draws the same global batch of prompts and encodes its own share of them
    batches = iter(GlobalBatchStream(train_groups, train_sampler(cfg, train_groups),
                                     lambda groups, _position: groups, start=position))
    if run.start_step == 0:
        run.metrics.log(0, eval_metrics(evaluate(run, model, eval_groups, pad_id, cfg.eval_batch_size)))

    model.train()
    window = StepWindow()
    last_eval: dict = {}
    with tqdm(total=cfg.max_steps, initial=run.start_step, desc="rm", disable=not run.is_main,
              dynamic_ncols=True) as progress:
        for step in range(run.start_step + 1, cfg.max_steps + 1):
            micro = [next(batches) for _ in range(cfg.grad_accum)]
            position += cfg.grad_accum
            step_pairs = sum(g.weight for mb in micro for g in mb)
            local = [{k: v.to(accelerator.device) for k, v in collate_groups(mb[run.rank::run.world], pad_id).items()}
                     for mb in micro]
            with at_step(step):
                result = train_step(accelerator, model, optimizer, local, step_pairs, loss_fn=rm_loss,
                                    grad_clip=cfg.optim.grad_clip)
            run.end_step(step, result, scheduler, window, progress,
                         tokens=sum(len(ids) for mb in micro for g in mb for ids in g.input_ids),
                         show={"acc": f"{result.metrics['accuracy']:.2f}"})
            if run.should_eval(step):
                last_eval = evaluate(run, model, eval_groups, pad_id, cfg.eval_batch_size)
                run.metrics.log(step, eval_metrics(last_eval))
                progress.write(f"step {step}: eval accuracy {last_eval['accuracy']:.3f} "
                               + " ".join(f"{k} {v:.2f}" for k, v in last_eval["by_category"].items()))
            if run.should_save(step):
                run.save(step, model, tokenizer, {"data_position": position}, files=files)

    if not last_eval:  # max_steps=0, or resumed at the end
        last_eval = evaluate(run, model, eval_groups, pad_id, cfg.eval_batch_size)
    centring = center(run, model, eval_groups if cfg.center_on == "eval" else train_groups, pad_id, cfg.eval_batch_size)
    logger.info("centred on %s: reward_offset %.4f (reference std %.3f)", cfg.center_on, centring["reward_offset"],
                centring["reference_std"])
    final = accelerator.unwrap_model(model)
    if cfg.lora.enabled:
        final = final.merge_and_unload()
    summary = {"eval": last_eval, "steps": cfg.max_steps, "init_from": cfg.model.init_from, "margin": cfg.margin,
               "length_balanced": cfg.length_balanced, "center_on": cfg.center_on, "lora": cfg.lora.enabled,
               "evidence": getattr(final.config, "reward_evidence", None),
               **centring, **data_counts}
    categories = {k: v for k, v in last_eval["by_category"].items()}
    return run.finish(final, tokenizer, summary, files=files, plots=[
        lambda d: plot_curves(d / "metrics.jsonl", d / "curves.png", ["train/loss", "train/accuracy", "eval/accuracy"],
                              title="reward model: loss and pairwise accuracy"),
        lambda d: plot_bars({"all": last_eval["accuracy"], **categories}, d / "accuracy_by_category.png",
                            title="held-out pairwise accuracy by category")])


def main(argv: list[str] | None = None) -> None:
    train_main(RMConfig, run, argv, prog="python -m rewards.train")


if __name__ == "__main__":
    main()
