"""Two processes (torchrun, gloo) run the PPO entry point's first step as one process does with the
same global batch: 4 prompts x 2 responses, each prompt's group sampled with its own seed
(``rollout.per_prompt_seed``, so the samples do not depend on which process draws them), one
minibatch of all 8 responses per epoch (so the split of rows between processes cannot change the
minibatches), global advantage whitening and loss normalisers.

Tolerance: the two launches sum the same numbers in another order (gloo's all-reduce), ~1e-7
relative. Metrics must agree to 1e-5 relative, every weight of the policy and the critic to 1e-5
absolute (measured: none of the 56,608 policy and 43,841 critic weights differs by more). A looser
bound could be needed on other hardware where Adam's first step (lr x g / |g|) meets a gradient of
float-noise size; none occurs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.align.ppo_helpers import policy_dir, reward_dir, tiny_overrides

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def launch(out: Path, overrides: list[str], processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if processes == 1:
        cmd = [sys.executable, "align/ppo.py", *overrides]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "align/ppo.py", *overrides]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_make_the_same_first_update_as_one(tmp_path):
    policy, rm = policy_dir(tmp_path, "glm4"), reward_dir(tmp_path)
    extra = {"max_steps": 1, "rollout.per_prompt_seed": "true", "ppo.minibatch_size": 8, "ppo.epochs": 2,
             "eval.prompts": 4, "eval.heldout_rows": 2, "eval.max_new_tokens": 4}
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        launch(out, tiny_overrides(out, policy, rm, **extra), processes)
        runs[processes] = out
    rows = {p: [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"reward"' in line][0]
            for p, out in runs.items()}
    for key, value in rows[1].items():
        if key.startswith("time/") or key == "samples_per_s" or value is None:
            continue
        assert rows[2][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert json.loads((runs[2] / "summary.json").read_text())["processes"] == 2
    # the evaluation splits its prompts and held-out rows between the processes and sums the counts
    evals = {p: json.loads((out / "eval.json").read_text()) for p, out in runs.items()}
    for when in ("initial_counts", "final_counts"):
        assert evals[2][when] == pytest.approx(evals[1][when], rel=1e-5), when

    from safetensors.torch import load_file

    for name in ("", "value"):
        one = load_file(str(runs[1] / "model" / name / "model.safetensors"))
        two = load_file(str(runs[2] / "model" / name / "model.safetensors"))
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5, msg=f"{name or 'policy'} {key}")
