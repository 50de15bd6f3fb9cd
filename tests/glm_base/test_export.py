"""Export to transformers' GlmForCausalLM and import back: same logits, loads without glm_base."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import GlmConfig, GlmForCausalLM

from glm_base import GLMConfig, GLMForCausalLM
from glm_base.export import ExportError, export_to_transformers, import_from_transformers, main

VOCAB = 101

CONFIGS = [
    dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4),  # MHA
    dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2),  # GQA 2:1
    dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=1),  # MQA
    dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, head_dim=24),  # head_dim != h/heads
    dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, attention_bias=False,
         tie_word_embeddings=True, partial_rotary_factor=0.25),
]


def make(seed, **values):
    torch.manual_seed(seed)
    config = GLMConfig(architecture="glm4", vocab_size=VOCAB, num_hidden_layers=2, **values)
    model = GLMForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a dropped tensor would show
        for name, param in model.named_parameters():
            if "norm" in name or "bias" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_export_gives_the_same_logits(index, tmp_path):
    model = make(index, **CONFIGS[index])
    model.save_pretrained(tmp_path / "ours")
    export_to_transformers(tmp_path / "ours", tmp_path / "hf")
    exported = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert exported["model_type"] == "glm" and exported["eos_token_id"] is None
    theirs = GlmForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, VOCAB, (3, 17))
    mask = torch.ones_like(ids)
    mask[0, 12:] = 0
    with torch.no_grad():
        diff = (theirs(ids).logits - model(ids).logits).abs().max().item()
        padded_diff = (theirs(ids, attention_mask=mask).logits[0, :12]
                       - model(ids, attention_mask=mask).logits[0, :12]).abs().max().item()
    assert diff <= 1e-5 and padded_diff <= 1e-5


def test_exported_checkpoint_loads_without_glm_base(tmp_path):
    model = make(0, **CONFIGS[1])
    model.save_pretrained(tmp_path / "ours")
    main(["--checkpoint", str(tmp_path / "ours"), "--out", str(tmp_path / "hf")])
    ids = torch.randint(0, VOCAB, (1, 9))
    with torch.no_grad():
        expected = model(ids).logits
    torch.save(ids, tmp_path / "ids.pt")
    script = f"""
import sys
sys.modules['glm_base'] = None  # any import of glm_base now fails
import torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(r'{tmp_path / "hf"}').eval()
assert type(m).__name__ == 'GlmForCausalLM', type(m)
with torch.no_grad():
    torch.save(m(torch.load(r'{tmp_path / "ids.pt"}')).logits, r'{tmp_path / "out.pt"}')
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    assert (torch.load(tmp_path / "out.pt") - expected).abs().max() <= 1e-5


def test_glm1_export_is_refused_clearly(tmp_path, capsys):
    torch.manual_seed(0)
    GLMForCausalLM(GLMConfig(architecture="glm1", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=2)).save_pretrained(tmp_path / "glm1")
    with pytest.raises(ExportError, match="glm1"):
        export_to_transformers(tmp_path / "glm1", tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "glm1"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: only GLM-4-variant checkpoints export")
    assert not (tmp_path / "out").exists()


def test_import_a_transformers_glm_and_export_back(tmp_path):
    torch.manual_seed(5)
    config = GlmConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, pad_token_id=0,
                       eos_token_id=[1, 2])
    theirs = GlmForCausalLM(config).eval()
    theirs.save_pretrained(tmp_path / "released")
    main(["--from-hf", "--checkpoint", str(tmp_path / "released"), "--out", str(tmp_path / "ours")])
    ours = GLMForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert ours.config.num_key_value_heads == 2 and ours.config.eos_token_id == [1, 2]
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        assert (ours(ids).logits - theirs(ids).logits).abs().max() <= 1e-5
    export_to_transformers(tmp_path / "ours", tmp_path / "back")
    back = GlmForCausalLM.from_pretrained(tmp_path / "back").eval()
    for (name, a), (_, b) in zip(theirs.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name


def test_import_refuses_full_rotary(tmp_path):
    config = GlmConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, head_dim=16, pad_token_id=0,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0})
    GlmForCausalLM(config).save_pretrained(tmp_path / "full")
    with pytest.raises(ExportError, match="partial_rotary_factor"):
        import_from_transformers(tmp_path / "full", tmp_path / "out")
