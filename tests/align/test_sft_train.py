"""The SFT trainer: loss normalisation invariants (accumulation, processes, resume), a tiny run that
learns, LoRA adapter + merged export, bad rows counted, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from sft_helpers import chat_rows, launch_two_processes, model_dir, small_tokenizer, tiny_model

import glm_base  # noqa: F401  (registers the auto classes)
from align.batching import SortedBatchSampler
from align.packing import collate, make_rows, sft_loss
from align.sft import SFTConfig, main, run
from align.sft_data import render_messages
from common.config import load_config
from common.jsonl import write_jsonl
from glm_base.trainkit.batches import GlobalBatchStream
from glm_base.trainkit.metrics import read_metrics
from glm_base.trainkit.steps import train_step

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft-data")
    write_jsonl(root / "train.jsonl", chat_rows(48))
    write_jsonl(root / "eval.jsonl", chat_rows(12, seed=1))
    model_dir(root / "glm4", "glm4")
    model_dir(root / "glm1", "glm1")
    return root


def sft_args(data, out, *extra, arch="glm4"):
    return [f"output_dir={out}", f"model.init_from={data / arch}", "seed=3", "batch_size=4", "max_steps=6",
            "log_every=1", "eval_every=3", "save_every=3", f"data.train_files=[{data / 'train.jsonl'}]",
            f"data.eval_files=[{data / 'eval.jsonl'}]", f"eval.question_files=[{data / 'eval.jsonl'}]",
            "eval.language_questions=4", "eval.max_new_tokens=8", "data.max_length=96", "optim.lr=0.003",
            "optim.warmup_steps=4", *extra]


def train_losses(run_dir):
    return [row["train/loss"] for row in read_metrics(Path(run_dir) / "metrics.jsonl") if "train/loss" in row]


def weights(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


# --- the training math ----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["glm4", "glm1"])
def test_batch_8_accum_1_equals_batch_1_accum_8(arch):
    """Packed rows, LongAlign example weighting, sorted batching: the step's loss and gradients do not
    depend on how its global batch is cut into micro-batches."""
    tok = small_tokenizer()
    examples = [render_messages(r["messages"], tok, arch) for r in chat_rows(40)]
    rows = make_rows(examples, 64)
    lengths = [sum(map(len, row)) for row in rows]
    results = []
    for batch_size, accumulation in ((8, 1), (1, 8)):
        model = tiny_model(arch, len(tok)).train()
        accelerator = Accelerator(gradient_accumulation_steps=accumulation, cpu=True)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is minus the gradient
        model, optimizer = accelerator.prepare(model, optimizer)
        stream = iter(GlobalBatchStream(rows, SortedBatchSampler(lengths, batch_size, accumulation, seed=5),
                                        lambda chunk, _p: collate(chunk, tok.pad_token_id, "example")))
        micro = [next(stream) for _ in range(accumulation)]
        normaliser = sum(int(mb["num_loss_items"].sum()) for mb in micro)
        assert normaliser > 8  # several examples per packed row: M counts examples, not rows
        result = train_step(accelerator, model, optimizer, micro, normaliser, loss_fn=sft_loss)
        grads = {n: before[n] - p.detach() for n, p in model.named_parameters()}
        results.append((result.loss, result.metrics["accuracy"], grads))
    (loss_a, acc_a, grads_a), (loss_b, acc_b, grads_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert acc_a == pytest.approx(acc_b, abs=1e-6)
    assert grads_a.keys() == grads_b.keys() and max(float(g.abs().max()) for g in grads_a.values()) > 1e-3
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lora", [False, True])
def test_resume_after_step_3_equals_an_uninterrupted_run(data, tmp_path, lora):
    extra = ["data.packing=true", "data.loss_weighting=example", f"lora.enabled={str(lora).lower()}"]
    straight = run(load_config(SFTConfig, sft_args(data, tmp_path / "straight", *extra)))
    run(load_config(SFTConfig, sft_args(data, tmp_path / "cut", *extra, "max_steps=3")))
    # warmup covers steps 1-3, so the shorter run's schedule agrees with the longer one up to the cut
    resumed = run(load_config(SFTConfig, sft_args(data, tmp_path / "cut", *extra, "resume=true")))
    assert len(train_losses(tmp_path / "cut")) == 6
    assert train_losses(tmp_path / "cut") == pytest.approx(train_losses(tmp_path / "straight"), abs=1e-6)
    assert resumed["eval/loss"] == pytest.approx(straight["eval/loss"], abs=1e-6)
    assert resumed["tokens_seen"] == straight["tokens_seen"]
    a, b = weights(tmp_path / "straight" / "model"), weights(tmp_path / "cut" / "model")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_two_processes_equal_one(data, tmp_path):
    """Two data-parallel processes (torchrun, gloo) train exactly as one: same step losses (LongAlign
    weighting over the whole global batch), eval loss, language shares and weights."""
    extra = ["data.packing=true", "max_steps=4", "eval_every=0", "save_every=0", "eval.language_questions=3"]
    one = run(load_config(SFTConfig, sft_args(data, tmp_path / "one", *extra)))
    launch_two_processes("align.sft", sft_args(data, tmp_path / "two", *extra), REPO)
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert train_losses(tmp_path / "two") == pytest.approx(train_losses(tmp_path / "one"), rel=1e-4)
    assert two["eval/loss"] == pytest.approx(one["eval/loss"], rel=1e-4)
    # 3 questions over 2 processes: one answers a padding question that is not counted
    assert two["language_share"]["questions"] == one["language_share"]["questions"] == 3
    assert two["language_share"]["base"] == one["language_share"]["base"]
    assert two["language_share"]["sft"] == one["language_share"]["sft"]
    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


# --- runs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["glm4", "glm1"])
def test_tiny_run_lowers_held_out_loss_and_writes_its_outputs(data, tmp_path, arch):
    out = tmp_path / arch
    summary = run(load_config(SFTConfig, sft_args(data, out, "max_steps=12", "eval_every=6", arch=arch)))
    for name in ("config.yaml", "metrics.jsonl", "loss_curve.png", "summary.json", "model/config.json",
                 "model/tokenizer.json", "checkpoints/step-0000012/trainer_state.json"):
        assert (out / name).is_file(), name
    assert summary["architecture"] == arch and summary["steps"] == 12
    assert summary["eval/loss"] < summary["base/loss"] - 0.3
    evals = [row["eval/loss"] for row in read_metrics(out / "metrics.jsonl") if "eval/loss" in row]
    assert len(evals) == 3 and evals[0] == summary["base/loss"] and evals[-1] == summary["eval/loss"]
    share = summary["language_share"]
    assert share["questions"] == 4 and 0.0 <= share["base"] <= 1.0 and 0.0 <= share["sft"] <= 1.0
    state = json.loads((out / "checkpoints/step-0000012/trainer_state.json").read_text())
    assert state["data_position"] == 12 and state["signature"]["batch_size"] == 4


def test_lora_saves_a_peft_adapter_and_a_merged_model(data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    run(load_config(SFTConfig, sft_args(data, out, "lora.enabled=true", "lora.r=4", "optim.lr=0.01")))
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4
    assert sorted(adapter_config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    ids = torch.tensor([small_tokenizer()("Where is the lighthouse?")["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(data / "glm4").eval()
    base_logits = base(input_ids=ids).logits
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    with torch.no_grad():
        adapted_logits, merged_logits = adapted(input_ids=ids).logits, merged(input_ids=ids).logits
    torch.testing.assert_close(adapted_logits, merged_logits, rtol=1e-4, atol=1e-4)
    assert (adapted_logits - base_logits).abs().max() > 1e-3  # the adapter learned something
    assert not any("lora" in name for name in merged.state_dict())


def test_bad_rows_are_counted_in_the_summary_or_end_the_run(data, tmp_path, capsys):
    rows = chat_rows(16)
    rows[2] = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                            {"role": "user", "content": "Bye"}]}                              # last_not_assistant
    rows[5] = {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "Hm."}]}  # empty
    rows[9] = {"messages": [{"role": "robot", "content": "Hi"}, {"role": "assistant", "content": "Hi"}]}
    write_jsonl(tmp_path / "bad.jsonl", rows)
    args = sft_args(data, tmp_path / "drop", f"data.train_files=[{tmp_path / 'bad.jsonl'}]", "max_steps=1",
                    "eval.language_questions=0")
    summary = run(load_config(SFTConfig, args + ["data.bad_rows=drop"]))
    assert summary["train_data"]["dropped"] == {"empty_content": 1, "last_not_assistant": 1, "unknown_role": 1}
    assert summary["train_data"]["examples"] == 13
    saved = json.loads((tmp_path / "drop" / "summary.json").read_text())
    assert saved["train_data"]["dropped"] == summary["train_data"]["dropped"]
    with pytest.raises(SystemExit) as exit_info:
        main(sft_args(data, tmp_path / "error", f"data.train_files=[{tmp_path / 'bad.jsonl'}]"))
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "bad.jsonl:3" in last and "last_not_assistant" in last


def test_user_errors_are_one_line(data, tmp_path, capsys):
    cases = [
        (["model.init_from=" + str(tmp_path / "nowhere")], "model.init_from"),
        (["data.max_length=1024"], "max_position_embeddings=512"),
        (["model.overrides={max_position_embeddings: 1024}", "data.max_length=96"], "GLM-1 model has learned position"),
        (["model.overrides={no_such_field: 1}"], "no_such_field"),
        (["lora.enabled=true", "lora.target_modules=[nothing_here]"], "lora.target_modules"),
        (["batch_size=64"], "fewer than one step"),
    ]
    for k, (extra, expected) in enumerate(cases):
        arch = "glm1" if "GLM-1" in expected else "glm4"
        with pytest.raises(SystemExit) as exit_info:
            main(sft_args(data, tmp_path / f"e{k}", *extra, arch=arch))
        assert exit_info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("error: ") and expected in last, last
