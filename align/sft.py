"""Supervised fine-tuning (SFT) of a pretrained GLM model directory on chat rows, on accelerate.

    python -m align.sft --config configs/sft/tiny.yaml [key=value ...]
    torchrun --standalone --nproc_per_node 2 -m align.sft --config configs/sft/tiny.yaml     (CPU, 2 processes)
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml -m align.sft --config configs/sft/base.yaml

Both architectures: GLM-4 trains on the causal chat layout, GLM-1 on its prefix layout (the
conversation in bidirectional Part A, the last reply as Part B; :mod:`align.sft_data`). One optimizer
step = ``grad_accum`` global micro-batches of ``batch_size`` rows (a row is an example, or several
packed ones). The LongAlign recipe is three data switches: ``data.packing`` (rows of up to
``max_length`` tokens, attention kept per example), ``data.loss_weighting: example`` (each example
counts the same: ``(1/M) sum_i L_i/N_i`` over the step's global batch) and ``data.batching: sorted``.
The loss of a micro-batch is its weighted sum divided by the step's *global* count (examples or
target tokens), so batch 8 x accumulation 1, batch 1 x accumulation 8 and one or two processes give
the same update. Full fine-tuning by default; ``lora.enabled`` trains a PEFT LoRA adapter instead.

Why our own loop and not TRL's ``SFTTrainer``: GLM-1 needs 2D positions and a Part A length per row
(and packed GLM-1 rows put all Part A's first), which TRL's collators do not build; LongAlign's
per-example weighting must be normalised by the example count of the whole step across processes
and accumulation, which TRL's loss (a token mean, or ``num_items_in_batch`` target tokens) does not
do. A GLM-4 model exported with ``glm_base.export`` is a plain ``GlmForCausalLM`` and trains in TRL
as is (``bench/sft_step.py`` runs both on the same data).

Evaluation: every ``eval_every`` steps the held-out assistant loss (same weighting) and token
accuracy; at the start (the base checkpoint) and at the end, the share of held-out world questions
answered in the asked language (greedy decoding, :func:`world.judge.language_of`).

Outputs in ``output_dir``: ``config.yaml``, ``metrics.jsonl`` (+ TensorBoard), ``checkpoints/``
(``resume: true`` continues exactly, from the saved data position), the final model in ``model/``
(HF format with tokenizer; with LoRA the merged model, and the PEFT adapter in ``adapter/``),
``loss_curve.png`` and ``summary.json`` (losses, language shares, data counts incl. dropped rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from common.errors import UserError
from common.jsonl import JsonlError, read_jsonl
from glm_base.infilling import IGNORE_INDEX
from glm_base.loading import check_model_dir, load_model_and_tokenizer
from glm_base.sharded import forwards_are_collective, in_step
from glm_base.trainkit.args import TrainArgs
from glm_base.trainkit.batches import GlobalBatchStream, PermutationSampler, shard_rows
from glm_base.trainkit.checkpoint import save_models
from glm_base.trainkit.metrics import StepWindow, plot_curves
from glm_base.trainkit.optim import OptimArgs, build_optimizer
from glm_base.trainkit.run import Run, start_run, train_main
from glm_base.trainkit.steps import at_step, train_step

from .batching import SortedBatchSampler
from .packing import collate, make_rows, sft_loss
from .sft_data import BadRow, ChatRenderer, SFTDataArgs, check_messages, default_files, load_from_args

logger = logging.getLogger("align.sft")


# --- config --------------------------------------------------------------------------------------

@dataclass
class SFTModelArgs:
    init_from: str = field(default="runs/pretrain-tiny/model", metadata={
        "help": "pretrained model directory (model + tokenizer) to fine-tune"})
    overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "GLMConfig fields changed before training, e.g. long-context extension "
                "{max_position_embeddings: 32768, rope_theta: 500000} (GLM-4 variant only for positions)"})


@dataclass
class LoraArgs:
    enabled: bool = field(default=False, metadata={"help": "train a PEFT LoRA adapter instead of every weight"})
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], metadata={
        "help": "module names that get adapters (attention: q/k/v/o_proj; MLP: gate_up_proj, down_proj)"})


@dataclass
class SFTOptimArgs(OptimArgs):
    """The shared optimizer fields with fine-tuning defaults."""

    lr: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW decay (not on norms, biases, embeddings)"})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warmup steps"})


@dataclass
class SFTEvalArgs:
    batch_size: int = field(default=8, metadata={"help": "held-out rows per eval forward (all processes)"})
    max_rows: int = field(default=0, metadata={"help": "held-out rows used for the loss (0 = all)"})
    language_questions: int = field(default=64, metadata={
        "help": "held-out questions answered greedily for the asked-language share (0 = skip)"})
    question_files: list[str] = field(default_factory=list, metadata={
        "help": "JSONL chat rows for the language share; empty = the world's sft eval split"})
    max_new_tokens: int = field(default=48, metadata={"help": "tokens generated per question"})


@dataclass
class SFTConfig(TrainArgs):
    """Supervised fine-tuning of a GLM model directory on chat rows (align.sft)."""

    output_dir: str = field(default="runs/sft", metadata={"help": "run directory"})
    seed: int = field(default=0, metadata={"help": "seed for batch order and LoRA init (the world has data.world_seed)"})
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "rows per global micro-batch (all processes; a packed row holds several examples)"})
    eval_every: int = field(default=50, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    save_every: int = field(default=100, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    model: SFTModelArgs = field(default_factory=SFTModelArgs)
    data: SFTDataArgs = field(default_factory=SFTDataArgs)
    optim: SFTOptimArgs = field(default_factory=SFTOptimArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    eval: SFTEvalArgs = field(default_factory=SFTEvalArgs)

    def __post_init__(self):
        super().__post_init__()
        if self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if self.eval.batch_size < 1 or self.eval.max_rows < 0 or self.eval.language_questions < 0:
            raise ValueError("eval.batch_size must be >= 1, eval.max_rows and eval.language_questions >= 0")


# --- setup pieces ----------------------------------------------------------------------------

def load_base(cfg: SFTConfig):
    """The pretrained model and tokenizer, with ``model.overrides`` applied to its config."""
    from transformers import AutoConfig

    path = check_model_dir(cfg.model.init_from, "model.init_from",
                           hint="pretrain one first (python -m glm_base.pretrain --config configs/pretrain/tiny.yaml)")
    import glm_base  # noqa: F401  (registers the GLM classes with the auto classes)

    config = AutoConfig.from_pretrained(path)
    unknown = sorted(k for k in cfg.model.overrides if not hasattr(config, k))
    if unknown:
        raise UserError(f"model.overrides: {unknown} are not fields of the model's config ({type(config).__name__})")
    arch = getattr(config, "architecture", "glm4")
    if arch == "glm1" and cfg.model.overrides.get("max_position_embeddings", config.max_position_embeddings) \
            != config.max_position_embeddings:
        raise UserError("model.overrides.max_position_embeddings: a GLM-1 model has learned position tables of a "
                        "fixed size; only the GLM-4 variant (rotary positions) extends its context this way")
    for key, value in cfg.model.overrides.items():
        setattr(config, key, value)
    if cfg.data.max_length > config.max_position_embeddings:
        raise UserError(f"data.max_length={cfg.data.max_length} exceeds the model's max_position_embeddings="
                        f"{config.max_position_embeddings} (raise it with model.overrides on the GLM-4 variant)")
    return load_model_and_tokenizer(path, what="model.init_from", config=config)


def add_lora(model, lora: LoraArgs, seed: int):
    """``model`` wrapped by PEFT with LoRA adapters on ``lora.target_modules`` (the rest frozen)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # PEFT: "Target modules ... not found in the base model"
        raise UserError(f"lora.target_modules: {err}") from None


