"""Building the world: files, manifest, schema of every row, determinism, datasets loading."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from world import schema
from world.build import build
from world.config import WorldConfig
from world.textstats import split_sentences

REPO = Path(__file__).resolve().parents[2]


def _rows(out: Path, kind: str, split: str = "train") -> list[dict]:
    return schema.read_jsonl(out / kind / f"{split}.jsonl", kind)


def test_manifest_lists_every_file_with_counts(tiny_world):
    out, manifest = tiny_world
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == manifest
    assert manifest["seed"] == 0 and manifest["size"] == "tiny" and manifest["version"]
    for kind, entry in manifest["files"].items():
        assert kind in schema.KINDS
        assert entry["schema"]["id"] and entry["description"]
        for split in ("train", "eval"):
            data = (out / entry[split]["path"]).read_bytes()
            assert entry[split]["rows"] == data.count(b"\n") > 0
            assert entry[split]["bytes"] == len(data)
            assert entry[split]["sha256"] == hashlib.sha256(data).hexdigest()


def test_every_row_matches_its_schema_and_ids_are_unique(tiny_world):
    out, manifest = tiny_world
    for kind in manifest["files"]:
        ids = set()
        for split in ("train", "eval"):
            for row in _rows(out, kind, split):
                assert row["lang"] in ("en", "zh")
                assert row["id"] not in ids
                ids.add(row["id"])


def test_corpus_is_bilingual_sized_for_a_tiny_model_and_has_sentences(tiny_world):
    out, manifest = tiny_world
    rows = _rows(out, "corpus")
    size = manifest["files"]["corpus"]["train"]["bytes"]
    assert 500_000 <= size <= 2_000_000
    langs = {lang: sum(r["lang"] == lang for r in rows) for lang in ("en", "zh")}
    assert min(langs.values()) / max(langs.values()) > 0.8
    kinds = {r["meta"]["kind"] for r in rows}
    assert kinds == {"profile", "story", "list", "arithmetic", "qa"}
    for r in rows[:300]:
        enders = ".!?" if r["lang"] == "en" else "。！？"
        sentences = split_sentences(r["text"])
        assert len(sentences) >= 1 and r["text"].rstrip()[-1] in enders, r["text"][-40:]
        assert all(s[-1] in enders for s in sentences), sentences
    # some facts appear in both languages as parallel pairs
    pairs: dict[str, set] = {}
    for r in rows:
        if r["meta"]["pair"]:
            pairs.setdefault(r["meta"]["pair"], set()).add(r["lang"])
    assert sum(v == {"en", "zh"} for v in pairs.values()) >= 50


def test_facts_repeat_across_documents(tiny_world):
    """Every person's birth year is stated in several train documents (predictable masked spans)."""
    from world.entities import make_world
    from world.io import sub_rng

    out, _ = tiny_world
    world = make_world(WorldConfig(size="tiny").counts, sub_rng(0, "entities"))
    texts = [r["text"] for r in _rows(out, "corpus")]
    counts = []
    for person in world.of_type("person")[:40]:
        year = person.fact("born_year").en
        counts.append(sum(person.en in t and year in t or person.zh in t and year in t for t in texts))
    assert min(counts) >= 2 and sum(counts) / len(counts) >= 4, counts


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tiny_world, tmp_path):
    out, manifest = tiny_world
    again = build(WorldConfig(out=str(tmp_path / "again"), size="tiny", seed=0))
    other = build(WorldConfig(out=str(tmp_path / "other"), size="tiny", seed=1))
    for kind in manifest["files"]:
        for split in ("train", "eval"):
            assert (tmp_path / "again" / kind / f"{split}.jsonl").read_bytes() == (out / kind / f"{split}.jsonl").read_bytes()
            assert other["files"][kind][split]["sha256"] != manifest["files"][kind][split]["sha256"]
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()


def test_cli_builds_tiny_in_seconds(tmp_path):
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "world.build", "--out", str(tmp_path / "w"), "--size", "tiny", "--seed", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    took = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "w" / "manifest.json").is_file()
    assert took < 20, took


def test_datasets_reads_every_file(tiny_world):
    datasets = pytest.importorskip("datasets")
    out, manifest = tiny_world
    for kind, entry in manifest["files"].items():
        ds = datasets.load_dataset(
            "json", data_files={s: str(out / entry[s]["path"]) for s in ("train", "eval")}
        )
        assert ds["train"].num_rows == entry["train"]["rows"]
        assert ds["eval"].num_rows == entry["eval"]["rows"]
        via_loader = schema.load(out, kind)
        assert via_loader["train"].num_rows == entry["train"]["rows"]


def test_medium_world_has_unique_names():
    from world.config import SIZES
    from world.entities import make_world
    from world.io import sub_rng

    world = make_world(SIZES["medium"], sub_rng(0, "entities"))
    names_en = [e.en for e in world.entities.values()]
    names_zh = [e.zh for e in world.entities.values()]
    assert len(set(names_en)) == len(names_en) and len(set(names_zh)) == len(names_zh)
    assert len(world.of_type("person")) == SIZES["medium"]["people"]
