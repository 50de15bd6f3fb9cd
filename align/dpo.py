"""The DPO baseline: ``python -m align.dpo --config configs/dpo/tiny.yaml [key=value ...]``.

Direct preference optimisation from the SFT model on the same preferences the reward model learns
from, so a reader sees what PPO buys over the cheap alternative. This stage uses TRL's
``DPOTrainer`` as it is (the field's reference implementation, and it takes our glm_base models as
policy and reference: tests/glm_base/test_modeling_trl.py), not our own loop: DPO needs nothing of
ours that TRL lacks. TRL treats the model as a causal LM over the chat template, which is the GLM-4
variant's format; a GLM-1 model (prefix layout with 2D positions) is refused with a clear error.

Data: preference rows in the shared schema, rankings (``{"prompt"|"messages", "responses",
"ranking", "lang", "category"}``, the world's ``preferences`` split and the annotation app's
``export --format rankings``) expanded to all ordered pairs with :func:`common.rankings.ranking_pairs`,
or chosen/rejected pairs (the app's ``export --format pairs``). They become TRL's conversational
format (``prompt`` messages, ``chosen``/``rejected`` assistant turns).

Outputs in ``output_dir``: ``config.yaml``, ``metrics.jsonl`` (TRL's log lines: loss, rewards,
accuracies, margins), ``model/`` (the trained policy, a model directory), ``summary.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.jsonl import dumps, read_jsonl, write_jsonl
from common.rankings import ranking_pairs
from glm_base.trainkit.args import TrainArgs
from glm_base.trainkit.run import check_output_dir, open_run_dir, train_main
from world.config import SIZES as WORLD_SIZES

logger = logging.getLogger("align.dpo")


@dataclass
class DPODataArgs:
    train_files: list[str] = field(default_factory=list, metadata={
        "help": "preference JSONL (rankings or chosen/rejected pairs); empty = the world's preferences"})
    eval_files: list[str] = field(default_factory=list, metadata={
        "help": "held-out preference JSONL; empty with empty train_files = the world's eval split"})
    world_scale: str = field(default="tiny", metadata={"help": "size of the default world", "choices": list(WORLD_SIZES)})
    world_seed: int = field(default=0, metadata={"help": "seed of the default world"})
    max_length: int = field(default=512, metadata={"help": "longest prompt + response in tokens"})


@dataclass
class DPOConfig(TrainArgs):
    """Direct preference optimisation of an SFT model with TRL's DPOTrainer (align.dpo)."""

    output_dir: str = field(default="runs/dpo", metadata={"help": "run directory"})
    max_steps: int = field(default=100, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "pairs per micro-batch per process"})
    init_from: str = field(default="runs/sft-tiny/model", metadata={"help": "the SFT model directory (policy and reference)"})
    beta: float = field(default=0.1, metadata={"help": "DPO temperature: strength of the KL to the reference"})
    loss_type: str = field(default="sigmoid", metadata={"help": "TRL loss type", "choices": ["sigmoid", "ipo", "hinge"]})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warmup steps"})
    data: DPODataArgs = field(default_factory=DPODataArgs)


def conversational(prompt_or_messages: Any) -> list[dict]:
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    return [dict(m) for m in prompt_or_messages]


def assistant(text_or_messages: Any) -> list[dict]:
    if isinstance(text_or_messages, str):
        return [{"role": "assistant", "content": text_or_messages}]
    return [dict(m) for m in text_or_messages]


