"""PET-style cloze fine-tuning: layout, label scores by hand, fine-tuning, probe, configs, bad input."""

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from glm_base import GLMConfig, GLMForCausalLM
from glm_base.cloze import ClozeConfig, ClozeDataArgs, main, run
from glm_base.cloze_data import read_rows, sample_train
from glm_base.cloze_task import (build_task, cloze_loss, collate, encode_example, label_scores, resolve_task,
                                 world_task)
from glm_base.linear_probe import linear_probe
from common.config import load_config, read_yaml
from glm_base.trainkit.metrics import read_metrics
from glm_base.tokenizer import special_token_ids

REPO = Path(__file__).resolve().parents[2]
LABELS = ["negative", "positive"]
# EN verbalizers are single tokens of the conftest tokenizer (" grey", " bread"); ZH ones are not ("差").
PATTERNS = {"en": "{text} It was [MASK].", "zh": "{text}总之，很[MASK]。"}
VERBALIZERS = {"en": {"negative": "grey", "positive": "bread"}, "zh": {"negative": "差", "positive": "好"}}


def enc(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def task(tokenizer):
    return build_task(tokenizer, LABELS, PATTERNS, VERBALIZERS)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=128,
                       pad_token_id=special_token_ids(tokenizer).pad)
    return GLMForCausalLM(config).eval()


def test_task_picks_single_token_scoring_only_when_every_verbalizer_is_one_token(task, tokenizer):
    assert task.single == {"en": True, "zh": False}
    assert task.verbalizer_ids["en"] == [enc(tokenizer, " grey"), enc(tokenizer, " bread")]
    assert task.verbalizer_ids["zh"] == [enc(tokenizer, "差"), enc(tokenizer, "好")]
    assert len(enc(tokenizer, "差")) > 1
    forced = build_task(tokenizer, LABELS, PATTERNS, VERBALIZERS, scoring="multi")
    assert forced.single == {"en": False, "zh": False}


def test_layout_single_token_row_is_part_a_then_sop_at_the_mask(task, tokenizer):
    ids = special_token_ids(tokenizer)
    ex = encode_example(tokenizer, task, "The bridge was built.", "en", label=1)
    assert ex.single and len(ex.rows) == 1
    row = ex.rows[0]
    # The space before [MASK] moves into the verbalizer, so Part A is "...It was" [MASK] "." <eos>.
    prefix = enc(tokenizer, "The bridge was built. It was")
    part_a = prefix + [ids.mask] + enc(tokenizer, ".") + [ids.eos]
    assert row.part_a_length == len(part_a)
    assert row.input_ids.tolist() == part_a + [ids.sop]
    assert row.position_ids[0].tolist() == list(range(len(part_a))) + [len(prefix)]
    assert row.position_ids[1].tolist() == [0] * len(part_a) + [1]
    assert (row.shift_labels == -100).all()
    assert ex.label_tokens == [enc(tokenizer, " grey"), enc(tokenizer, " bread")]


def test_layout_multi_token_rows_one_per_label_with_eop_targets(task, tokenizer):
    ids = special_token_ids(tokenizer)
    ex = encode_example(tokenizer, task, "石桥很旧。", "zh", label=0)
    assert not ex.single and len(ex.rows) == 2
    prefix = enc(tokenizer, "石桥很旧。总之，很")
    part_a = prefix + [ids.mask] + enc(tokenizer, "。") + [ids.eos]
    for row, word in zip(ex.rows, ["差", "好"]):
        verb = enc(tokenizer, word)
        assert row.part_a_length == len(part_a)
        assert row.input_ids.tolist() == part_a + [ids.sop] + verb
        assert row.shift_labels.tolist() == [-100] * len(part_a) + verb + [ids.eop]
        assert row.position_ids[0].tolist() == list(range(len(part_a))) + [len(prefix)] * (len(verb) + 1)
        assert row.position_ids[1].tolist() == [0] * len(part_a) + list(range(1, len(verb) + 2))


def forward_row(model, input_ids, text_pos, span_pos, part_a):
    return model(input_ids=torch.tensor([input_ids]), position_ids=torch.tensor([[text_pos, span_pos]]),
                 part_a_length=torch.tensor([part_a])).logits[0]


@torch.no_grad()
def test_single_token_scores_are_the_raw_logits_at_sop(task, tokenizer, model):
    ids = special_token_ids(tokenizer)
    texts = ["The water is cold until July.", "Bakers start work at four o'clock."]
    examples = [encode_example(tokenizer, task, t, "en", label=i) for i, t in enumerate(texts)]
    scores = label_scores(model, collate(examples, ids.pad))
    grey, bread = enc(tokenizer, " grey")[0], enc(tokenizer, " bread")[0]
    for i, text in enumerate(texts):
        prefix = enc(tokenizer, text + " It was")
        part_a = prefix + [ids.mask] + enc(tokenizer, ".") + [ids.eos]
        n = len(part_a)
        logits = forward_row(model, part_a + [ids.sop], list(range(n)) + [len(prefix)], [0] * n + [1], n)
        assert torch.allclose(scores[i], logits[n, [grey, bread]], atol=1e-5)
        assert torch.allclose(scores[i, 1] - scores[i, 0], logits[n, bread] - logits[n, grey], atol=1e-5)
    batch = collate(examples, ids.pad)
    loss, metrics = cloze_loss(model, batch, torch.tensor(2.0))
    assert torch.allclose(loss, F.cross_entropy(scores, torch.tensor([0, 1])), atol=1e-6)
    hits = (scores.argmax(-1) == torch.tensor([0, 1])).sum().item()
    assert metrics["accuracy"].item() == pytest.approx(hits / 2)


