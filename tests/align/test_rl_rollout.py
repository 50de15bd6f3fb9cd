"""HFRollout: masks and truncation by hand; the training forward gives back the generation's own
log-probs on a left-padded batch (both architectures)."""

import pytest
import torch

from align.rl.logprobs import response_logprobs
from align.rl.rollout import HFRollout, left_pad, response_mask_and_truncation
from tests.align.rl_helpers import tiny_model

EOS = [1, 2, 3]
PAD = 0
PROMPTS = [[10, 11, 12, 13, 14, 15], [20, 21], [30, 31, 32, 33], [40], [10, 20, 30], [11, 21, 31, 41, 12]]


def test_left_pad_by_hand():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        left_pad([[5], []], 0)


def test_response_mask_and_truncation_by_hand():
    responses = torch.tensor([[7, 2, 9, 9], [7, 7, 7, 7], [3, 1, 0, 0], [0, 7, 1, 5]])
    mask, truncated = response_mask_and_truncation(responses, EOS)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]]
    assert truncated.tolist() == [False, True, False, False]  # a generated pad id (row 3) is a real token


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_recomputed_logprobs_match_generation(architecture, top_p):
    model = tiny_model(architecture, seed=1)
    sampler = HFRollout(model, EOS, PAD, max_new_tokens=10, temperature=0.7, top_p=top_p)
    for seed in range(20):  # a batch holding both ended and truncated responses
        torch.manual_seed(seed)
        rollout = sampler.generate(PROMPTS)
        if bool(rollout.truncated.any()) and not bool(rollout.truncated.all()):
            break
    else:
        pytest.fail("no batch with both ended and truncated responses in 20 seeds")
    ended = [bool(set(r) & set(EOS)) for r in rollout.responses()]
    assert rollout.truncated.tolist() == [not e for e in ended]
    for row, mask in zip(rollout.response_ids, rollout.response_mask):  # padding after the end token
        assert torch.all(row[~mask.bool()] == PAD)
    recomputed = response_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.response_length,
                                   temperature=0.7, response_mask=rollout.response_mask)
    valid = rollout.response_mask.bool()
    assert (recomputed[valid] - rollout.logprobs[valid]).abs().max().item() <= 1e-4
    assert recomputed[~valid].abs().sum() == 0 and rollout.logprobs[~valid].abs().sum() == 0


def test_left_padded_batch_generates_what_each_prompt_alone_does(architecture):
    model = tiny_model(architecture, seed=2)
    greedy = HFRollout(model, EOS, PAD, max_new_tokens=6, temperature=0.0)
    batch = greedy.generate(PROMPTS).responses()
    alone = [greedy.generate([p]).responses()[0] for p in PROMPTS]
    assert batch == alone


def test_for_chat_uses_the_tokenizer_specials():
    from glm_base.tokenizer import special_token_ids, train_tokenizer

    tokenizer = train_tokenizer(["the keeper lights the lamp every night\n"] * 20, vocab_size=300)
    ids = special_token_ids(tokenizer)
    model = tiny_model("glm4", vocab_size=len(tokenizer))
    rollout = HFRollout.for_chat(model, tokenizer, max_new_tokens=4, temperature=1.0)
    assert rollout.eos_token_ids == [ids.eos, ids.user, ids.observation] and rollout.pad_token_id == ids.pad
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "lamp?"}], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    out = rollout.generate([prompt])
    assert out.prompt_ids[0].tolist() == list(prompt) and out.response_ids.shape[0] == 1


def test_prefix_layout_positions_by_hand():
    from align.rl.rollout import layout_part_a_length, layout_position_ids

    prompt_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])  # Part A of 2 and 3 tokens, then <sop>
    response_mask = torch.tensor([[1, 1], [1, 0]])
    positions = layout_position_ids(prompt_mask, response_mask, "prefix")
    # text: Part A counts its real tokens; <sop> and the response sit at the [gMASK]'s position
    assert positions[:, 0].tolist() == [[0, 0, 1, 1, 1, 1], [0, 1, 2, 2, 2, 2]]
    # span: 0 in Part A, 1 at <sop>, then 2, 3, ...
    assert positions[:, 1].tolist() == [[0, 0, 0, 1, 2, 3], [0, 0, 0, 1, 2, 3]]
    assert layout_part_a_length(prompt_mask, "prefix").tolist() == [3, 3]
    assert layout_part_a_length(prompt_mask, "causal") is None
    assert layout_position_ids(prompt_mask, response_mask).tolist() == [[0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 4]]
    with pytest.raises(ValueError, match="Part A then <sop>"):
        left_pad([[5, 6], [7]], 0, min_length=2)


GMASK, SOP = 4, 5  # stand-ins for the tokenizer's [gMASK] and <sop>
PREFIX_PROMPTS = [[10, 11, 12, GMASK, SOP], [20, GMASK, SOP], [30, 31, 32, 33, 34, GMASK, SOP], [GMASK, SOP]]


