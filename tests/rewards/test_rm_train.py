"""rewards.train end to end on a tiny model: centring (and the reloaded model's rewards), batch 8 x
accumulation 1 equals batch 2 x accumulation 4, resume equals an uninterrupted run, the annotation
app's export trains as it is, bad rows stop the run with one error line or are counted, one
process equals two (slow)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from rm_helpers import ranked_rows, tiny_model_dir, write_jsonl  # noqa: E402

from common.config import load_config  # noqa: E402
from rewards.train import RMConfig, main, run  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    return {"model": tiny_model_dir(root / "model"),
            "train": write_jsonl(root / "train.jsonl", ranked_rows(24)),
            "eval": write_jsonl(root / "eval.jsonl", ranked_rows(6, seed=1))}


def train(files, out: Path, *overrides: str) -> dict:
    cfg = load_config(RMConfig, [f"model.init_from={files['model']}", f"data.train_files=[{files['train']}]",
                                 f"data.eval_files=[{files['eval']}]", f"output_dir={out}", "max_steps=3",
                                 "batch_size=4", "eval_every=0", "log_every=1", "optim.lr=0.003",
                                 "optim.warmup_steps=0", *overrides])
    return run(cfg)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def reload_scores(model_dir: Path, data_file: Path) -> list[list[float]]:
    from transformers import AutoModelForSequenceClassification

    from glm_base.loading import load_model_and_tokenizer
    from rewards.data import encode_groups, read_preferences
    from rewards.scoring import score_groups

    model, tokenizer = load_model_and_tokenizer(model_dir, model_class=AutoModelForSequenceClassification,
                                                eval_mode=True)
    groups, _ = encode_groups(read_preferences(data_file)[0], tokenizer, 512)
    return score_groups(model, groups, tokenizer.pad_token_id)


@pytest.mark.parametrize("center_on", ["eval", "train"])
def test_centring_gives_mean_zero_on_the_reference_set_and_the_saved_model_applies_it(files, tmp_path, center_on):
    summary = train(files, tmp_path / "run", f"center_on={center_on}")
    assert summary["reward_offset"] == pytest.approx(summary["reference_mean_before"])
    assert summary["reward_offset"] != 0.0
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["reward_offset"] == pytest.approx(summary["reward_offset"])
    reference = [s for g in reload_scores(tmp_path / "run" / "model", files[center_on]) for s in g]
    assert len(reference) == summary["reference_responses"]
    assert sum(reference) / len(reference) == pytest.approx(0.0, abs=1e-5)
    assert summary["eval"]["pairs"] == 16 and set(summary["eval"]["by_lang"]) == {"en", "zh"}


def test_one_step_batch_8_accum_1_equals_batch_2_accum_4_exactly(files):
    """One train_step (SGD, so the update is the gradient itself) on the same 8 prompts, whole or in 4
    micro-batches of 2 prompts with different numbers of pairs, normalised by the step's pairs."""
    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification

    from glm_base.loading import load_model_and_tokenizer
    from glm_base.trainkit.steps import train_step
    from rewards.data import collate_groups, encode_groups, read_preferences
    from rewards.loss import rm_loss

    results = []
    for accumulation in (1, 4):
        torch.manual_seed(1)
        model, tokenizer = load_model_and_tokenizer(files["model"], model_class=AutoModelForSequenceClassification,
                                                    num_labels=1)
        groups, _ = encode_groups(read_preferences(files["train"])[0][:8], tokenizer, 512)
        assert sorted({len(g.pairs) for g in groups}) == [1, 2, 5]
        accelerator = Accelerator(gradient_accumulation_steps=accumulation, cpu=True)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        model, optimizer = accelerator.prepare(model, optimizer)
        size = 8 // accumulation
        batches = [collate_groups(groups[i:i + size], tokenizer.pad_token_id) for i in range(0, 8, size)]
        result = train_step(accelerator, model, optimizer, batches, sum(g.weight for g in groups), loss_fn=rm_loss)
        results.append((result, [p.detach().clone() for p in model.parameters()]))
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    (r1, p1), (r4, p4) = results
    assert r1.loss == pytest.approx(r4.loss, rel=1e-6)
    assert r1.metrics == pytest.approx(r4.metrics, rel=1e-6)
    for a, b in zip(p1, p4):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_training_batch_8_accum_1_equals_batch_2_accum_4(files, tmp_path):
    # prompts have 1, 2 or 5 pairs: micro-batches of 2 prompts hold different numbers of pairs
    a = train(files, tmp_path / "a", "batch_size=8", "grad_accum=1")
    b = train(files, tmp_path / "b", "batch_size=2", "grad_accum=4")
    la = [r["train/loss"] for r in map(json.loads, (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r]
    lb = [r["train/loss"] for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r]
    assert la == pytest.approx(lb, rel=1e-5) and len(la) == 3
    # Adam's first steps move each weight by ~lr whatever the gradient's size, so float rounding in
    # near-zero gradients shows up at ~1e-5 after 3 steps (the exact check is the test above)
    wa, wb = weights(tmp_path / "a" / "model"), weights(tmp_path / "b" / "model")
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=5e-5)
    assert a["eval"] == b["eval"]
    assert a["reward_offset"] == pytest.approx(b["reward_offset"], abs=1e-4)


def test_resume_equals_an_uninterrupted_run(files, tmp_path):
    full = tmp_path / "full"
    train(files, full, "max_steps=4", "save_every=2", "keep_last=3")
    part = tmp_path / "part"
    shutil.copytree(full, part)
    shutil.rmtree(part / "checkpoints" / "step-0000004")
    shutil.rmtree(part / "model")
    train(files, part, "max_steps=4", "save_every=2", "keep_last=3", "resume=true")
    wf, wp = weights(full / "model"), weights(part / "model")
    for name in wf:
        assert torch.equal(wf[name], wp[name]), name
    def history(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "train/tokens_per_s"} for r in rows]

    assert history(full) == history(part) and len(history(full)) == 6  # step 0 eval, 4 steps, final eval


