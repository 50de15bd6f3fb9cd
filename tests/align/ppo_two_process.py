"""One PPO update as a program, for the one-process-equals-two test:
``python -m tests.align.ppo_two_process OUT_FILE [shared]`` (one process) or under ``torchrun --nproc_per_node 2``;
``shared`` trains a value head on the policy (one model, one optimizer) instead of a separate critic.

Every process builds the same tiny policy, critic and 8-response experience; with W processes each
takes rows ``rank::W`` and a minibatch of 8 / W, so one optimizer step of either launch covers all 8
rows. The main process saves the updated weights and the metrics to OUT_FILE.
"""

import copy
import sys

import torch

from align.rl.experience import make_experience
from align.rl.rollout import HFRollout
from align.rl.update import PPOUpdateArgs, ppo_update
from align.rl.value_model import PolicyWithValueHead, ValueModel
from glm_base import GLMConfig, GLMForCausalLM
from glm_base.trainkit.accel import make_accelerator


def main(out_file: str, shared: bool = False) -> None:
    accelerator = make_accelerator(grad_accum=1, mixed_precision="no")
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(0)
    config = GLMConfig(architecture="glm4", vocab_size=32, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=64, initializer_range=0.2)
    policy = GLMForCausalLM(config)
    critic = None if shared else ValueModel.from_causal_lm(policy)
    model = PolicyWithValueHead(policy) if shared else policy
    torch.manual_seed(1)
    rollout = HFRollout(policy, [1, 2], 0, max_new_tokens=5).generate([[5], [6, 7], [8], [9, 10, 11]] * 2)
    scores = torch.arange(8, dtype=torch.float32) / 4 - 1
    experience, _ = make_experience(rollout, scores, model, copy.deepcopy(policy), critic, kl_coef=0.1,
                                    shared_critic=shared)
    experience.old_logprobs -= 0.2 * experience.response_mask  # so the ratio clip is exercised
    if shared:
        experience.old_values += 0.3 * experience.response_mask  # so the value clip is exercised
    local = experience.select(torch.arange(rank, 8, world))
    popt = torch.optim.SGD(model.parameters(), lr=0.3)
    if shared:
        copt = None
        model, popt = accelerator.prepare(model, popt)
    else:
        copt = torch.optim.SGD(critic.parameters(), lr=0.3)
        model, popt, critic, copt = accelerator.prepare(model, popt, critic, copt)
    args = PPOUpdateArgs(ppo_epochs=2, minibatch_size=8 // world, grad_clip=1.0, entropy_coef=0.01, vf_coef=0.5)
    metrics = ppo_update(accelerator, model, popt, local.to(accelerator.device), args, critic=critic,
                         critic_optimizer=copt, generator=torch.Generator().manual_seed(rank), shared_critic=shared)
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(model)
        head = trained.value_head if shared else accelerator.unwrap_model(critic)
        torch.save({"metrics": metrics, "world": world,
                    "policy": {k: v.cpu() for k, v in (trained.policy if shared else trained).state_dict().items()},
                    "critic": {k: v.cpu() for k, v in head.state_dict().items()}},
                   out_file)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    from glm_base.trainkit.run import end_processes

    main(sys.argv[1], shared=sys.argv[2:] == ["shared"])
    end_processes()  # the models are freed with main's frame; then the gloo group goes (an abort at exit otherwise)
