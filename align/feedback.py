"""Close the annotation loop: ``python -m align.feedback --policy DIR --out DIR``.

The SFT policy answers prompts it was not tuned on (the world's SFT train prompts it never saw as
references: a seeded sample), ``K`` candidates each; the candidates are imported into the
annotation store (``annotation_ui generate``), ranked there, and exported as rankings
(``annotation_ui export --format rankings``) for the reward model, which trains on that export
together with the world's preferences. No peer does this in one command.

Who ranks: in the demo, simulated annotators who order the candidates by the world's ground truth
(:func:`world.judge.response_score`: behaviour, language, correct answer) and swap a neighbouring
pair with probability ``--noise``, through the same store calls as the app's endpoints. In a real run,
``--db URL --live`` points at the app's database: candidates are imported for people to rank in the
app, and a later run with ``--export-only`` exports what they ranked.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

from common.cli import run_main
from common.errors import UserError
from common.jsonl import load_jsonl, write_jsonl
from common.rankings import dense_ranking
from world.judge import response_score

PY = sys.executable


def sample_prompts(world: Path, count: int, seed: int) -> list[dict]:
    """``count`` SFT train conversations without their last (reference) reply, with their metadata."""
    rows = [r for r in load_jsonl(world / "sft" / "train.jsonl")
            if r["messages"] and r["messages"][-1]["role"] == "assistant" and r.get("meta", {}).get("flaw", "none") == "none"]
    if not rows:
        raise UserError(f"{world / 'sft' / 'train.jsonl'}: no clean conversation to prompt with")
    rng = random.Random(seed)
    picked = rng.sample(rows, min(count, len(rows)))
    return [{"id": f"fb-{r['id']}", "lang": r["lang"], "category": r.get("category") or "general",
             "messages": r["messages"][:-1], "meta": r.get("meta", {})} for r in picked]


def swap_a_neighbour(ranks: list[int], rng: random.Random, noise: float) -> list[int]:
    """``ranks`` with one neighbouring pair swapped, with probability ``noise`` (an annotator's slip)."""
    ranks = list(ranks)
    if len(ranks) > 1 and rng.random() < noise:
        i = rng.randrange(len(ranks) - 1)
        ranks[i], ranks[i + 1] = ranks[i + 1], ranks[i]
    return ranks


def simulated_ranking(texts: list[str], meta: dict, rng: random.Random, noise: float) -> list[int]:
    """Dense ranks (1 = best) by :func:`response_score`, a neighbouring pair swapped with probability ``noise``."""
    return swap_a_neighbour(dense_ranking([response_score(t, meta) for t in texts]), rng, noise)


def rank_with_simulated_annotators(url: str, true_ranks, annotators: int, noise: float, seed: int,
                                   rationale: str = "simulated from the world's ground truth") -> int:
    """``annotators`` simulated users rank every item they are leased, through the store's own calls
    (``next_item`` / ``submit_ranking``, as the app's endpoints): ``true_ranks(ext_id, texts)`` gives
    the ranks, then a neighbouring pair is swapped with probability ``noise``. Returns the submissions."""
    from annotation_ui.store import Store

    store = Store(url, overlap=annotators)
    rng = random.Random(seed)
    submitted = 0
    try:
        for a in range(annotators):
            name = f"simulated{a + 1}"
            if name not in {u["name"] for u in store.list_users()}:
                store.add_user(name, "annotator", f"simulated-password-{a}")
            while (item := store.next_item(name))["item_id"] is not None:
                texts = [r["text"] for r in item["responses"]]
                ranks = swap_a_neighbour(true_ranks(item["ext_id"], texts), rng, noise)
                store.submit_ranking(name, item["item_id"], {r["id"]: k for r, k in zip(item["responses"], ranks)},
                                     rationale=rationale, time_spent_s=1.0)
                submitted += 1
    finally:
        store.close()
    return submitted


def run(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    url = args.db or f"sqlite:///{out / 'feedback.db'}"
    cli = [PY, "-m", "annotation_ui"]
    prompts = sample_prompts(Path(args.world), args.prompts, args.seed)
    meta = {p["id"]: p.pop("meta") for p in prompts}
    (out / "prompt_meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    submitted = 0
    if not args.export_only:
        write_jsonl(out / "prompts.jsonl", prompts)
        subprocess.run([*cli, "generate", "--db", url, "--overlap", str(args.annotators), "--checkpoint", args.policy,
                        "--prompts", str(out / "prompts.jsonl"), "--n", str(args.candidates), "--seed", str(args.seed),
                        "--max-new-tokens", str(args.max_new_tokens), "--out", str(out / "candidates.jsonl")],
                       check=True)
        if not args.live:
            submitted = rank_with_simulated_annotators(
                url, lambda ext_id, texts: dense_ranking([response_score(t, meta[ext_id]) for t in texts]),
                args.annotators, args.noise, args.seed)
    rankings = out / "rankings.jsonl"
    subprocess.run([*cli, "export", "--db", url, "--format", "rankings", "--out", str(rankings)], check=True)
    exported = load_jsonl(rankings)
    agree = sum(r["ranking"] == dense_ranking([response_score(t, meta.get(r["id"], {})) for t in r["responses"]])
                for r in exported if r["id"] in meta)
    scores = [response_score(t, meta[r["id"]]) for r in exported if r["id"] in meta for t in r["responses"]]
    summary = {"prompts": len(prompts), "candidates_per_prompt": args.candidates, "submissions": submitted,
               "items_exported": len(exported), "rankings_file": str(rankings),
               "consensus_equals_judge_ranking": agree / max(len(exported), 1),
               "mean_candidate_score": sum(scores) / max(len(scores), 1), "score_scale": "0-4 (world.judge.response_score)"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m align.feedback", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="model directory that answers (the SFT model)")
    parser.add_argument("--world", default=None, help="world directory (default: the tiny world, seed 0)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--db", default=None, help="annotation database URL (default: OUT/feedback.db)")
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--candidates", type=int, default=4, help="responses per prompt (2..6)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--live", action="store_true", help="people rank in the app: import only")
    parser.add_argument("--export-only", action="store_true", help="export what the database holds")
    args = parser.parse_args(argv)

    def body():
        if args.world is None:
            from world.default import world_dir

            args.world = str(world_dir("tiny", 0))
        from glm_base.loading import check_model_dir

        check_model_dir(args.policy, "--policy")
        if not 2 <= args.candidates <= 6:
            raise UserError(f"--candidates must be 2..6 (the app shows at most 6 responses), got {args.candidates}")
        return run(args)

    run_main(body)


if __name__ == "__main__":
    main()
