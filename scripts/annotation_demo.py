"""Demo stage: the annotation store end to end without a browser.

Imports the world's held-out preference prompts (their rankings withheld), lets three simulated
annotators rank them through the same store calls the app's ``next_item``/``submit_ranking``
endpoints make (each annotator follows the world's ground-truth ranking but swaps a neighbouring pair
with probability ``--noise``), then exports consensus rankings and training pairs with the agreement
report via the real CLI. Prints how often the consensus recovers the ground truth.

Then the write task: the world's held-out SFT prompts are imported as prompts to write for, a
simulated annotator writes the world's reference answer as the demonstration (the judges' warnings
are counted), a reviewer accepts them, and `export --format sft` writes the chat rows.

    python -m scripts.annotation_demo --world runs/demo/world --out runs/demo/annotation
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from align.feedback import rank_with_simulated_annotators
from annotation_ui.store import Store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", required=True, help="world directory (uses preferences/eval.jsonl)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "annotations.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    url = f"sqlite:///{db}"

    rows = [json.loads(line) for line in (Path(args.world) / "preferences" / "eval.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    truth = {row["id"]: row["ranking"] for row in rows}
    to_rank = out / "to_rank.jsonl"
    keep = ("id", "lang", "category", "prompt", "messages", "responses")
    to_rank.write_text("".join(json.dumps({k: r[k] for k in keep if k in r}, ensure_ascii=False) + "\n"
                               for r in rows), encoding="utf-8")
    cli = [sys.executable, "-m", "annotation_ui"]
    subprocess.run([*cli, "import", str(to_rank), "--db", url, "--overlap", str(args.annotators)], check=True)

    texts = {row["id"]: row["responses"] for row in rows}

    def true_ranks(ext_id: str, shown: list[str]) -> list[int]:  # the world's ranking, in the order shown
        by_text = dict(zip(texts[ext_id], truth[ext_id]))
        return [by_text[t] for t in shown]

    submitted = rank_with_simulated_annotators(url, true_ranks, args.annotators, args.noise, args.seed,
                                               rationale="simulated")

    rankings, pairs = out / "rankings.jsonl", out / "pairs.jsonl"
    subprocess.run([*cli, "export", "--db", url, "--format", "rankings", "--out", str(rankings)], check=True)
    subprocess.run([*cli, "export", "--db", url, "--format", "pairs", "--out", str(pairs)], check=True)
    exported = [json.loads(line) for line in rankings.read_text(encoding="utf-8").splitlines() if line.strip()]
    recovered = sum(row["ranking"] == truth[row["id"]] for row in exported)
    report = json.loads(Path(str(rankings.with_suffix("")) + ".report.json").read_text(encoding="utf-8")) \
        if Path(str(rankings.with_suffix("")) + ".report.json").exists() else {}
    sft_rows = [json.loads(line) for line in (Path(args.world) / "sft" / "eval.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    to_write = out / "to_write.jsonl"
    reference = {r["id"]: r["messages"][-1]["content"] for r in sft_rows}
    to_write.write_text("".join(json.dumps({"id": r["id"], "lang": r["lang"], "category": r.get("category") or "general",
                                            "messages": r["messages"][:-1]}, ensure_ascii=False) + "\n"
                                for r in sft_rows), encoding="utf-8")
    subprocess.run([*cli, "import", str(to_write), "--db", url], check=True)
    store = Store(url, overlap=args.annotators)
    store.add_user("writer1", "annotator", "demo-password-w")
    store.add_user("reviewer1", "reviewer", "demo-password-r")
    warned = 0
    while True:
        item = store.next_write_item("writer1")
        if item["item_id"] is None:
            break
        res = store.submit_demonstration("writer1", item["item_id"], reference[item["ext_id"]], None, 1.0)
        warned += bool(res["warnings"])
        store.review_demonstration("reviewer1", res["demonstration_id"], "accept")
    store.close()
    sft_out = out / "sft.jsonl"
    subprocess.run([*cli, "export", "--db", url, "--format", "sft", "--out", str(sft_out)], check=True)
    n_sft = sum(1 for line in sft_out.read_text(encoding="utf-8").splitlines() if line.strip())
    summary = {
        "items": len(rows), "annotators": args.annotators, "submissions": submitted,
        "demonstrations": len(sft_rows), "demonstrations_warned": warned, "sft_rows": n_sft,
        "pairs": sum(1 for _ in pairs.read_text(encoding="utf-8").splitlines() if _.strip()),
        "consensus_equals_ground_truth": recovered / max(len(exported), 1),
        "report": {k: v for k, v in report.items() if not isinstance(v, (list, dict))},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
