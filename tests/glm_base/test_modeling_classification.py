"""GLMForSequenceClassification: the score at the last real token, transformers' losses, the
reward offset, loading from a causal-LM checkpoint, export to GlmForSequenceClassification."""

import json

import pytest
import torch
import torch.nn.functional as F
from test_modeling import VARIANTS, VOCAB
from transformers import AutoModelForSequenceClassification, GlmForSequenceClassification

from glm_base import GLMConfig, GLMForCausalLM, GLMForSequenceClassification
from glm_base.export import export_to_transformers, import_from_transformers

PAD = 0


def tiny_classifier(architecture="glm4", seed=0, **overrides):
    torch.manual_seed(seed)
    values = dict(architecture=architecture, vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=128, pad_token_id=PAD, num_labels=1)
    if architecture == "glm4":
        values["num_key_value_heads"] = 2
    values.update(overrides)
    model = GLMForSequenceClassification(GLMConfig(**values)).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a dropped tensor would show in export
        for name, param in model.named_parameters():
            if "norm" in name or "bias" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def rows(seed=2, lengths=(4, 9, 6)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g) for n in lengths]


def pad(rows, side):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, span], mask[i, span] = r, 1
    return ids, mask


@pytest.mark.parametrize("arch", VARIANTS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_score_is_taken_at_each_rows_last_real_token(arch, side):
    model = tiny_classifier(arch, num_labels=2)
    batch = rows()
    ids, mask = pad(batch, side)
    with torch.no_grad():
        alone = torch.cat([model(r[None]).logits for r in batch])
        with_mask = model(ids, attention_mask=mask).logits
        by_pad_id = model(ids, attention_mask=mask if side == "left" else None).logits
        hidden = model.model(ids, attention_mask=mask).last_hidden_state
    assert with_mask.shape == (3, 2)
    torch.testing.assert_close(with_mask, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(by_pad_id, alone, rtol=0, atol=1e-5)  # right padding: found from pad_token_id
    last = mask.shape[1] - 1 if side == "left" else len(batch[1]) - 1
    torch.testing.assert_close(with_mask[1], model.score(hidden[1, last]))


def test_losses_follow_transformers_problem_types():
    ids, mask = pad(rows(), "right")
    regression = tiny_classifier(num_labels=1)
    target = torch.tensor([0.5, -1.0, 2.0])
    out = regression(ids, attention_mask=mask, labels=target)
    torch.testing.assert_close(out.loss, ((out.logits.squeeze(-1) - target) ** 2).mean())
    assert regression.config.problem_type == "regression"

    single = tiny_classifier(num_labels=3)
    classes = torch.tensor([2, 0, 1])
    out = single(ids, attention_mask=mask, labels=classes)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, classes))
    assert single.config.problem_type == "single_label_classification"

    multi = tiny_classifier(num_labels=3)
    hot = torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])
    out = multi(ids, attention_mask=mask, labels=hot)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, hot))


def test_reward_offset_is_subtracted_and_saved(tmp_path):
    model = tiny_classifier()
    ids, mask = pad(rows(), "left")
    with torch.no_grad():
        raw = model(ids, attention_mask=mask).logits
        model.config.reward_offset = 0.75
        centred = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(centred, raw - 0.75, rtol=0, atol=1e-6)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["reward_offset"] == 0.75
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is GLMForSequenceClassification and loaded.config.reward_offset == 0.75
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, centred, rtol=0, atol=0)
    several = tiny_classifier(num_labels=2, reward_offset=0.75)  # only a single score is a reward
    with torch.no_grad():
        torch.testing.assert_close(several(ids, attention_mask=mask).logits,
                                   tiny_classifier(num_labels=2)(ids, attention_mask=mask).logits)


@pytest.mark.parametrize("arch", VARIANTS)
def test_reward_model_starts_from_a_causal_lm_checkpoint(arch, tmp_path):
    torch.manual_seed(0)
    lm = GLMForCausalLM(GLMConfig(architecture=arch, vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, pad_token_id=PAD))
    lm.save_pretrained(tmp_path)
    reward = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=1)
    assert type(reward) is GLMForSequenceClassification and reward.score.weight.shape == (1, 32)
    for name, tensor in lm.model.state_dict().items():
        assert torch.equal(reward.model.state_dict()[name], tensor), name


def test_batch_without_mask_or_pad_id_is_refused():
    model = tiny_classifier(pad_token_id=None)
    with pytest.raises(ValueError, match="last token"):
        model(torch.randint(3, VOCAB, (2, 5)))
    assert model(torch.randint(3, VOCAB, (1, 5))).logits.shape == (1, 1)


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_export_to_glm_for_sequence_classification_gives_the_same_scores(offset, tmp_path):
    model = tiny_classifier(num_labels=1, reward_offset=offset)
    model.save_pretrained(tmp_path / "ours")
    export_to_transformers(tmp_path / "ours", tmp_path / "hf")
    theirs = GlmForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert theirs.config.num_labels == 1 and getattr(theirs.config, "reward_offset", 0.0) == offset
    ids, mask = pad(rows(), "right")
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
        exported = theirs(ids, attention_mask=mask).logits - offset
    assert (exported - ours).abs().max().item() <= 1e-5
    import_from_transformers(tmp_path / "hf", tmp_path / "back")
    back = GLMForSequenceClassification.from_pretrained(tmp_path / "back").eval()
    assert back.config.reward_offset == offset
    with torch.no_grad():
        assert (back(ids, attention_mask=mask).logits - ours).abs().max().item() <= 1e-5
