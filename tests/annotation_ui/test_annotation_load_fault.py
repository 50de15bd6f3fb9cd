"""Concurrency under load (gradio_client, server in its own process) and SIGKILL mid-transaction."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from annotation_helpers import make_items
from annotation_ui import io as aio
from annotation_ui.store import Store, sqlite_integrity_check

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("annotation_load", ROOT / "bench" / "annotation_load.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_load_32_clients_gradio_client(tmp_path):
    """32 annotators at once through gradio_client (a lighter run of bench/annotation_load.py:
    6 submissions each instead of 50): 0 lost, 0 duplicated, 0 errors, exact progress counts."""
    res = _bench().run_load(clients=32, submissions=6, client="gradio_client", workdir=tmp_path)
    assert res["errors"] == 0, res["error_samples"]
    assert res["lost"] == 0 and res["duplicated"] == 0 and res["retries_not_reported_duplicate"] == 0
    assert res["acknowledged"] == res["stored_rankings"] == res["expected"] == 32 * 6
    assert res["progress_mismatches"] == {} and res["prompts_over_k"] == 0
    assert res["integrity_check"] == "ok" and res["ok"]


def test_load_write_mode_small(tmp_path):
    """bench/annotation_load.py --mode write at a tiny size (4 annotators x 3 demonstrations over
    HTTP against a server process; the full-size run is the benchmark's): all stored exactly once."""
    res = _bench().run_load(clients=4, submissions=3, client="http", workdir=tmp_path, mode="write")
    assert res["errors"] == 0, res["error_samples"]
    assert res["mode"] == "write" and res["ok"]
    assert res["acknowledged"] == res["stored_rankings"] == res["expected"] == 12
    assert res["lost"] == 0 and res["duplicated"] == 0 and res["retries_not_reported_duplicate"] == 0
    assert res["progress_mismatches"] == {} and res["prompts_over_k"] == 0 and res["integrity_check"] == "ok"


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from annotation_ui.store import Store, Ranking, RankingEntry, Assignment
    from sqlalchemy import select
    store = Store({url!r}, overlap=1)
    mode = sys.argv[1]
    n = 0
    while True:
        it = store.next_item("w")
        if it["item_id"] is None:
            print("EMPTY", flush=True); time.sleep(60)
        ranks = {{str(r["id"]): k + 1 for k, r in enumerate(it["responses"])}}
        n += 1
        if mode == "hang" and n == 15:
            # a write transaction left open half-way: ranking row and one of its entries, then killed
            with store.write() as s:
                uid = s.scalar(select(Assignment.user_id).where(Assignment.prompt_id == it["item_id"]))
                r = Ranking(prompt_id=it["item_id"], user_id=uid, rationale="partial", time_spent_s=0.0)
                s.add(r); s.flush()
                s.add(RankingEntry(ranking_id=r.id, response_id=it["responses"][0]["id"], rank=1)); s.flush()
                print("IN-TXN", it["item_id"], flush=True)
                time.sleep(60)
        res = store.submit_ranking("w", it["item_id"], ranks, None, "ok", 1.0)
        print("COMMITTED", it["item_id"], res["ranking_id"], flush=True)
""")


@pytest.mark.parametrize("mode", ["hang", "random"])
def test_sigkill_mid_transaction(tmp_path, mode):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store = Store(url, overlap=1)
    store.import_rows([aio.validate_item(r, "t") for r in make_items(400)])
    store.add_user("w", "annotator", "pw-w-12345")
    store.close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT), url=url))
    committed: list[tuple[int, int]] = []
    proc = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    kill_after = 40 if mode == "random" else None
    try:
        for line in proc.stdout:
            parts = line.split()
            if parts[0] == "COMMITTED":
                committed.append((int(parts[1]), int(parts[2])))
                if kill_after and len(committed) >= kill_after:
                    time.sleep(0.003)  # somewhere inside the next transactions
                    break
            elif parts[0] == "IN-TXN":
                break
            assert time.time() < deadline, "writer too slow"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(committed) >= 14
    assert sqlite_integrity_check(url) == "ok"
    store = Store(url, overlap=1)
    try:
        items = {it["item_id"]: it for it in store.items_with_rankings()}
        for pid, rid in committed:  # every acknowledged ranking is there, complete
            assert pid in items
            r = items[pid]["rankings"][0]
            assert len(r["ranks"]) == len(items[pid]["responses"]) == 4
        for it in items.values():  # and nothing half-written
            assert all(len(r["ranks"]) == 4 and r["rationale"] == "ok" for r in it["rankings"])
        # the database keeps working after the crash
        nxt = store.next_item("w")
        res = store.submit_ranking("w", nxt["item_id"], {str(r["id"]): 1 for r in nxt["responses"]})
        assert res["ok"] and not res["duplicate"]
    finally:
        store.close()
