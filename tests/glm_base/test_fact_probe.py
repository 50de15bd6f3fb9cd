"""The held-out fact probe: probes are well formed, baselines are computed, the pipeline runs."""

import json

import torch

from glm_base import GLMConfig, GLMForCausalLM
from glm_base.fact_probe import fact_probes, relation_values, run_probe
from world.default import world_dir


def test_probes_mask_exactly_one_true_value():
    world = world_dir("tiny", 0)
    probes = fact_probes(world, limit=None)
    docs = {json.loads(line)["id"]: json.loads(line)["text"]
            for line in (world / "corpus" / "eval.jsonl").read_text(encoding="utf-8").splitlines()}
    assert len(probes) > 200
    assert {p["lang"] for p in probes} == {"en", "zh"}
    for probe in probes:
        assert probe["text"].count("[MASK]") == 1
        assert probe["text"].replace("[MASK]", probe["value"]) == docs[probe["doc_id"]]
    values = relation_values(world)
    for probe in probes[:50]:
        assert probe["value"] in values[(probe["relation"], probe["lang"])]


def test_probe_runs_and_reports_baselines(tokenizer):
    torch.manual_seed(0)
    model = GLMForCausalLM(GLMConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=512))
    result = run_probe(model, tokenizer, world_dir("tiny", 0), limit=6, progress=False)
    assert result["probes"] == 6
    assert 0.0 < result["chance"] < 0.5 and 0.0 <= result["majority"] <= 1.0
    assert result["accuracy"] == 0.0  # a random model knows nothing
    assert all("chosen" in e for e in result["examples"])
    assert len(result["examples"]) == 6


def test_by_relation_adds_up_to_the_totals_and_plots(tokenizer, tmp_path):
    from glm_base.fact_probe import plot_by_relation

    torch.manual_seed(0)
    model = GLMForCausalLM(GLMConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, max_position_embeddings=512))
    result = run_probe(model, tokenizer, world_dir("tiny", 0), limit=12, progress=False)
    rows = result["by_relation"]
    assert len(rows) >= 3 and sum(r["probes"] for r in rows.values()) == 12
    counts = [r["probes"] for r in rows.values()]
    assert counts == sorted(counts, reverse=True)  # most probed first
    for key in ("accuracy", "choice_accuracy", "chance"):
        weighted = sum(r[key] * r["probes"] for r in rows.values()) / 12
        assert abs(weighted - result[key]) < 1e-9, key
    # a relation's chance is 1 / (number of values it takes; the same in both languages)
    values = relation_values(world_dir("tiny", 0))
    for name, r in rows.items():
        (size,) = {len(v) for (rel, _), v in values.items() if rel == name}
        assert abs(r["chance"] - 1 / size) < 1e-9
    png = plot_by_relation(result, tmp_path / "probe.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_probe_scores_an_oracle_and_a_first_option_picker_exactly(tokenizer, monkeypatch):
    """With the model replaced by an oracle, exact and choice accuracy are 1; with a scorer that
    always ranks the alphabetically first value highest, choice accuracy is the share of probes
    whose value is that first option, counted here by hand."""
    import glm_base.fact_probe as fp

    world = world_dir("tiny", 0)
    probes = fact_probes(world, limit=20)
    truth = {p["text"]: p["value"] for p in probes}
    values = relation_values(world)
    monkeypatch.setattr(fp, "infill_with_spans", lambda model, tok, text, **kw: type("R", (), {"spans": [truth[text]]}))
    monkeypatch.setattr(fp, "span_log_likelihoods",
                        lambda model, tok, text, options: [1.0 if o == truth[text] else 0.0 for o in options])
    model = torch.nn.Linear(1, 1)
    oracle = run_probe(model, tokenizer, world, limit=20, progress=False)
    assert oracle["accuracy"] == 1.0 and oracle["choice_accuracy"] == 1.0
    assert oracle["accuracy_by_lang"] == {lang: 1.0 for lang in oracle["accuracy_by_lang"]}

    monkeypatch.setattr(fp, "infill_with_spans", lambda model, tok, text, **kw: type("R", (), {"spans": ["?"]}))
    monkeypatch.setattr(fp, "span_log_likelihoods", lambda model, tok, text, options: [-float(i) for i in range(len(options))])
    first = run_probe(model, tokenizer, world, limit=20, progress=False)
    by_hand = sum(sorted(values[(p["relation"], p["lang"])])[0] == p["value"] for p in probes) / 20
    assert first["accuracy"] == 0.0
    assert first["choice_accuracy"] == by_hand
    chance = sum(1 / len(values[(p["relation"], p["lang"])]) for p in probes) / 20
    assert abs(first["chance"] - chance) < 1e-12
