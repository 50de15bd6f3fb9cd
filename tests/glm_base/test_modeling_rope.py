"""RoPE scaling as transformers configures it: a scaled GLM-4-variant model equals GlmForCausalLM with
the same rope_parameters after export, and the scaling really changes the model."""

import pytest
import torch
from transformers import GlmForCausalLM

from glm_base import GLMConfig, GLMForCausalLM
from glm_base.export import export_to_transformers, import_from_transformers

VOCAB = 89
MAX_POSITIONS = 16
SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8},
}


def scaled_model(rope, partial_rotary_factor=0.5, seed=0):
    torch.manual_seed(seed)
    config = GLMConfig(architecture="glm4", vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
                       rope_theta=500.0, partial_rotary_factor=partial_rotary_factor, rope_parameters=dict(rope))
    return GLMForCausalLM(config).eval()


@pytest.mark.parametrize("name", list(SCALINGS))
def test_scaled_rope_matches_glm_for_causal_lm_after_export(name, tmp_path):
    model = scaled_model(SCALINGS[name], partial_rotary_factor=0.25 if name == "yarn" else 0.5)
    assert model.config.rope_parameters["rope_type"] == name and model.config.rope_theta == 500.0
    model.save_pretrained(tmp_path / "ours")
    export_to_transformers(tmp_path / "ours", tmp_path / "hf")
    theirs = GlmForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert theirs.config.rope_parameters["rope_type"] == name
    ids = torch.randint(0, VOCAB, (2, 24))  # beyond max_position_embeddings: dynamic scaling acts
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours, hf = model(ids).logits, theirs(ids).logits
        ours_padded = model(ids, attention_mask=mask).logits
        hf_padded = theirs(ids, attention_mask=mask, position_ids=positions).logits
    assert (ours - hf).abs().max().item() <= 1e-5
    assert (ours_padded - hf_padded)[mask.bool()].abs().max().item() <= 1e-5

    unscaled = GLMForCausalLM(GLMConfig(**{**model.config.to_dict(), "rope_parameters": None})).eval()
    unscaled.load_state_dict(model.state_dict())
    assert unscaled.config.rope_parameters["rope_type"] == "default"
    with torch.no_grad():
        assert (unscaled(ids).logits - ours).abs().max() > 1e-4  # the scaling is not ignored

    import_from_transformers(tmp_path / "hf", tmp_path / "back")
    back = GLMForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert back.config.rope_parameters["rope_type"] == name
    with torch.no_grad():
        assert (back(ids).logits - ours).abs().max().item() <= 1e-5


def test_rope_scaling_is_the_old_name_of_rope_parameters():
    config = GLMConfig(hidden_size=64, num_attention_heads=4, rope_scaling={"rope_type": "linear", "factor": 3.0})
    assert config.rope_parameters == {"rope_type": "linear", "factor": 3.0, "rope_theta": 10000.0,
                                      "partial_rotary_factor": 0.5}


def test_span_half_is_unscaled_so_span_zero_stays_plain_causal():
    model = scaled_model(SCALINGS["yarn"])
    ids = torch.randint(0, VOCAB, (1, 10))
    zeros = torch.stack([torch.arange(10), torch.zeros(10, dtype=torch.long)])[None]
    with torch.no_grad():
        torch.testing.assert_close(model(ids, position_ids=zeros).logits, model(ids).logits, rtol=0, atol=1e-6)