def test_prefix_rollout_recomputed_logprobs_match_generation(architecture):
    model = tiny_model(architecture, seed=1)
    sampler = HFRollout(model, EOS, PAD, max_new_tokens=8, temperature=0.9, layout="prefix")
    torch.manual_seed(0)
    rollout = sampler.generate(PREFIX_PROMPTS)
    assert rollout.layout == "prefix" and rollout.position_ids.shape == (4, 2, rollout.input_ids.shape[1])
    recomputed = response_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.response_length, 0.9,
                                   rollout.response_mask, position_ids=rollout.position_ids,
                                   part_a_length=rollout.part_a_length)
    valid = rollout.response_mask.bool()
    assert (recomputed[valid] - rollout.logprobs[valid]).abs().max().item() <= 1e-4
    causal = response_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.response_length, 0.9,
                               rollout.response_mask)
    assert (causal[valid] - rollout.logprobs[valid]).abs().max().item() > 1e-2  # the layout matters


def test_prefix_batch_generates_what_each_prompt_alone_does(architecture):
    model = tiny_model(architecture, seed=2)
    greedy = HFRollout(model, EOS, PAD, max_new_tokens=6, temperature=0.0, layout="prefix")
    batch = greedy.generate(PREFIX_PROMPTS).responses()
    assert batch == [greedy.generate([p]).responses()[0] for p in PREFIX_PROMPTS]
    # one prompt by hand, laid out as glm_base.infill lays out a [gMASK] span: Part A bidirectional,
    # Part B at the [gMASK]'s text position with span positions 1, 2, ...
    prompt = PREFIX_PROMPTS[0]
    ids = list(prompt)
    for step in range(6):
        n_b = len(ids) - 4
        positions = torch.tensor([[list(range(4)) + [3] * n_b, [0] * 4 + list(range(1, n_b + 1))]])
        logits = model(input_ids=torch.tensor([ids]), position_ids=positions, part_a_length=torch.tensor([4])).logits
        ids.append(int(logits[0, -1].argmax()))
        if ids[-1] in EOS:
            break
    assert batch[0] == ids[len(prompt):]


def test_for_chat_picks_the_prefix_layout_for_glm1():
    from glm_base.tokenizer import special_token_ids, train_tokenizer

    tokenizer = train_tokenizer(["the keeper lights the lamp every night\n"] * 20, vocab_size=300)
    ids = special_token_ids(tokenizer)
    sampler = HFRollout.for_chat(tiny_model("glm1", vocab_size=len(tokenizer)), tokenizer, max_new_tokens=4)
    assert sampler.layout == "prefix" and sampler.eos_token_ids == [ids.eop, ids.eos]


@pytest.mark.parametrize("arch", ["glm1", "glm4"])
def test_chat_prompts_are_sfts_examples_up_to_the_reply(arch):
    """A PPO prompt is exactly what SFT fed the model before the reply's first token."""
    from align.rl.rollout import chat_prompt_ids
    from align.sft_data import render_messages
    from glm_base.tokenizer import special_token_ids, train_tokenizer

    tokenizer = train_tokenizer(["the keeper lights the lamp every night\n", "where is the lamp?\n"] * 20,
                                vocab_size=300)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "where is the lamp?"},
                {"role": "assistant", "content": "on the cliff"}, {"role": "user", "content": "who lights it?"}]
    prompt = chat_prompt_ids(tokenizer, messages, arch)
    example = render_messages(messages + [{"role": "assistant", "content": "the keeper"}], tokenizer, arch)
    assert example.input_ids[:len(prompt)] == prompt
    reply = tokenizer("the keeper", add_special_tokens=False)["input_ids"]
    assert example.input_ids[len(prompt):len(prompt) + len(reply)] == reply
    if arch == "glm1":
        ids = special_token_ids(tokenizer)
        assert prompt[-2:] == [ids.gmask, ids.sop] and example.part_a_length == len(prompt) - 1
    # the positions a rollout of this prompt and reply is scored with are SFT's
    from align.rl.rollout import layout_position_ids

    layout = "prefix" if arch == "glm1" else "causal"
    positions = layout_position_ids(torch.ones(1, len(prompt), dtype=torch.long),
                                    torch.ones(1, len(reply), dtype=torch.long), layout)[0]
    n = len(prompt) + len(reply)
    expected = [row[:n] for row in example.position_ids] if arch == "glm1" else example.position_ids[:n]
    assert positions.tolist() == expected


def test_a_checkpoints_generation_config_cannot_change_sampling():
    model = tiny_model("glm4", seed=2)
    clean = HFRollout(model, EOS, PAD, max_new_tokens=6, temperature=0.0).generate(PROMPTS).responses()
    model.generation_config.repetition_penalty = 50.0  # as if read from a generation_config.json
    model.generation_config.no_repeat_ngram_size = 1
    model.generation_config.min_new_tokens = 6
    assert HFRollout(model, EOS, PAD, max_new_tokens=6, temperature=0.0).generate(PROMPTS).responses() == clean
    torch.manual_seed(0)
    rollout = HFRollout(model, EOS, PAD, max_new_tokens=6, temperature=0.8).generate(PROMPTS)
    recomputed = response_logprobs(model, rollout.input_ids, rollout.attention_mask, rollout.response_length, 0.8,
                                   rollout.response_mask)
    valid = rollout.response_mask.bool()
    assert (recomputed[valid] - rollout.logprobs[valid]).abs().max().item() <= 1e-4