def preference_pairs(paths: list[str]) -> list[dict]:
    """TRL conversational pairs from ranking or pair rows; errors name the file, line and field."""
    pairs: list[dict] = []
    for path in paths:
        for line, row in read_jsonl(path):
            where = f"{path}:{line}"
            context = row.get("messages", row.get("prompt"))
            if context is None:
                raise UserError(f"{where}: field 'prompt' (or 'messages') is missing")
            prompt = conversational(context)
            if "chosen" in row and "rejected" in row:
                pairs.append({"prompt": prompt, "chosen": assistant(row["chosen"]), "rejected": assistant(row["rejected"])})
                continue
            responses, ranking = row.get("responses"), row.get("ranking")
            if not isinstance(responses, list) or not isinstance(ranking, list) or len(responses) != len(ranking):
                raise UserError(f"{where}: field 'ranking': expected one rank per response (or chosen/rejected)")
            for pair in ranking_pairs(ranking):
                pairs.append({"prompt": prompt, "chosen": assistant(responses[pair.chosen]),
                              "rejected": assistant(responses[pair.rejected])})
    if not pairs:
        raise UserError(f"data.train_files: no preference pair in {paths}")
    return pairs


def resolve_files(data: DPODataArgs) -> tuple[list[str], list[str]]:
    if data.train_files:
        return list(data.train_files), list(data.eval_files)
    from world.default import world_files

    train, evaluation = world_files("preferences", size=data.world_scale, seed=data.world_seed)
    return [train], list(data.eval_files) or [evaluation]


def trl_args(cfg: DPOConfig, run_dir: Path):
    from trl import DPOConfig as TRLDPOConfig

    import torch

    precision = {"bf16": dict(bf16=True), "fp16": dict(fp16=True)}.get(
        cfg.mixed_precision if cfg.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no"), {})
    return TRLDPOConfig(
        output_dir=str(run_dir / "checkpoints"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps, beta=cfg.beta, loss_type=[cfg.loss_type],
        max_length=cfg.data.max_length, seed=cfg.seed, logging_steps=cfg.log_every, report_to=[],
        eval_strategy="steps" if cfg.eval_every else "no", eval_steps=cfg.eval_every or None,
        save_strategy="steps" if cfg.save_every else "no", save_steps=cfg.save_every or None,
        save_total_limit=cfg.keep_last or None,
        **({"activation_checkpointing": True} if cfg.gradient_checkpointing else {}),
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False, **precision)


def run(cfg: DPOConfig) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOTrainer

    from glm_base.loading import load_model_and_tokenizer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_output_dir(Path(cfg.output_dir), cfg.resume, cfg.overwrite)
    run_dir = open_run_dir(cfg)
    model, tokenizer = load_model_and_tokenizer(cfg.init_from, what="init_from",
                                                hint="train an SFT model first (python -m align.sft) or set init_from=DIR")
    if getattr(model.config, "architecture", "glm4") == "glm1":
        raise UserError("init_from is a GLM-1 model: TRL's DPOTrainer treats the model as causal, which is not "
                        "GLM-1's prefix layout; use a GLM-4-variant model, or PPO (align.ppo), which handles both")
    train_files, eval_files = resolve_files(cfg.data)
    train = Dataset.from_list(preference_pairs(train_files))
    evaluation = Dataset.from_list(preference_pairs(eval_files)) if eval_files else None
    logger.info("DPO on %d pairs from %s (eval: %s)", len(train), train_files, len(evaluation) if evaluation else 0)
    trainer = DPOTrainer(model=model, args=trl_args(cfg, run_dir), train_dataset=train, eval_dataset=evaluation,
                         processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=True if cfg.resume and any((run_dir / "checkpoints").glob("checkpoint-*"))
                  else None)
    metrics = trainer.evaluate() if evaluation is not None else {}
    trainer.save_model(str(run_dir / "model"))
    tokenizer.save_pretrained(run_dir / "model")
    history = trainer.state.log_history
    write_jsonl(run_dir / "metrics.jsonl", [{"step": h.get("step", 0), **h} for h in history])
    summary = {"steps": trainer.state.global_step, "pairs": len(train), "eval_pairs": len(evaluation) if evaluation else 0,
               "init_from": cfg.init_from, "beta": cfg.beta, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
    (run_dir / "summary.json").write_text(dumps(summary) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> None:
    train_main(DPOConfig, run, argv, prog="python -m align.dpo")


if __name__ == "__main__":
    main()
