"""trainkit.run / checkpoint / metrics / batches: run directories, resume of several models, the
batch stream, torn metric lines."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import load_file

from glm_base import GLMConfig, GLMForCausalLM
from glm_base.trainkit.args import TrainArgs
from glm_base.trainkit.batches import GlobalBatchStream, PermutationSampler, PhasedSampler, shard_rows
from glm_base.trainkit.checkpoint import ResumeMismatch, list_checkpoints
from glm_base.trainkit.metrics import MetricLogger, read_metrics
from glm_base.trainkit.optim import OptimArgs
from glm_base.trainkit.run import RunDirNotEmpty, start_run
from common.jsonl import JsonlError


@dataclass
class ToyConfig(TrainArgs):
    max_steps: int = 4
    optim: OptimArgs = field(default_factory=OptimArgs)


def tiny_policy(seed=0):
    torch.manual_seed(seed)
    return GLMForCausalLM(GLMConfig(vocab_size=40, hidden_size=32, num_hidden_layers=1, num_attention_heads=4))


def test_fresh_run_refuses_a_used_directory_unless_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "step-0000009").mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 9}\n')
    with pytest.raises(RunDirNotEmpty, match=r"already holds a run \(checkpoints, metrics\.jsonl\).*resume=true.*overwrite=true"):
        start_run(ToyConfig(output_dir=str(out)), "toy")
    assert (out / "checkpoints" / "step-0000009").is_dir()  # nothing touched
    run = start_run(ToyConfig(output_dir=str(out), overwrite=True), "toy")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]
    run.accelerator.end_training()
    start_run(ToyConfig(output_dir=str(out), resume=True), "toy").accelerator.end_training()
    start_run(ToyConfig(output_dir=str(tmp_path / "empty")), "toy").accelerator.end_training()


def train_once(run, policy, value, optimizer, x):
    loss = policy(x, labels=x).loss + value(torch.ones(1, 4)).pow(2).sum()
    run.accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()


def test_checkpoint_holds_several_named_models_and_resume_restores_all(tmp_path):
    out = tmp_path / "run"
    x = torch.randint(0, 40, (2, 6))
    run = start_run(ToyConfig(output_dir=str(out)), "toy")
    policy, value = tiny_policy(), torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(list(policy.parameters()) + list(value.parameters()), lr=1e-2)
    policy, value, optimizer = run.accelerator.prepare(policy, value, optimizer)
    run.resume(ToyConfig().signature(max_length=6))
    train_once(run, policy, value, optimizer, x)
    saved = run.save(1, policy, None, {"data_position": 5}, extra_models={"value": value})
    assert (saved / "config.json").is_file() and (saved / "value" / "model.safetensors").is_file()
    assert GLMForCausalLM.from_pretrained(saved) is not None
    torch.testing.assert_close(load_file(str(saved / "value" / "model.safetensors"))["weight"], value.weight.detach())
    expected = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    expected_value = value.weight.detach().clone()
    train_once(run, policy, value, optimizer, x)  # moves on past the checkpoint
    run.accelerator.end_training()

    run = start_run(ToyConfig(output_dir=str(out), resume=True), "toy")
    policy2, value2 = tiny_policy(seed=5), torch.nn.Linear(4, 1)
    optimizer2 = torch.optim.AdamW(list(policy2.parameters()) + list(value2.parameters()), lr=1e-2)
    policy2, value2, optimizer2 = run.accelerator.prepare(policy2, value2, optimizer2)
    state = run.resume(ToyConfig().signature(max_length=6))
    assert run.start_step == 1 and state["data_position"] == 5
    for name, tensor in policy2.state_dict().items():
        torch.testing.assert_close(tensor, expected[name])
    torch.testing.assert_close(value2.weight.detach(), expected_value)
    assert optimizer2.state_dict()["state"], "optimizer state restored"
    run.accelerator.end_training()


def test_resume_refuses_a_changed_data_order_naming_the_fields(tmp_path):
    out = tmp_path / "run"
    run = start_run(ToyConfig(output_dir=str(out)), "toy")
    policy = run.accelerator.prepare(tiny_policy())
    run.resume(ToyConfig().signature(max_length=6))
    run.save(1, policy, None, {})
    run.accelerator.end_training()
    changed = ToyConfig(output_dir=str(out), resume=True, batch_size=8, seed=3)
    run = start_run(changed, "toy")
    run.accelerator.prepare(tiny_policy())
    with pytest.raises(ResumeMismatch, match=r"batch_size: checkpoint 16, now 8; seed: checkpoint 0, now 3"):
        run.resume(changed.signature(max_length=6))
    with pytest.raises(ResumeMismatch, match=r"max_length: checkpoint 6, now 12"):
        run.resume(ToyConfig(output_dir=str(out), resume=True).signature(max_length=12))
    run.accelerator.end_training()
    assert [p.name for p in list_checkpoints(out)] == ["step-0000001"]


def test_resume_tolerates_a_torn_last_metrics_line_and_only_the_last(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    logger = MetricLogger(tmp_path, resume_step=2, tensorboard=False)
    logger.log(3, {"loss": 1.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 2.0), (2, 1.5), (3, 1.0)]
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(JsonlError, match=r"metrics\.jsonl:2: not valid JSON"):
        read_metrics(path)


def test_permutation_sampler_visits_every_example_once_per_epoch_and_resumes_anywhere():
    sampler = PermutationSampler(10, 4, seed=3)
    first_epochs = [i for p in range(5) for i in sampler.batch(p)]  # 20 elements = 2 epochs
    assert sorted(first_epochs[:10]) == list(range(10)) and sorted(first_epochs[10:]) == list(range(10))
    assert first_epochs[:10] != first_epochs[10:]  # a fresh permutation each epoch
    again = PermutationSampler(10, 4, seed=3)
    assert [again.batch(p) for p in (4, 2, 3)] == [sampler.batch(p) for p in (4, 2, 3)]
    assert PermutationSampler(10, 4, seed=4).batch(0) != sampler.batch(0)


def test_phased_sampler_draws_the_subset_first_then_everything():
    subset = [1, 4, 7]
    sampler = PhasedSampler(subset, first_batches=3, batch_size=2, seed=0, rest=PermutationSampler(10, 2, seed=0))
    first = [i for p in range(3) for i in sampler.batch(p)]  # 6 elements: the subset twice over
    assert sorted(first[:3]) == subset and sorted(first[3:]) == subset
    later = [i for p in range(3, 8) for i in sampler.batch(p)]  # then one epoch of all 10
    assert sorted(later) == list(range(10)) and later[:2] == PermutationSampler(10, 2, seed=0).batch(0)
    again = PhasedSampler(subset, 3, 2, 0, PermutationSampler(10, 2, seed=0))
    assert [again.batch(p) for p in (5, 1, 3)] == [sampler.batch(p) for p in (5, 1, 3)]  # resumes anywhere


def test_global_batch_stream_takes_any_rows_and_any_collator_and_resumes():
    rows = [{"text": f"row {i}", "n": i} for i in range(7)]

    def collate(examples, position):
        return {"n": torch.tensor([e["n"] for e in examples]), "position": position}

    stream = iter(GlobalBatchStream(rows, PermutationSampler(len(rows), 3, seed=1), collate))
    batches = [next(stream) for _ in range(5)]
    resumed = iter(GlobalBatchStream(rows, PermutationSampler(len(rows), 3, seed=1), collate, start=3))
    for expected in batches[3:]:
        got = next(resumed)
        assert got["position"] == expected["position"] and torch.equal(got["n"], expected["n"])


def test_shard_rows_gives_each_process_its_rows_and_an_idle_process_an_ignored_row():
    batch = {"input_ids": torch.arange(6).view(3, 2), "labels": torch.arange(6).view(3, 2), "name": "x"}
    assert shard_rows(batch, 1, 2)["input_ids"].tolist() == [[2, 3]]
    idle = shard_rows(batch, 3, 4, ignore={"labels": -100})
    assert idle["input_ids"].tolist() == [[0, 1]] and idle["labels"].tolist() == [[-100, -100]]
    assert "name" not in idle


@pytest.mark.slow
def test_the_default_world_is_built_once_by_the_main_process(tmp_path):
    """Two ranks (torchrun, gloo) need the default world: the main process builds it, the other waits
    at the barrier and reuses it (before, every process built its own)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    log = tmp_path / "builds.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLM_ALIGN_DATA": str(tmp_path / "data"), "BUILD_LOG": str(log),
           "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(repo / "tests" / "glm_base" / "world_build_two_ranks.py"), str(tmp_path / "run")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert log.read_text().split() == ["0"]
    assert (tmp_path / "data" / "world" / "tiny-seed0" / "manifest.json").is_file()
