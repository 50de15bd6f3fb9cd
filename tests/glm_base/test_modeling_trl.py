"""TRL's trainers take glm_base checkpoints as the policy and as the reference model."""

import math

import pytest
import torch
from datasets import Dataset

from glm_base import GLMConfig, GLMForCausalLM


def save_tiny(tmp_path, tokenizer, arch):
    torch.manual_seed(0)
    config = GLMConfig(architecture=arch, vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=256,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    path = tmp_path / f"tiny-{arch}"
    GLMForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def preference_data():
    rows = [
        dict(prompt="The river town of Alder Bend", chosen=" sits where two valleys meet.", rejected=" is cold."),
        dict(prompt="Mira Castell keeps", chosen=" the lighthouse on the northern cliff.", rejected=" bread."),
    ]
    return Dataset.from_list(rows * 4)


def test_config_always_has_an_auto_map(tmp_path):
    """transformers' auto classes and TRL read ``config.auto_map`` for architectures outside transformers."""
    config = GLMConfig(hidden_size=32, num_attention_heads=2)
    assert config.auto_map == {}
    config.save_pretrained(tmp_path)
    assert GLMConfig.from_pretrained(tmp_path).auto_map == {}


@pytest.mark.parametrize("arch, as_path", [("glm4", True), ("glm1", False)])
def test_dpo_trainer_trains_a_glm_base_policy_against_its_reference(arch, as_path, tmp_path, tokenizer):
    from trl import DPOConfig, DPOTrainer

    path = save_tiny(tmp_path, tokenizer, arch)
    initial = GLMForCausalLM.from_pretrained(path)
    model = str(path) if as_path else GLMForCausalLM.from_pretrained(path)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=3, per_device_train_batch_size=4,
                     learning_rate=1e-3, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no",
                     disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=preference_data(), processing_class=tokenizer)
    assert isinstance(trainer.model, GLMForCausalLM) and isinstance(trainer.ref_model, GLMForCausalLM)
    trainer.train()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the first step
    trained, reference, start = (m.state_dict() for m in (trainer.model, trainer.ref_model, initial))
    changed = [name for name in start if not torch.equal(trained[name].cpu(), start[name])]
    assert len(changed) > len(start) // 2
    for name, tensor in start.items():  # the reference model is the checkpoint, untouched
        assert torch.equal(reference[name].cpu(), tensor), name


def test_reward_trainer_turns_a_causal_lm_checkpoint_into_a_reward_model(tmp_path, tokenizer):
    from trl import RewardConfig, RewardTrainer

    from glm_base import GLMForSequenceClassification

    path = save_tiny(tmp_path, tokenizer, "glm4")
    pairs = Dataset.from_list([dict(chosen=row["prompt"] + row["chosen"], rejected=row["prompt"] + row["rejected"])
                               for row in preference_data()])
    args = RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=3, per_device_train_batch_size=4,
                        learning_rate=1e-3, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no",
                        disable_tqdm=True)
    trainer = RewardTrainer(model=str(path), args=args, train_dataset=pairs, processing_class=tokenizer)
    assert isinstance(trainer.model, GLMForSequenceClassification) and trainer.model.config.num_labels == 1
    start = trainer.model.score.weight.detach().clone()
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert not torch.equal(trainer.model.score.weight.detach(), start)