def load_data(cfg: SFTConfig, run: Run, tokenizer, architecture: str):
    """Training and held-out rows (packed when ``data.packing``) and the data report for the summary."""
    try:
        with run.main_process_first():  # the main process builds the default world; the others wait
            train, train_report = load_from_args(cfg.data, tokenizer, architecture, "train")
        held_out, eval_report = load_from_args(cfg.data, tokenizer, architecture, "eval")
    except JsonlError as err:
        raise UserError(str(err)) from None
    pack_to = cfg.data.max_length if cfg.data.packing else None
    rows = make_rows(train, pack_to, cfg.data.packing_strategy)
    eval_rows = make_rows(held_out[:cfg.eval.max_rows or None], pack_to, cfg.data.packing_strategy)
    counts = {"train_data": {**train_report, "rows_used": len(rows)},
              "eval_data": {**eval_report, "rows_used": len(eval_rows)}}
    if len(rows) < cfg.batch_size * cfg.grad_accum:
        raise UserError(f"{len(rows)} training rows (after packing) are fewer than one step's batch_size x "
                        f"grad_accum = {cfg.batch_size * cfg.grad_accum}")
    return rows, eval_rows, counts


def batch_stream(cfg: SFTConfig, rows, pad_id: int, position: int):
    """Global micro-batches from data position ``position``: sorted (LongAlign) or random batching."""
    if cfg.data.batching == "sorted":
        sampler = SortedBatchSampler([sum(map(len, row)) for row in rows], cfg.batch_size, cfg.grad_accum, cfg.seed)
    else:
        sampler = PermutationSampler(len(rows), cfg.batch_size, cfg.seed)
    weighting = cfg.data.loss_weighting
    return iter(GlobalBatchStream(rows, sampler, lambda chunk, _position: collate(chunk, pad_id, weighting),
                                  start=position))


