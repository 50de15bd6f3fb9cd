"""Command line of the annotation app: `python -m annotation_ui COMMAND ...` (also `glm-annotate`).

    serve     --db URL --port 7860 [--config configs/annotation/serve.yaml] [key=value ...]
    users     add NAME --role annotator|reviewer|admin --password-file FILE | list | disable NAME
              | enable NAME | passwd NAME --password-file FILE
    import    FILE [--source NAME]      rows with responses: items to rank; without: prompts to write for
    generate  --checkpoint DIR --prompts FILE --n 4 [--temperature 0.8 --top-p 0.95 --out FILE]
    export    --format rankings|pairs|sft|prompts --out FILE [--consensus borda|ranked_pairs] [--report FILE]
    db        upgrade | current

Every command takes `--db URL` (default: $ANNOTATION_DB or sqlite:///annotations.db). Passwords are
read from a file (first line), never from the command line. Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .store import ROLES, StoreError, env_url


def _read_password(path: str) -> str:
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{path}: password file not found")
    pw = p.read_text(encoding="utf-8").splitlines()[0] if p.read_text(encoding="utf-8") else ""
    if not pw:
        raise StoreError(f"{path}: the first line (the password) is empty")
    if len(pw) < 8:
        raise StoreError(f"{path}: password has {len(pw)} characters; use at least 8")
    return pw


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None, help="SQLAlchemy URL (default $ANNOTATION_DB or sqlite:///annotations.db)")
    common.add_argument("--overlap", type=int, default=3, help="k: annotators per prompt")
    p = argparse.ArgumentParser(prog="python -m annotation_ui", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("serve", parents=[common], add_help=False,
                   help="run the Gradio app (see annotation_ui.serve.ServeConfig; --help lists its fields)")

    users = sub.add_parser("users", help="manage users")
    usub = users.add_subparsers(dest="action", required=True)
    add = usub.add_parser("add", parents=[common])
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-file", required=True, help="file whose first line is the password")
    usub.add_parser("list", parents=[common]).add_argument("--json", action="store_true")
    usub.add_parser("disable", parents=[common]).add_argument("name")
    usub.add_parser("enable", parents=[common]).add_argument("name")
    pw = usub.add_parser("passwd", parents=[common])
    pw.add_argument("name")
    pw.add_argument("--password-file", required=True)

    imp = sub.add_parser("import", parents=[common], help="import items to rank, or prompts to write for (JSONL/JSON/datasets)")
    imp.add_argument("file")
    imp.add_argument("--source", default=None, help="source label (default: the file name)")

    gen = sub.add_parser("generate", parents=[common], help="sample candidates from a checkpoint and import them")
    gen.add_argument("--checkpoint", required=True)
    gen.add_argument("--prompts", required=True)
    gen.add_argument("--n", type=int, default=4)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--model-name", default=None)
    gen.add_argument("--out", default=None, help="also write the items as JSONL here")
    gen.add_argument("--no-import", action="store_true", help="only write --out, do not touch the database")

    exp = sub.add_parser("export", parents=[common], help="export rankings or pairs (with an agreement report), or the "
                         "reviewed demonstrations as SFT chat rows (sft) or their human prompts (prompts)")
    exp.add_argument("--format", choices=("rankings", "pairs", "sft", "prompts"), default="rankings")
    exp.add_argument("--out", required=True)
    exp.add_argument("--consensus", choices=("borda", "ranked_pairs"), default="borda")
    exp.add_argument("--min-annotators", type=int, default=1)
    exp.add_argument("--report", default=None, help="report path (default: OUT with suffix .report.json)")

    db = sub.add_parser("db", parents=[common], help="schema version")
    db.add_argument("action", choices=("upgrade", "current"))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "serve":
        from .serve import serve_main

        return serve_main(argv[1:])
    args = build_parser().parse_args(argv)
    url = args.db or env_url()
    try:
        return _run(args, url)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, url: str) -> int:
    from .store import Store, current_revision, head_revision, make_engine, upgrade

    if args.cmd == "db":
        engine = make_engine(url)
        if args.action == "upgrade":
            before = current_revision(engine)
            upgrade(engine)
            print(f"schema: {before} -> {current_revision(engine)}")
        else:
            print(f"schema: {current_revision(engine)} (newest: {head_revision()})")
        return 0
    store = Store(url, overlap=args.overlap)
    if args.cmd == "users":
        if args.action == "add":
            store.add_user(args.name, args.role, _read_password(args.password_file))
            print(f"added {args.role} {args.name}")
        elif args.action == "list":
            users = store.list_users()
            if args.json:
                print(json.dumps(users, indent=2))
            else:
                for u in users:
                    print(f"{u['name']}\t{u['role']}\t{'active' if u['active'] else 'disabled'}\t{u['created_at']}")
        elif args.action in ("disable", "enable"):
            store.set_active(args.name, args.action == "enable")
            print(f"{args.action}d {args.name}")
        elif args.action == "passwd":
            store.set_password(args.name, _read_password(args.password_file))
            print(f"password of {args.name} changed")
    elif args.cmd == "import":
        from .io import import_file

        added, present = import_file(store, args.file, source=args.source)
        print(f"imported {added} items ({present} already present) from {args.file}")
    elif args.cmd == "generate":
        from .generate import generate_candidates, write_jsonl

        rows = generate_candidates(args.checkpoint, args.prompts, n=args.n, temperature=args.temperature,
                                   top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed,
                                   model_name=args.model_name)
        if args.out:
            write_jsonl(rows, args.out)
            print(f"wrote {len(rows)} items to {args.out}")
        if not args.no_import:
            added, present = store.import_rows(rows, source=rows[0]["source"] if rows else "")
            print(f"imported {added} generated items ({present} already present)")
    elif args.cmd == "export":
        from .io import export

        report = export(store, args.out, fmt=args.format, method=args.consensus,
                        min_annotators=args.min_annotators, report_path=args.report)
        if args.format in ("sft", "prompts"):
            print(f"wrote {report['rows']} {args.format} rows to {report['out']} ({report['demonstrations_exported']} of "
                  f"{report['demonstrations']} demonstrations accepted or edited); report {report['report']}")
        else:
            w = report["kendalls_w"]["mean"]
            print(f"wrote {report['rows']} {args.format} rows ({report['items_exported']} items) to {report['out']}; "
                  f"Kendall's W {'n/a' if w is None else f'{w:.3f}'}; report {report['report']}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