def test_a_focus_phase_trains_on_its_categories_first_and_resumes_exactly(files, tmp_path):
    """focus_categories/focus_steps: the first steps draw only that category's prompts (a curriculum),
    the rest from everything; a run resumed inside the first phase equals an uninterrupted one."""
    from rewards.data import encode_groups, read_preferences
    from rewards.train import train_sampler

    cfg = load_config(RMConfig, ["focus_categories=[safe]", "focus_steps=3", "max_steps=5", "batch_size=4"])
    groups = [type("G", (), {"category": r["category"]})() for r in ranked_rows(24)]
    sampler = train_sampler(cfg, groups)
    assert all(groups[i].category == "safe" for p in range(3) for i in sampler.batch(p))
    assert {groups[i].category for p in range(3, 9) for i in sampler.batch(p)} == {"help", "safe"}

    focus = ("focus_categories=[safe]", "focus_steps=2", "max_steps=4", "save_every=1", "keep_last=5")
    full, part = tmp_path / "full", tmp_path / "part"
    train(files, full, *focus)
    shutil.copytree(full, part)
    for step in (2, 3, 4):
        shutil.rmtree(part / "checkpoints" / f"step-{step:07d}")
    shutil.rmtree(part / "model")
    train(files, part, *focus, "resume=true")
    wf, wp = weights(full / "model"), weights(part / "model")
    assert all(torch.equal(wf[name], wp[name]) for name in wf)
    with pytest.raises(Exception, match=r"focus_categories: no training row of \['nonsense'\]; the training data has \['help', 'safe'\]"):
        train(files, tmp_path / "bad", "focus_categories=[nonsense]", "focus_steps=1")
    for bad in (["focus_steps=2"], ["focus_steps=-1"], ["focus_categories=[safe]", "focus_steps=3"]):
        with pytest.raises(ValueError, match="focus_"):
            load_config(RMConfig, [*bad, "max_steps=3"])
    assert load_config(RMConfig, ["focus_categories=[safe]", "focus_steps=0", "max_steps=3"]).focus_steps == 0


