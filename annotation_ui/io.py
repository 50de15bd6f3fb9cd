"""Import of items to rank and export of rankings/pairs with a consensus and an agreement report.

Import schema (the shared preference schema without rankings), one JSON object per line (JSONL), a
JSON list, or a `datasets` directory/parquet file:
    {"id": str, "lang": str, "category": str, "prompt": str  |  "messages": [{"role", "content"}, ...],
     "responses": [str, ...]}               (optional: "models": [str per response], "source": str)

Export, `--format rankings` (the reward stage's schema; one line per item):
    {"id", "lang", "category", "prompt" | "messages", "responses": [str], "ranking": [int]}
where ranking[i] is the consensus rank of responses[i] (1 = best, ties share a rank, dense).

Export, `--format pairs` (TRL-style; one line per ordered pair of the consensus, ties skipped):
    {"id", "lang", "category", "prompt": str | messages, "chosen": str | [assistant message],
     "rejected": str | [assistant message], "margin": float}
margin = consensus rank of rejected - consensus rank of chosen (>= 1).

The consensus of an item is a reviewer's adjudication if there is one, else the Borda (or ranked
pairs) consensus of its annotators. The JSON report holds Kendall's W per item and on average,
each annotator's mean Kendall tau-b to the leave-one-out consensus of the other annotators, flag
counts, and how many items were exported.

Import of prompts to write for (rows *without* "responses"; see annotation_ui.store.write):
    {"id", "lang": "en"|"zh", "category", "prompt": str | "messages": [... ending with a user turn]}
or, with neither prompt nor messages, a request to write a prompt in `lang` of `category` (both
required) and then its response.

Export of demonstrations (accepted or reviewer-edited only; an edit replaces the original text):
    --format sft      {"id", "lang", "category", "messages": [{"role", "content"}, ...]}   (world.schema "sft")
    --format prompts  {"id", "lang", "category", "prompt"}  (a conversation: "messages" instead of "prompt")
id is the item's id, or "<item id>/<annotator>" when an item has several exportable demonstrations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from common.rankings import ranking_pairs

from . import agreement as ag
from .store import FLAGS, MAX_RESPONSES, Store, StoreError

WRITE_LANGS = ("en", "zh")
MESSAGE_ROLES = ("system", "user", "assistant")


class ItemFileError(StoreError):
    pass


def read_rows(path: str | Path) -> Iterator[tuple[str, dict]]:
    """(location, row) for each row of a JSONL/JSON file or a `datasets` directory/parquet file."""
    path = Path(path)
    if not path.exists():
        raise ItemFileError(f"{path}: no such file")
    if path.is_dir() or path.suffix in (".parquet", ".arrow"):
        import datasets

        ds = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.load_dataset(
            "parquet" if path.suffix == ".parquet" else "arrow", data_files=str(path), split="train")
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[next(iter(ds))]
        for i, row in enumerate(ds):
            yield f"{path}: row {i}", dict(row)
        return
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ItemFileError(f"{path}: not valid JSON ({e})") from None
        for i, row in enumerate(data):
            yield f"{path}: item {i}", row
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{lineno}", json.loads(line)
        except json.JSONDecodeError as e:
            raise ItemFileError(f"{path}:{lineno}: not valid JSON ({e.msg}); expected one JSON object per line") from None


def validate_item(row: Any, where: str, *, need_responses: bool | None = True) -> dict:
    """Check one row against the import schema; return it normalised. Raises ItemFileError naming
    `where` (file and row) and the field.

    need_responses=True: an item to rank (2..MAX_RESPONSES responses); False: a prompt only (its
    responses, if any, are ignored); None: decided by the row, an item to rank when it has
    "responses", else a prompt to write for (`validate_write_item`)."""
    if need_responses is None:
        if isinstance(row, dict) and row.get("responses") is None:
            return validate_write_item(row, where)
        need_responses = True
    if not isinstance(row, dict):
        raise ItemFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
    out: dict[str, Any] = {}
    rid = row.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise ItemFileError(f"{where}: field 'id': expected a non-empty string, got {rid!r}")
    out["id"] = str(rid)
    for key in ("lang", "category", "source"):
        v = row.get(key, "")
        if v is None:
            v = ""
        if not isinstance(v, str):
            raise ItemFileError(f"{where}: field {key!r}: expected a string, got {v!r}")
        out[key] = v
    prompt, messages = row.get("prompt"), row.get("messages")
    if (prompt is None) == (messages is None):
        raise ItemFileError(f"{where}: expected exactly one of 'prompt' (a string) or 'messages' (a list of {{role, content}})")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ItemFileError(f"{where}: field 'prompt': expected a non-empty string, got {prompt!r}")
        out["prompt"], out["messages"] = prompt, None
    else:
        if not isinstance(messages, list) or not messages:
            raise ItemFileError(f"{where}: field 'messages': expected a non-empty list of {{role, content}}, got {messages!r}")
        for k, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise ItemFileError(f"{where}: field 'messages[{k}]': expected {{\"role\": str, \"content\": str}}, got {m!r}")
        out["prompt"], out["messages"] = None, [{"role": m["role"], "content": m["content"]} for m in messages]
    responses = row.get("responses")
    if need_responses:
        if not isinstance(responses, list) or len(responses) < 2 or not all(isinstance(r, str) for r in responses):
            raise ItemFileError(f"{where}: field 'responses': expected a list of at least 2 strings, got {_short(responses)}")
        if len(responses) > MAX_RESPONSES:
            raise ItemFileError(f"{where}: field 'responses': {len(responses)} responses; the app shows at most "
                                f"{MAX_RESPONSES} side by side, so this item could never be ranked (split it or drop some)")
        out["responses"] = list(responses)
        models = row.get("models")
        if models is not None:
            if not isinstance(models, list) or len(models) != len(responses) or not all(isinstance(m, str) for m in models):
                raise ItemFileError(f"{where}: field 'models': expected one string per response ({len(responses)}), got {_short(models)}")
            out["models"] = list(models)
    return out


def validate_write_item(row: Any, where: str) -> dict:
    """Check a prompt to write for (a row without responses); return it normalised (no "responses"
    key). Raises ItemFileError naming `where` and the field."""
    if not isinstance(row, dict):
        raise ItemFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
    prompt, messages = row.get("prompt"), row.get("messages")
    if prompt is not None and messages is not None:
        raise ItemFileError(f"{where}: expected at most one of 'prompt' (a string) or 'messages' (a list of {{role, content}})")
    base = {k: v for k, v in row.items() if k not in ("prompt", "messages", "responses")}
    if prompt is None and messages is None:
        out = validate_item({**base, "prompt": "-"}, where, need_responses=False)
        out["prompt"] = None
        if not out["category"].strip():
            raise ItemFileError(f"{where}: field 'category': a row without prompt asks the annotator to write one "
                                f"of a category; expected a non-empty string")
    else:
        out = validate_item({**base, "prompt": prompt, "messages": messages}, where, need_responses=False)
    if out["lang"] not in WRITE_LANGS:
        raise ItemFileError(f"{where}: field 'lang': expected one of {list(WRITE_LANGS)} (the language to write in), "
                            f"got {out['lang']!r}")
    if out["messages"] is not None:
        for k, m in enumerate(out["messages"]):
            if m["role"] not in MESSAGE_ROLES:
                raise ItemFileError(f"{where}: field 'messages[{k}].role': expected one of {list(MESSAGE_ROLES)}, got {m['role']!r}")
        if out["messages"][-1]["role"] != "user":
            raise ItemFileError(f"{where}: field 'messages[{len(out['messages']) - 1}].role': the conversation must end "
                                f"with a user turn (the annotator writes the next assistant turn)")
    return out


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def load_items(path: str | Path, *, need_responses: bool | None = True) -> list[dict]:
    """Read and validate a whole file first (import is all or nothing)."""
    items, seen = [], {}
    for where, row in read_rows(path):
        item = validate_item(row, where, need_responses=need_responses)
        if item["id"] in seen:
            raise ItemFileError(f"{where}: field 'id': {item['id']!r} already used at {seen[item['id']]}")
        seen[item["id"]] = where
        items.append(item)
    return items


def import_file(store: Store, path: str | Path, *, source: str | None = None) -> tuple[int, int]:
    items = load_items(path, need_responses=None)
    return store.import_rows(items, source=source if source is not None else Path(path).name)


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------
def _aligned(item: dict, ranks_by_id: dict[int, int]) -> list[int]:
    return [int(ranks_by_id[r["id"]]) for r in item["responses"]]


def build_export(store: Store, *, fmt: str = "rankings", method: str = "borda", min_annotators: int = 1) -> tuple[list[dict], dict]:
    """(rows, report) for the items with at least `min_annotators` rankings (or an adjudication)."""
    if fmt not in ("rankings", "pairs"):
        raise StoreError(f"export format must be 'rankings' or 'pairs', got {fmt!r}")
    items = store.items_with_rankings(min_rankings=1)
    rows: list[dict] = []
    per_item = []
    taus: dict[str, list[float]] = {}
    n_rankings: dict[str, int] = {}
    time_spent: dict[str, list[float]] = {}
    flag_counts = {f: 0 for f in FLAGS}
    ws = []
    n_adjudicated = 0
    for item in items:
        rankings = [_aligned(item, r["ranks"]) for r in item["rankings"]]
        names = [r["annotator"] for r in item["rankings"]]
        for r in item["rankings"]:
            n_rankings[r["annotator"]] = n_rankings.get(r["annotator"], 0) + 1
            time_spent.setdefault(r["annotator"], []).append(r["time_spent_s"])
            for fl in r["flags"].values():
                for f in fl:
                    flag_counts[f] = flag_counts.get(f, 0) + 1
        w = ag.kendalls_w(rankings)
        if w is not None:
            ws.append(w)
        # per-annotator tau-b to the consensus of the others on the same item
        if len(rankings) >= 2:
            for k, name in enumerate(names):
                others = rankings[:k] + rankings[k + 1:]
                t = ag.kendall_tau_b(rankings[k], ag.consensus(others, method))
                if t is not None:
                    taus.setdefault(name, []).append(t)
        review = item["review"]
        if review is not None:
            final, source = _aligned(item, review["ranks"]), "adjudicated"
            n_adjudicated += 1
        elif len(rankings) >= min_annotators:
            final, source = ag.consensus(rankings, method), method
        else:
            per_item.append({"id": item["ext_id"], "n_annotators": len(rankings), "kendalls_w": w, "exported": False})
            continue
        per_item.append({"id": item["ext_id"], "n_annotators": len(rankings), "kendalls_w": w, "exported": True,
                         "consensus": source})
        base = {"id": item["ext_id"], "lang": item["lang"], "category": item["category"]}
        key = "prompt" if item["prompt"] is not None else "messages"
        texts = [r["text"] for r in item["responses"]]
        if fmt == "rankings":
            rows.append({**base, key: item[key], "responses": texts, "ranking": final})
        else:
            as_msg = key == "messages"
            for pair in ranking_pairs(final):
                chosen, rejected = texts[pair.chosen], texts[pair.rejected]
                rows.append({
                    **base, "prompt": item[key],
                    "chosen": [{"role": "assistant", "content": chosen}] if as_msg else chosen,
                    "rejected": [{"role": "assistant", "content": rejected}] if as_msg else rejected,
                    "margin": pair.margin,
                })
    annotators = sorted(set(n_rankings))
    report = {
        "format": fmt,
        "consensus": method,
        "min_annotators": min_annotators,
        "items_with_rankings": len(items),
        "items_exported": sum(1 for p in per_item if p["exported"]),
        "items_adjudicated": n_adjudicated,
        "rows": len(rows),
        "rankings": sum(n_rankings.values()),
        "kendalls_w": {
            "mean": ag.mean(ws), "items": len(ws),
            "note": "Kendall's coefficient of concordance (tie-corrected) per item with >= 2 annotators; 1 = full agreement",
        },
        "annotators": {
            name: {
                "rankings": n_rankings[name],
                "mean_tau_b_to_consensus": ag.mean(taus.get(name, [])),
                "items_compared": len(taus.get(name, [])),
                "mean_time_s": ag.mean(time_spent.get(name, [])),
            }
            for name in annotators
        },
        "tau_note": "Kendall tau-b of each annotator's ranking to the consensus of the other annotators of the same item, averaged over items",
        "flags": flag_counts,
        "items": per_item,
    }
    return rows, report


def build_demonstration_export(store: Store, *, fmt: str = "sft") -> tuple[list[dict], dict]:
    """(rows, report) of the accepted or reviewer-edited demonstrations: SFT chat rows (`sft`,
    each checked against world.schema's "sft" schema) or their prompts (`prompts`)."""
    from world.schema import validate_row

    if fmt not in ("sft", "prompts"):
        raise StoreError(f"demonstration export format must be 'sft' or 'prompts', got {fmt!r}")
    every = store.demonstrations()
    demos = [d for d in every if d["status"] in ("accepted", "edited")]
    per_item: dict[int, int] = {}
    for d in demos:
        per_item[d["item_id"]] = per_item.get(d["item_id"], 0) + 1
    rows: list[dict] = []
    seen_items: set[int] = set()
    for d in demos:
        rid = d["ext_id"] if per_item[d["item_id"]] == 1 else f"{d['ext_id']}/{d['annotator']}"
        base = {"id": rid, "lang": d["lang"], "category": d["category"] or "general"}
        if d["messages"]:
            context = [dict(m) for m in d["messages"]]
        else:
            context = [{"role": "user", "content": d["final_prompt"]}]
        if fmt == "sft":
            row = {**base, "messages": context + [{"role": "assistant", "content": d["final_response"]}]}
            validate_row(row, "sft", path=f"demonstration {d['id']}")
            rows.append(row)
        elif d["written_prompt"] is not None or d["item_id"] not in seen_items:  # imported prompts once per item
            if d["written_prompt"] is None:
                base["id"] = d["ext_id"]
            rows.append({**base, "messages": context} if d["messages"] else {**base, "prompt": d["final_prompt"]})
        seen_items.add(d["item_id"])
    by_status: dict[str, int] = {}
    by_lang: dict[str, int] = {}
    for d in every:
        by_status[d["status"]] = by_status.get(d["status"], 0) + 1
    for d in demos:
        by_lang[d["lang"]] = by_lang.get(d["lang"], 0) + 1
    report = {"format": fmt, "rows": len(rows), "items_exported": len(seen_items), "demonstrations": len(every),
              "demonstrations_exported": len(demos), "by_status": by_status, "exported_by_lang": by_lang,
              "edited": sum(1 for d in demos if d["status"] == "edited")}
    return rows, report


def export(store: Store, out: str | Path, *, fmt: str = "rankings", method: str = "borda",
           min_annotators: int = 1, report_path: str | Path | None = None) -> dict:
    """Write the JSONL export and its JSON report (default: OUT with suffix .report.json).
    fmt: rankings | pairs (rankings with consensus and agreement) | sft | prompts (demonstrations)."""
    if fmt in ("sft", "prompts"):
        rows, report = build_demonstration_export(store, fmt=fmt)
    else:
        rows, report = build_export(store, fmt=fmt, method=method, min_annotators=min_annotators)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    report_path = Path(report_path) if report_path else out.with_suffix(".report.json")
    report["out"] = str(out)
    report_path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    report["report"] = str(report_path)
    return report