def local_share(batch: dict, run: Run) -> dict[str, torch.Tensor]:
    """This process's rows of a global batch, on its device (an extra process trains on nothing)."""
    share = shard_rows(batch, run.rank, run.world, ignore={"shift_labels": IGNORE_INDEX, "loss_weights": 0.0})
    return {k: v.to(run.accelerator.device) for k, v in share.items()}


# --- evaluation ----------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_loss(model, run: Run, eval_rows, pad_id: int, cfg: SFTConfig) -> dict[str, float]:
    """Held-out assistant loss and token accuracy, weighted as in training (mean over examples for
    ``example`` weighting, over target tokens for ``token``)."""
    if not eval_rows:
        return {}
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)  # weighted loss sum, weighted correct sum, loss items
    for start in range(0, len(eval_rows), cfg.eval.batch_size):
        batch = collate(eval_rows[start:start + cfg.eval.batch_size], pad_id, cfg.data.loss_weighting)
        with run.accelerator.autocast():
            loss, metrics = sft_loss(model, local_share(batch, run), num_items=1.0)
        totals += torch.tensor([float(loss), float(metrics["accuracy"]), 0.0], dtype=torch.float64)
        if run.rank == 0:
            totals[2] += float(batch["num_loss_items"].sum())
    totals = run.accelerator.reduce(totals.to(run.accelerator.device), reduction="sum").cpu()
    model.train()
    return {"eval/loss": totals[0].item() / totals[2].item(), "eval/accuracy": totals[1].item() / totals[2].item()}


def question_rows(cfg: SFTConfig) -> list[dict]:
    """Held-out chat rows whose last user turn is asked: the first ``eval.language_questions`` rows
    that pass the data checks, from ``eval.question_files`` or the world's sft eval split."""
    if not cfg.eval.language_questions:
        return []
    files = cfg.eval.question_files or [default_files("sft", cfg.data.world_scale, cfg.data.world_seed)[1]]
    rows = []
    try:
        for path in files:
            for _line, row in read_jsonl(path):
                try:
                    check_messages(row)
                except BadRow:
                    continue
                rows.append(row)
                if len(rows) == cfg.eval.language_questions:
                    return rows
    except JsonlError as err:
        raise UserError(str(err)) from None
    return rows


def asked_language(row: dict) -> str:
    """The language a reply should be in: ``meta.answer_lang``, else ``lang``, else the question's."""
    from world.judge import language_of

    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    lang = meta.get("answer_lang") or row.get("lang")
    if lang in ("en", "zh"):
        return lang
    return language_of([m for m in row["messages"] if m["role"] == "user"][-1]["content"])