def test_annotation_app_rankings_export_trains_without_conversion(files, tmp_path):
    from annotation_ui import io as aio
    from annotation_ui.store import Store

    items = [{"id": f"p{i}", "lang": ["en", "zh"][i % 2], "category": "qa", "prompt": f"question {i}?",
              "responses": [f"good answer {i}.", f"bad answer {i}.", f"worse answer {i} filler."]} for i in range(6)]
    items[1] = {**items[1], "prompt": None, "messages": [
        {"role": "user", "content": "first turn"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "question 1?"}]}
    items[1].pop("prompt")
    store = Store(f"sqlite:///{tmp_path / 'a.db'}", overlap=1)
    store.add_user("alice", "annotator", "pw-alice-1")
    assert aio.import_file(store, write_jsonl(tmp_path / "items.jsonl", items)) == (6, 0)
    for _ in range(6):
        item = store.next_item("alice")
        ranks = {str(r["id"]): k + 1 for k, r in enumerate(item["responses"])}
        store.submit_ranking("alice", item["item_id"], ranks)
    aio.export(store, tmp_path / "rankings.jsonl", fmt="rankings")
    store.close()
    exported = tmp_path / "rankings.jsonl"
    assert len(exported.read_text().splitlines()) == 6
    summary = train({**files, "train": exported, "eval": exported}, tmp_path / "run")
    assert summary["train_data"]["groups"] == 6 and summary["train_data"]["pairs"] == 18
    assert summary["train_data"]["dropped_total"] == 0 and summary["eval"]["pairs"] == 18


def test_bad_rows_error_line_or_dropped_and_counted_in_summary(files, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", ranked_rows(8) + [
        {"prompt": "q", "responses": ["a", "b", "c"], "ranking": [1, 2]},
        {"prompt": "q", "responses": ["a", "a"], "ranking": [1, 2]}])
    argv = [f"model.init_from={files['model']}", f"data.train_files=[{bad}]", f"data.eval_files=[{files['eval']}]",
            f"output_dir={tmp_path / 'e'}", "max_steps=1", "batch_size=2"]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {bad}: row 9: field 'ranking': expected 3 ranks (one per response), got 2 [ranking_length]"
    summary = train({**files, "train": bad}, tmp_path / "d", "data.bad_rows=drop")
    assert summary["train_data"]["dropped"] == {"duplicate_response": 1, "ranking_length": 1}
    assert summary["train_data"]["rows"] == 10 and summary["train_data"]["groups"] == 8
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["train_data"]["dropped_total"] == 2


def test_lora_trains_adapters_and_saves_a_merged_reward_model(files, tmp_path):
    summary = train(files, tmp_path / "lora", "lora.enabled=true", "lora.r=4")
    saved = weights(tmp_path / "lora" / "model")
    assert not any("lora" in k for k in saved) and "score.weight" in saved
    base = weights(files["model"])
    changed = [k for k in saved if k in base and not torch.equal(saved[k], base[k])]
    assert changed and all("proj" in k for k in changed)  # merged adapters; embeddings and norms frozen
    reference = [s for g in reload_scores(tmp_path / "lora" / "model", files["eval"]) for s in g]
    assert sum(reference) / len(reference) == pytest.approx(0.0, abs=1e-5)
    assert summary["lora"] is True


@pytest.mark.slow
def test_two_processes_equal_one(files, tmp_path, launch_two_processes):
    one = tmp_path / "one"
    train(files, one, "batch_size=4", "grad_accum=2")
    two = tmp_path / "two"
    launch_two_processes("rewards.train", [f"model.init_from={files['model']}", f"data.train_files=[{files['train']}]",
                                           f"data.eval_files=[{files['eval']}]", f"output_dir={two}", "max_steps=3",
                                           "batch_size=4", "grad_accum=2", "eval_every=0", "log_every=1",
                                           "optim.lr=0.003", "optim.warmup_steps=0"], cwd=Path(__file__).parents[2])
    w1, w2 = weights(one / "model"), weights(two / "model")
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], rtol=1e-4, atol=5e-5)
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s2["processes"] == 2 and s1["eval"]["accuracy"] == s2["eval"]["accuracy"]
    assert s1["reward_offset"] == pytest.approx(s2["reward_offset"], abs=1e-5)


def test_every_process_scores_as_many_rows():
    """Eval and centring shard the responses so each process runs the same number of forwards (ZeRO-3
    and FSDP gather the weights collectively in each one): together the shares cover every row once,
    and a process short of rows repeats row 0."""
    from rewards.train import shard_rows

    for n, world in [(7, 2), (8, 2), (5, 3), (1, 4), (4, 1)]:
        shares = [shard_rows(n, rank, world) for rank in range(world)]
        assert len({len(s) for s in shares}) == 1
        assert sorted(i for s in shares for i in s if i) == list(range(1, n))
        assert sum(i == 0 for s in shares for i in s) == len(shares[0]) * world - n + 1
