"""The pretraining loop: outputs, exact resume, loss normalisation invariants, NaN stop, bad input."""

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

import glm_base  # noqa: F401  (registers the auto classes)
from glm_base import GLMConfig, GLMForCausalLM
from glm_base.pretrain import PretrainConfig, main, run
from common.config import load_config
from glm_base.tokenizer import read_corpus, train_tokenizer
from glm_base.trainkit.checkpoint import list_checkpoints
from world.default import world_files
from glm_base.trainkit.metrics import read_metrics
from glm_base.trainkit.steps import train_step

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 400-document slice of the world corpus and a small tokenizer trained on it."""
    root = tmp_path_factory.mktemp("pretrain-data")
    train, evaluation = world_files("corpus", size="tiny", seed=0)
    lines = Path(train).read_text(encoding="utf-8").splitlines()
    (root / "train.jsonl").write_text("\n".join(lines[:400]) + "\n", encoding="utf-8")
    (root / "eval.jsonl").write_text("\n".join(Path(evaluation).read_text(encoding="utf-8").splitlines()[:40]) + "\n",
                                     encoding="utf-8")
    train_tokenizer(read_corpus([root / "train.jsonl"]), 600, out_dir=root / "tokenizer")
    return root


def tiny_args(corpus, out, *extra):
    return [
        f"output_dir={out}", "seed=3", "batch_size=4", "max_steps=6", "log_every=1", "eval_every=0",
        "save_every=3", "eval_batches=1", f"tokenizer.path={corpus / 'tokenizer'}",
        f"data.train_files=[{corpus / 'train.jsonl'}]", f"data.eval_files=[{corpus / 'eval.jsonl'}]",
        "data.max_length=64", "data.num_workers=0", "optim.warmup_steps=4", "optim.lr=0.003",
        "model.overrides={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,"
        " max_position_embeddings: 128}",
        *extra,
    ]


def train_losses(run_dir):
    return [row["train/loss"] for row in read_metrics(Path(run_dir) / "metrics.jsonl") if "train/loss" in row]


def test_run_writes_a_loadable_model_metrics_and_curve(corpus, tmp_path):
    summary = run(load_config(PretrainConfig, tiny_args(corpus, tmp_path / "run")))
    out = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "loss_curve.png", "summary.json", "model/config.json",
                 "model/tokenizer.json"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").iterdir())
    assert [p.name for p in list_checkpoints(out)] == ["step-0000003", "step-0000006"]
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert isinstance(model, GLMForCausalLM) and len(tokenizer) <= model.config.vocab_size
    for objective in ("blank", "sentence", "document"):
        assert 0.0 <= summary[f"eval/{objective}/accuracy"] <= 1.0
        assert summary[f"eval/{objective}/loss"] > 0
    losses = train_losses(out)
    assert len(losses) == 6 and losses[-1] < losses[0]


@pytest.mark.parametrize("streaming", [False, True])
def test_resume_continues_exactly(corpus, tmp_path, streaming):
    extra = [f"data.streaming={str(streaming).lower()}", "data.shuffle_buffer=50"]
    run(load_config(PretrainConfig, tiny_args(corpus, tmp_path / "straight", *extra)))
    run(load_config(PretrainConfig, tiny_args(corpus, tmp_path / "interrupted", *extra, "max_steps=3")))
    # warmup covers steps 1-3, so the shorter run's schedule agrees with the longer one up to the cut
    run(load_config(PretrainConfig, tiny_args(corpus, tmp_path / "interrupted", *extra, "resume=true")))
    straight, resumed = train_losses(tmp_path / "straight"), train_losses(tmp_path / "interrupted")
    assert len(resumed) == 6
    assert resumed == pytest.approx(straight, abs=1e-6)
    a = GLMForCausalLM.from_pretrained(tmp_path / "straight" / "model").state_dict()
    b = GLMForCausalLM.from_pretrained(tmp_path / "interrupted" / "model").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_batch_8_accum_1_equals_batch_1_accum_8():
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    ids = torch.randint(0, 50, (8, 12))
    targets = ids.clone()
    targets[:, :3] = -100
    targets[::2, 8:] = -100  # rows with different target counts: a per-micro-batch mean would differ
    results = []
    for accumulation in (1, 8):
        torch.manual_seed(1)
        model = GLMForCausalLM(config)
        accelerator = Accelerator(gradient_accumulation_steps=accumulation, cpu=True)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        model, optimizer = accelerator.prepare(model, optimizer)
        rows = 8 // accumulation
        batches = [{"input_ids": ids[i:i + rows], "shift_labels": targets[i:i + rows]} for i in range(0, 8, rows)]
        result = train_step(accelerator, model, optimizer, batches, int((targets != -100).sum()))
        results.append((result.loss, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True])
def test_two_processes_equal_one_across_a_resume(corpus, tmp_path, launch_two_processes, streaming):
    """Two data-parallel processes (torchrun, gloo), stopped after 3 steps and resumed from their
    checkpoint, train exactly as one uninterrupted process: same losses, eval loss and weights."""
    extra = [f"data.streaming={str(streaming).lower()}", "data.shuffle_buffer=50"]
    one = run(load_config(PretrainConfig, tiny_args(corpus, tmp_path / "one", *extra)))
    launch_two_processes("glm_base.pretrain", tiny_args(corpus, tmp_path / "two", *extra, "max_steps=3"), REPO)
    launch_two_processes("glm_base.pretrain", tiny_args(corpus, tmp_path / "two", *extra, "resume=true"), REPO)
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert len(train_losses(tmp_path / "two")) == 6
    assert train_losses(tmp_path / "two") == pytest.approx(train_losses(tmp_path / "one"), rel=1e-4)
    assert two["eval/loss"] == pytest.approx(one["eval/loss"], rel=1e-4)
    a = GLMForCausalLM.from_pretrained(tmp_path / "one" / "model").state_dict()
    b = GLMForCausalLM.from_pretrained(tmp_path / "two" / "model").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_nan_loss_stops_before_the_step_and_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    real_forward = GLMForCausalLM.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5 and out.loss is not None:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(GLMForCausalLM, "forward", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_args(corpus, out))
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("error: the training loss became NaN/inf at step 5")
    assert "step-0000003" in last_line
    assert [p.name for p in list_checkpoints(out)] == ["step-0000003"]
    assert GLMForCausalLM.from_pretrained(list_checkpoints(out)[0]) is not None


def test_missing_text_field_names_the_file_and_field(corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"body": "no text field here"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl.*'text'"):
        run(load_config(PretrainConfig, tiny_args(corpus, tmp_path / "run", f"data.eval_files=[{bad}]")))


def test_own_corpus_without_eval_files_holds_out_training_documents(corpus, tmp_path):
    """The README's way of bringing one's own corpus (train_files only) used to crash with
    "Unable to concatenate an empty list of datasets"; now a slice of the training chunks is held out."""
    args = [a for a in tiny_args(corpus, tmp_path / "own", "max_steps=2", "data.eval_holdout=10")
            if not a.startswith("data.eval_files")]
    summary = run(load_config(PretrainConfig, args))
    assert summary["eval_data"] == {"held_out_of_train": 10}
    full = run(load_config(PretrainConfig, tiny_args(corpus, tmp_path / "full", "max_steps=2")))
    assert summary["train_data"]["chunks"] == full["train_data"]["chunks"] - 10
    assert summary["eval/loss"] > 0


def test_eval_files_without_train_files_is_an_error_naming_both_fields():
    from common.errors import UserError
    from glm_base.pretrain import DataArgs, resolve_files

    with pytest.raises(UserError, match=r"data\.eval_files is set but data\.train_files is empty"):
        resolve_files(DataArgs(eval_files=["e.jsonl"]))


def test_the_world_has_its_own_seed(monkeypatch):
    """A seed sweep (seed=1, 2, ...) must not change the corpus and the eval set."""
    import glm_base.pretrain as pretrain

    asked = []
    monkeypatch.setattr(pretrain, "world_files", lambda kind, size, seed: asked.append((kind, size, seed)) or ("t", "e"))
    for seed in (0, 1, 2):
        pretrain.resolve_files(load_config(PretrainConfig, [f"seed={seed}"]).data)
    pretrain.resolve_files(load_config(PretrainConfig, ["seed=5", "data.world_seed=7"]).data)
    assert asked == [("corpus", "tiny", 0)] * 3 + [("corpus", "tiny", 7)]


def test_a_fresh_run_into_a_used_directory_is_refused_and_resume_checks_the_data_order(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    run(load_config(PretrainConfig, tiny_args(corpus, out, "max_steps=3")))
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_args(corpus, out))  # forgot resume=true: the old run's checkpoints would be mixed in
    assert exit_info.value.code == 2
    assert "already holds a run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(tiny_args(corpus, out, "resume=true", "batch_size=2", "data.max_length=48"))
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "batch_size: checkpoint 4, now 2" in last and "max_length: checkpoint 64, now 48" in last
    assert [p.name for p in list_checkpoints(out)] == ["step-0000003"]