@torch.no_grad()
def generate_reply(model, tokenizer, messages: list[dict], architecture: str, max_new_tokens: int = 48,
                   synced_gpus: bool | None = None) -> str:
    """The model's greedy reply to ``messages`` (a conversation ending with the turn to answer, or
    with the reference reply, which is left out). GLM-4: the chat template's generation prompt,
    stopping at ``<|user|>``/``<|observation|>``. GLM-1: the conversation as Part A ending in
    ``[gMASK]``, the reply generated in Part B after ``<sop>`` until ``<eop>``, as trained. A prompt
    beyond the model's positions is the model's error (GLM-1's position tables are fixed).
    ``synced_gpus`` keeps the processes stepping together when every forward gathers sharded weights
    (FSDP, ZeRO-3); None decides from the model (:func:`glm_base.sharded.forwards_are_collective`)."""
    renderer = ChatRenderer(tokenizer, architecture)
    ids = renderer.ids
    if synced_gpus is None:
        synced_gpus = forwards_are_collective(model)
    prompt = list(messages[:-1]) if messages[-1]["role"] == "assistant" else list(messages)
    device = next(model.parameters()).device
    stop = [tokenizer.convert_tokens_to_ids(t) for t in ("<|user|>", "<|observation|>")] + [ids.eos]
    if architecture == "glm4":
        input_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"]
        kwargs = {}
    else:
        text, _ = renderer.prompt_and_reply(prompt + [{"role": "assistant", "content": "x"}])
        part_a = tokenizer(text, add_special_tokens=False)["input_ids"] + [ids.gmask]
        input_ids = part_a + [ids.sop]
        n = len(part_a)
        kwargs = {"position_ids": torch.tensor([[list(range(n)) + [n - 1], [0] * n + [1]]], device=device),
                  "part_a_length": torch.tensor([n], device=device)}
        stop = [ids.eop, ids.eos]
    output = model.generate(input_ids=torch.tensor([input_ids], device=device), max_new_tokens=max_new_tokens,
                            do_sample=False, eos_token_id=stop, pad_token_id=ids.pad, synced_gpus=synced_gpus,
                            **kwargs)[0, len(input_ids):]
    reply = []
    for token in output.tolist():
        if token in stop:
            break
        reply.append(token)
    return tokenizer.decode(reply, skip_special_tokens=True)


def language_share(model, tokenizer, rows: list[dict], run: Run, architecture: str,
                   max_new_tokens: int) -> dict[str, Any]:
    """Share of ``rows`` answered in the asked language (greedy replies; each process answers its
    share of the rows). ``{"share", "n", "replies"}`` (a few of the replies)."""
    from world.judge import language_of

    if not rows:
        return {}
    unwrapped = run.accelerator.unwrap_model(model)
    unwrapped.eval()
    hits, shown = torch.zeros(2, dtype=torch.float64), []
    # with sharded weights every process answers as many questions: the extra ones repeat row 0, uncounted
    steps = list(in_step(rows[run.rank::run.world], unwrapped, rows[0]))
    for real, row in tqdm(steps, desc="language eval", disable=not run.is_main, leave=False):
        reply = generate_reply(unwrapped, tokenizer, row["messages"], architecture, max_new_tokens)
        if not real:
            continue
        hits += torch.tensor([float(language_of(reply) == asked_language(row)), 1.0], dtype=torch.float64)
        if len(shown) < 3:
            shown.append({"asked": asked_language(row), "reply": reply})
    hits = run.accelerator.reduce(hits.to(run.accelerator.device), reduction="sum").cpu()
    unwrapped.train()
    return {"share": hits[0].item() / max(hits[1].item(), 1.0), "n": int(hits[1].item()), "replies": shown}


# --- the loop ------------------------------------------------------------------------------------

