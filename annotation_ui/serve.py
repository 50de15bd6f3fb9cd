"""Serving the annotation app: `python -m annotation_ui serve --db URL --port 7860`.

`ServeConfig` (every field is a `key=value` override or a `--key value` flag), Gradio's login
against the users table (`make_auth`), and `launch`. Gradio is imported only when the app is
built, so `serve --help` and importing this module stay light (and nothing here imports torch).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .store import DEFAULT_URL, Store

log = logging.getLogger(__name__)
REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "annotation"


@dataclass
class ServeConfig:
    """Serve the annotation app (Gradio) over an annotation database."""

    db: str = field(default=DEFAULT_URL, metadata={"help": "SQLAlchemy URL of the annotation database"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0 for all)"})
    port: int = field(default=7860, metadata={"help": "port to listen on"})
    overlap: int = field(default=3, metadata={"help": "k: how many annotators rank each prompt"})
    write_overlap: int = field(default=1, metadata={"help": "how many annotators write a demonstration for each write item"})
    lease_seconds: float = field(default=1800.0, metadata={"help": "an unsubmitted assignment returns to the pool after this"})
    concurrency_limit: int = field(default=16, metadata={"help": "concurrent runs of each event (the DB serialises writes)"})
    max_threads: int = field(default=48, metadata={"help": "Gradio worker threads"})
    db_threads: int = field(default=0, metadata={"help": "threads for the API endpoints' database calls that cannot run on the event loop (0 = 1 on SQLite, 8 otherwise)"})
    guidelines_dir: str = field(default=str(REPO_CONFIGS), metadata={"help": "directory with guidelines.en.md / guidelines.zh.md"})
    default_lang: str = field(default="en", metadata={"help": "UI language before a user picks one: en or zh"})


def make_auth(store: Store):
    """Gradio auth callable: the users table, scrypt checked in a worker thread (not the event loop)."""
    import anyio

    async def auth(username: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(store.authenticate, username, password)

    return auth


def launch(cfg: ServeConfig, *, block: bool = True, store: Store | None = None):
    """Build and launch the app; returns (demo, url, store). block=False returns at once (tests)."""
    from .app import build_app
    from .render import CSS, SHORTCUTS_JS

    store = store or Store(cfg.db, overlap=cfg.overlap, lease_seconds=cfg.lease_seconds,
                           write_overlap=cfg.write_overlap)
    demo = build_app(store, cfg)
    demo.queue(default_concurrency_limit=cfg.concurrency_limit)
    if block:
        # Everything built so far lives as long as the server: keep it out of the collector's
        # generations, so a full collection under load does not walk it (cut p99 by ~250 ms).
        gc.collect()
        gc.freeze()
    _, url, _ = demo.launch(
        server_name=cfg.host, server_port=cfg.port, auth=make_auth(store), auth_message="glm-align annotation",
        prevent_thread_lock=not block, max_threads=cfg.max_threads, show_error=True, css=CSS, head=SHORTCUTS_JS,
        quiet=not block, ssr_mode=False,
    )
    return demo, url, store


def serve_main(argv: list[str]) -> int:
    """`serve` accepts `--config FILE`, `key=value` overrides, and `--db URL --port N` style flags."""
    import dataclasses

    from common.config import load_config

    names = {f.name for f in dataclasses.fields(ServeConfig)}
    conv: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        key = a[2:].replace("-", "_") if a.startswith("--") else None
        if key in names and "=" not in a and i + 1 < len(argv):
            conv.append(f"{key}={argv[i + 1]}")
            i += 2
            continue
        if a.startswith("--") and "=" in a and a[2:].split("=", 1)[0].replace("-", "_") in names:
            k, v = a[2:].split("=", 1)
            conv.append(f"{k.replace('-', '_')}={v}")
        else:
            conv.append(a)
        i += 1
    cfg = load_config(ServeConfig, conv, prog="python -m annotation_ui serve")
    if cfg.default_lang not in ("en", "zh"):
        raise SystemExit("default_lang must be en or zh")
    log.info("serving %s on http://%s:%d (overlap k=%d)", cfg.db, cfg.host, cfg.port, cfg.overlap)
    launch(cfg, block=True)
    return 0
