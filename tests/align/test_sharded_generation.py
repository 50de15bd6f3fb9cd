"""Evaluation and rollouts with sharded weights (FSDP2 on two CPU processes, gloo).

With FSDP or ZeRO-3 every forward all-gathers the weights, so processes that generate replies of
different lengths, or evaluate different numbers of prompts, must keep stepping together
(:mod:`glm_base.sharded`). Before that, PPO's rollouts and evaluation and SFT's language check hung
under ``configs/accelerate/fsdp.yaml`` as soon as two processes' replies differed in length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.align.ppo_helpers import policy_dir

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_sharded_processes_generate_and_evaluate_as_one_whole_model_does(tmp_path):
    policy = policy_dir(tmp_path, "glm4")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "tests/align/sharded_two_process.py", str(policy), str(tmp_path)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, got in enumerate(ranks):
        whole, sharded = got["whole"], got["sharded"]
        assert not whole["collective"] and sharded["collective"]
        assert sharded["rollout"] == whole["rollout"] and sharded["reply"] == whole["reply"], r
        # the processes split 3 prompts (2 + 1) and 3 held-out rows and sum their counts
        for key, value in whole["eval"].items():
            assert sharded["eval"][key] == pytest.approx(value, rel=1e-5), (r, key)
    # the processes did unequal work: a one-token reply against a longer one
    assert len([t for t in ranks[0]["sharded"]["rollout"] if t != 0]) < len(ranks[1]["sharded"]["rollout"])