@torch.no_grad()
def test_multi_token_scores_are_summed_log_probs_including_eop(task, tokenizer, model):
    ids = special_token_ids(tokenizer)
    text = "青石镇的石桥很旧。"
    ex = encode_example(tokenizer, task, text, "zh", label=1)
    # padding invariance: score it next to a longer example and a single-token one
    other = encode_example(tokenizer, task, "图书馆藏书一万二千四百册，还有一个地球仪和一张地图。", "zh", label=0)
    en = encode_example(tokenizer, task, "Mira keeps the lighthouse.", "en", label=0)
    scores = label_scores(model, collate([en, ex, other], ids.pad))[1]
    prefix = enc(tokenizer, text + "总之，很")
    part_a = prefix + [ids.mask] + enc(tokenizer, "。") + [ids.eos]
    n = len(part_a)
    for k, word in enumerate(["差", "好"]):
        verb = enc(tokenizer, word)
        inputs = part_a + [ids.sop] + verb
        logits = forward_row(model, inputs, list(range(n)) + [len(prefix)] * (len(verb) + 1),
                             [0] * n + list(range(1, len(verb) + 2)), n)
        logp = torch.log_softmax(logits.float(), -1)
        expected = sum(logp[n + j, t] for j, t in enumerate(verb + [ids.eop]))
        assert torch.allclose(scores[k], expected, atol=1e-4), (word, scores[k], expected)


def test_linear_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2, 16, generator=g) * 2
    y = torch.arange(64) % 2
    x = centres[y] + torch.randn(64, 16, generator=g)
    predictions, l2 = linear_probe(x[:32], y[:32], x[32:], 2, folds=4, seed=0)
    assert (predictions == y[32:]).float().mean() >= 0.9
    assert l2 > 0


def test_sample_train_is_balanced_and_seeded(task, tmp_path):
    rows = [{"text": f"t{i}", "lang": "en", "label": LABELS[int(i % 4 == 0)]} for i in range(40)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_rows(path, task, ClozeDataArgs())
    picked = sample_train(data, 12, seed=3)
    assert sorted(r.label for r in picked) == [0] * 6 + [1] * 6
    assert [r.text for r in picked] == [r.text for r in sample_train(data, 12, seed=3)]
    assert [r.text for r in picked] != [r.text for r in sample_train(data, 12, seed=4)]
    uneven = sample_train(data, 24, seed=0)  # only 10 positives exist
    assert sum(r.label for r in uneven) == 10


# --- end to end on a tiny separable task --------------------------------------------------------------

def synthetic_rows(n, seed):
    """The label is decided by one word; the rest is noise drawn from the corpus vocabulary."""
    rng = random.Random(seed)
    subjects = ["The bridge", "The library", "The ferry", "The mill", "The chapel", "The market"]
    words = {"en": {"positive": ["new", "fire"], "negative": ["cold", "slow"]},
             "zh": {"positive": ["平静", "满意"], "negative": ["很冷", "很慢"]}}
    subjects_zh = ["石桥", "图书馆", "渡船", "磨坊", "小教堂", "集市"]
    rows = []
    for i in range(n):
        lang, label = ("en", "zh")[i % 2], LABELS[(i // 2) % 2]
        word = rng.choice(words[lang][label])
        text = (f"{rng.choice(subjects)} was {word} in {rng.choice(['June', 'July', 'winter'])}." if lang == "en"
                else f"{rng.choice(subjects_zh)}在{rng.choice(['六月', '七月', '冬天'])}{word}。")
        rows.append({"text": text, "lang": lang, "label": label})
    return rows


@pytest.fixture(scope="module")
def checkpoint_and_data(tmp_path_factory, tokenizer, model):
    root = tmp_path_factory.mktemp("cloze")
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    for name, n, seed in (("train", 64, 0), ("eval", 40, 1)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                    for r in synthetic_rows(n, seed)), encoding="utf-8")
    return root


def tiny_args(root, out, *extra):
    return [f"output_dir={out}", f"init_from={root / 'model'}", f"data.train_file={root / 'train.jsonl'}",
            f"data.eval_file={root / 'eval.jsonl'}", "n_train=32", "seed=0", "max_steps=40", "batch_size=8",
            "eval_every=0", "log_every=5", "optim.lr=0.005", "optim.warmup_steps=4",
            f"patterns={json.dumps(PATTERNS, ensure_ascii=False)}",
            f"verbalizers={json.dumps(VERBALIZERS, ensure_ascii=False)}", *extra]


def test_fine_tuning_learns_a_separable_task_from_chance(checkpoint_and_data, tmp_path):
    out = tmp_path / "run"
    summary = run(load_config(ClozeConfig, tiny_args(checkpoint_and_data, out)))
    acc = summary["accuracy"]
    assert acc["zero_shot"] <= 0.7  # the random model is at chance
    assert acc["majority"] == pytest.approx(0.5)
    assert acc["cloze"] >= 0.9, summary
    assert 0.0 <= acc["linear_probe"] <= 1.0 and summary["probe"]["features"] == "sop"
    assert summary["n_train"] == 32 and summary["seed"] == 0
    assert summary["scoring"] == {"en": "single", "zh": "multi"}
    assert set(summary["accuracy_by_lang"]["cloze"]) == {"all", "en", "zh"}
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "accuracy.png", "model/config.json",
                 "model/model.safetensors", "model/tokenizer.json"):
        assert (out / name).is_file(), name
    written = json.loads((out / "summary.json").read_text())
    assert written["accuracy"] == acc
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r for r in lines) and lines[-1]["step"] == 40
    # the saved model is the fine-tuned one: it reproduces the reported accuracy
    from glm_base.cloze_task import accuracy_report, predict
    from glm_base.loading import load_model_and_tokenizer
    tuned, tok = load_model_and_tokenizer(out / "model")
    task = build_task(tok, LABELS, PATTERNS, VERBALIZERS)
    rows = read_rows(checkpoint_and_data / "eval.jsonl", task, ClozeDataArgs())
    examples = [encode_example(tok, task, r.text, r.lang, r.label) for r in rows]
    assert accuracy_report(predict(tuned, examples, task.pad_id, disable=True), examples)["all"] == acc["cloze"]


