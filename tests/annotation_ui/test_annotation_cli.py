"""The command line end to end (subprocesses, SQLite): users, import, export, db; generate in-process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from annotation_helpers import make_items, rank_all, write_jsonl
from annotation_ui.store import Store

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "annotation_ui", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_users_import_export_cli(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    pw = tmp_path / "pw.txt"
    pw.write_text("s3cret-pass\n")
    cli("users", "add", "alice", "--role", "annotator", "--password-file", pw, "--db", url)
    cli("users", "add", "boss", "--role", "admin", "--password-file", pw, "--db", url)
    bad = cli("users", "add", "alice", "--role", "annotator", "--password-file", pw, "--db", url, check=False)
    assert bad.returncode == 2 and "already exists" in bad.stderr
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    bad = cli("users", "add", "carl", "--role", "annotator", "--password-file", short, "--db", url, check=False)
    assert bad.returncode == 2 and "at least 8" in bad.stderr
    out = cli("users", "list", "--db", url).stdout
    assert "alice\tannotator\tactive" in out and "boss\tadmin\tactive" in out
    cli("users", "disable", "alice", "--db", url)
    assert "alice\tannotator\tdisabled" in cli("users", "list", "--db", url).stdout
    cli("users", "enable", "alice", "--db", url)

    items = write_jsonl(tmp_path / "items.jsonl", make_items(3))
    assert "imported 3 items" in cli("import", items, "--db", url).stdout
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"id": "x", "prompt": "p", "responses": "nope"}])
    p = cli("import", broken, "--db", url, check=False)
    assert p.returncode == 2 and "broken.jsonl:1: field 'responses'" in p.stderr

    store = Store(url, overlap=1)
    for _ in range(3):
        it = store.next_item("alice")
        store.submit_ranking("alice", it["item_id"], rank_all(it))
    store.close()
    cli("export", "--format", "rankings", "--out", tmp_path / "r.jsonl", "--db", url)
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(sorted(r["ranking"]) == [1, 2, 3, 4] for r in rows)
    report = json.loads((tmp_path / "r.report.json").read_text())
    assert report["items_exported"] == 3 and report["annotators"]["alice"]["rankings"] == 3
    cli("export", "--format", "pairs", "--out", tmp_path / "p.jsonl", "--db", url)
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3 * 6
    assert "schema: 0003" in cli("db", "current", "--db", url).stdout


def _tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised GlmForCausalLM and a WordLevel tokenizer, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GlmConfig, GlmForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<eos>"] + "what is the capital of france paris a city 你好 世界 hello world yes no".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    cfg = GlmConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                    pad_token_id=0, eos_token_id=2, bos_token_id=2)
    import torch

    torch.manual_seed(0)
    GlmForCausalLM(cfg).save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


@pytest.mark.slow
def test_generate_candidates(tmp_path):
    from annotation_ui.__main__ import main

    ckpt = _tiny_checkpoint(tmp_path / "tiny-glm")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [
        {"id": "g1", "lang": "en", "category": "qa", "prompt": "what is the capital of france"},
        {"id": "g2", "lang": "zh", "category": "chat", "messages": [{"role": "user", "content": "你好 世界"}]},
    ])
    url = f"sqlite:///{tmp_path / 'g.db'}"
    rc = main(["generate", "--checkpoint", str(ckpt), "--prompts", str(prompts), "--n", "3",
               "--max-new-tokens", "6", "--temperature", "1.0", "--top-p", "0.9",
               "--out", str(tmp_path / "gen.jsonl"), "--db", url])
    assert rc == 0
    rows = [json.loads(x) for x in (tmp_path / "gen.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["g1", "g2"]
    assert all(len(r["responses"]) == 3 and r["models"] == ["tiny-glm"] * 3 for r in rows)
    store = Store(url)
    assert store.counts()["responses"] == 6
    [item] = [i for i in [store.item_detail(1)]]
    assert item["responses"][0]["model"] == "tiny-glm"
    store.close()


def test_import_datasets_parquet_and_export_ranked_pairs_cli(tmp_path):
    """`import` of a Parquet file and of a `datasets` save_to_disk directory (prompt and messages rows
    mixed: the absent one is null), then `export --consensus ranked_pairs` through the CLI, checked
    against a Condorcet cycle broken by strength, where Borda would tie."""
    datasets = pytest.importorskip("datasets")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    rows = make_items(4, n_responses=3, prefix="pq")
    for r in rows:  # one schema for the whole table: the absent field is null
        r.setdefault("prompt", None)
        r.setdefault("messages", None)
        r["models"] = ["m-a", "m-b", "m-c"]
    parquet = tmp_path / "items.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(parquet))
    p = cli("import", parquet, "--db", url, "--source", "pq-test")
    assert "imported 4 items (0 already present)" in p.stdout, p.stdout
    saved = tmp_path / "saved_ds"
    datasets.Dataset.from_list([{**r, "id": r["id"].replace("pq", "ds")} for r in rows[:2]]).save_to_disk(str(saved))
    assert "imported 2 items" in cli("import", saved, "--db", url).stdout
    assert "imported 0 items (4 already present)" in cli("import", parquet, "--db", url).stdout  # idempotent

    store = Store(url, overlap=3)
    try:
        assert store.counts() == {"users": 0, "prompts": 6, "responses": 18, "rankings": 0, "reviews": 0,
                                  "write_items": 0, "demonstrations": 0, "demonstration_reviews": 0}
        for name in ("u1", "u2", "u3"):
            store.add_user(name, "annotator", f"pw-{name}-123")
        # Rank the first item (pq0, a plain prompt) so that the majorities form a cycle
        # A>B, B>C and C>A, each 2:1. All three majorities are equally strong, so ranked pairs locks
        # them in response order: A>B, B>C, then drops C>A (it would close a cycle) -> A=1, B=2, C=3.
        # Borda gives each response the same points: a three-way tie.
        orders = {"u1": ["A", "B", "C"], "u2": ["B", "C", "A"], "u3": ["C", "A", "B"]}
        target = None
        for name, order in orders.items():
            it = store.next_item(name)
            target = target or it["item_id"]
            assert it["item_id"] == target  # overlap 3: everyone gets the fullest prompt first
            letter = {r["text"]: "ABC"[int(r["text"].split()[1])] for r in it["responses"]}
            ranks = {str(r["id"]): order.index(letter[r["text"]]) + 1 for r in it["responses"]}
            store.submit_ranking(name, it["item_id"], ranks)
        detail = store.item_detail(target)
    finally:
        store.close()
    out_rp, out_b = tmp_path / "rp.jsonl", tmp_path / "b.jsonl"
    msg = cli("export", "--format", "rankings", "--consensus", "ranked_pairs", "--out", out_rp, "--db", url).stdout
    assert "wrote 1 rankings rows (1 items)" in msg, msg
    [row] = [json.loads(x) for x in out_rp.read_text().splitlines()]
    assert row["id"] == detail["ext_id"] and row["responses"] == [r["text"] for r in detail["responses"]]
    assert row["ranking"] == [1, 2, 3]
    report = json.loads((tmp_path / "rp.report.json").read_text())
    assert report["consensus"] == "ranked_pairs" and report["items"][0]["consensus"] == "ranked_pairs"
    assert report["kendalls_w"]["mean"] == pytest.approx(0.0, abs=1e-9)  # a perfect cycle: no concordance
    cli("export", "--format", "rankings", "--consensus", "borda", "--out", out_b, "--db", url)
    assert json.loads(out_b.read_text())["ranking"] == [1, 1, 1]
    # pairs through the CLI with ranked pairs: A>B, A>C, B>C with margins 1, 2, 1
    out_p = tmp_path / "p.jsonl"
    cli("export", "--format", "pairs", "--consensus", "ranked_pairs", "--out", out_p, "--db", url)
    pairs = [json.loads(x) for x in out_p.read_text().splitlines()]
    texts = row["responses"]
    assert sorted((texts.index(p["chosen"]), texts.index(p["rejected"]), p["margin"]) for p in pairs) == [
        (0, 1, 1.0), (0, 2, 2.0), (1, 2, 1.0)]
    bad = cli("export", "--consensus", "kemeny", "--out", out_p, "--db", url, check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