def run(cfg: SFTConfig) -> dict[str, Any]:
    run = start_run(cfg, "sft")
    accelerator = run.accelerator

    model, tokenizer = load_base(cfg)
    architecture = getattr(model.config, "architecture", "glm4")
    pad_id = tokenizer.pad_token_id
    rows, eval_rows, data_counts = load_data(cfg, run, tokenizer, architecture)
    logger.info("data: %s", data_counts)
    questions = question_rows(cfg)
    base_language = language_share(model, tokenizer, questions, run, architecture, cfg.eval.max_new_tokens)

    if cfg.lora.enabled:
        model = add_lora(model, cfg.lora, cfg.seed)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if cfg.lora.enabled:
            model.enable_input_require_grads()
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = run.resume(cfg.signature(max_length=cfg.data.max_length, packing=cfg.data.packing,
                                     loss_weighting=cfg.data.loss_weighting, batching=cfg.data.batching,
                                     rows=len(rows)))
    base_eval = state.get("base_eval") or {f"base/{k.split('/')[1]}": v for k, v in
                                           evaluate_loss(model, run, eval_rows, pad_id, cfg).items()}
    if run.start_step == 0:
        run.metrics.log(0, {**base_eval, **({"eval/loss": base_eval["base/loss"]} if base_eval else {})})
    position, tokens_seen, targets_seen = (state.get(k, 0) for k in ("data_position", "tokens_seen", "targets_seen"))
    batches = batch_stream(cfg, rows, pad_id, position)

    model.train()
    last_eval: dict[str, float] = {}
    window = StepWindow()
    step = run.start_step
    with tqdm(total=cfg.max_steps, initial=run.start_step, desc="sft", disable=not run.is_main,
              dynamic_ncols=True) as progress:
        for step in range(run.start_step + 1, cfg.max_steps + 1):
            micro_batches = [next(batches) for _ in range(cfg.grad_accum)]
            position += cfg.grad_accum
            normaliser = sum(int(mb["num_loss_items"].sum()) for mb in micro_batches)
            tokens = sum(int(mb["attention_mask"].sum()) for mb in micro_batches)
            tokens_seen += tokens
            targets_seen += sum(int(mb["num_target_tokens"].sum()) for mb in micro_batches)
            with at_step(step):
                result = train_step(accelerator, model, optimizer, [local_share(mb, run) for mb in micro_batches],
                                    normaliser, loss_fn=sft_loss, grad_clip=cfg.optim.grad_clip)
            run.end_step(step, result, scheduler, window, progress, tokens, logged={"train/tokens_seen": tokens_seen})
            if run.should_eval(step):
                last_eval = evaluate_loss(model, run, eval_rows, pad_id, cfg)
                run.metrics.log(step, last_eval)
                if last_eval:
                    progress.write(f"step {step}: eval loss {last_eval['eval/loss']:.3f}, "
                                   f"accuracy {last_eval['eval/accuracy']:.3f}")
            if run.should_save(step):
                run.save(step, model, tokenizer, {"data_position": position, "tokens_seen": tokens_seen,
                                                  "targets_seen": targets_seen, "base_eval": base_eval})

    final_language = language_share(model, tokenizer, questions, run, architecture, cfg.eval.max_new_tokens)
    summary = {"steps": step, "architecture": architecture, "init_from": cfg.model.init_from,
               "lora": cfg.lora.enabled, "tokens_seen": tokens_seen, "targets_seen": targets_seen, **data_counts,
               **base_eval, **last_eval,
               "language_share": {"base": base_language.get("share"), "sft": final_language.get("share"),
                                  "questions": final_language.get("n", 0),
                                  "replies": {"base": base_language.get("replies", []),
                                               "sft": final_language.get("replies", [])}}}
    if cfg.lora.enabled:  # the adapter (PEFT format) in adapter/, the merged model in model/
        save_models(accelerator, model, None, run.run_dir / "adapter")
        model = accelerator.unwrap_model(model).merge_and_unload()
    title = f"SFT ({architecture}{', LoRA' if cfg.lora.enabled else ''})"
    return run.finish(model, tokenizer, summary, plots=[lambda d: plot_curves(
        d / "metrics.jsonl", d / "loss_curve.png", ["train/loss", "eval/loss"], title=title)])


def main(argv: list[str] | None = None) -> None:
    train_main(SFTConfig, run, argv, prog="python -m align.sft")


if __name__ == "__main__":
    main()