@pytest.mark.slow
def test_two_processes_equal_one(checkpoint_and_data, tmp_path, launch_two_processes):
    """Two data-parallel processes: each trains on its half of every batch; the losses, the tuned
    model and its accuracy are those of one process."""
    extra = ("max_steps=10", "log_every=2", "eval_every=5")
    launch_two_processes("glm_base.cloze", tiny_args(checkpoint_and_data, tmp_path / "two", *extra), REPO)
    one = run(load_config(ClozeConfig, tiny_args(checkpoint_and_data, tmp_path / "one", *extra)))
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)

    def losses(out):
        return [r["train/loss"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]

    assert len(losses(tmp_path / "one")) == 5
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
    assert two["accuracy"] == one["accuracy"]
    from safetensors.torch import load_file
    a, b = (load_file(tmp_path / d / "model" / "model.safetensors") for d in ("one", "two"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


# --- configs and errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted((REPO / "configs" / "cloze").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and "glm_base.cloze" in first and str(path.relative_to(REPO)) in first
    cfg = load_config(ClozeConfig, ["--config", str(path)])
    labels, patterns, verbalizers = resolve_task(cfg)
    assert cfg.n_train == 32 and cfg.init_from and cfg.output_dir


def test_tiny_config_spells_out_the_worlds_own_task():
    data = read_yaml(REPO / "configs" / "cloze" / "tiny.yaml")
    labels, patterns, verbalizers = world_task()
    assert data["init_from"] == "runs/pretrain-tiny/model"
    assert data["labels"] == labels and data["patterns"] == patterns and data["verbalizers"] == verbalizers


def test_missing_init_from_is_one_error_line_with_status_2(checkpoint_and_data, tmp_path, capsys):
    args = tiny_args(checkpoint_and_data, tmp_path / "run")
    args[1] = f"init_from={tmp_path / 'nowhere'}"
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("error: init_from ") and "nowhere" in err[0] and "not found" in err[0]
    assert "glm_base.pretrain" in err[0]


def test_verbalizer_missing_for_a_label_names_the_key():
    cfg = ClozeConfig(labels=["negative", "positive", "neutral"], patterns=PATTERNS, verbalizers=VERBALIZERS)
    with pytest.raises(ValueError, match=r"verbalizers\.en has no word for label 'neutral'"):
        resolve_task(cfg)
    with pytest.raises(ValueError, match=r"patterns\.en .* exactly one \[MASK\]"):
        resolve_task(ClozeConfig(patterns={"en": "{text} no blank", "zh": PATTERNS["zh"]}, verbalizers=VERBALIZERS))


def test_bad_rows_name_file_row_and_field(task, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "ok", "lang": "en", "label": "positive"}) + "\n"
                    + json.dumps({"text": "meh", "lang": "en", "label": "neutral"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: row 2: field 'label' = 'neutral' has no verbalizer"):
        read_rows(path, task, ClozeDataArgs())
    path.write_text(json.dumps({"text": "ok", "lang": "fr", "label": "positive"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: row 1: field 'lang' = 'fr' has no pattern"):
        read_rows(path, task, ClozeDataArgs())
    path.write_text(json.dumps({"review": "ok", "lang": "en", "label": "positive"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: row 1: field 'text' is missing"):
        read_rows(path, task, ClozeDataArgs())
    with pytest.raises(ValueError, match=r"row 1: field 'review'"):
        read_rows(path, task, ClozeDataArgs(text_field="review", label_field="review"))
