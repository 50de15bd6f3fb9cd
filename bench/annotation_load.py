"""Load test of the annotation app: N concurrent annotators x M submissions each, on SQLite.

    python bench/annotation_load.py                       # 32 clients x 50 submissions, HTTP clients
    python bench/annotation_load.py --client gradio_client --clients 8 --submissions 10
    python bench/annotation_load.py --mode write          # demonstrations instead of rankings

The server runs as its own process (`python -m annotation_ui serve`), as in production. Each
simulated annotator logs in with its own account and loops: `next_item`, then `submit_ranking`
(every 5th submit is sent twice, as a client retrying after a timeout would). Timing starts
when all clients have logged in and fetched their first item (a user who has opened the page). Clients are threads
in this process, each with its own login and keep-alive connection; `--client http` calls Gradio's
REST API (`POST /gradio_api/run/<api_name>`, through the standard library's http.client, the
lightest load generator: it shares the 2 cores with the server), `--client gradio_client` uses
gradio_client.Client. `--repeat N` (default 3) runs it N times, each on a fresh database and server,
and reports the medians.

Checked after the run (the bench exits 1 if any fails): every submission the server acknowledged
is in the database (0 lost), no (prompt, annotator) pair twice and every retry reported as a
duplicate (0 duplicated), 0 errors, each annotator's progress counter exactly M, no prompt ranked
by more than k annotators, and `PRAGMA integrity_check` = ok.

Prints p50/p95 submit latency (target p95 < 200 ms on the 2-core reference machine) and writes
bench/results/annotation_load.json. `--think-ms` adds a pause between an item arriving and its
submit (0 = closed loop, the worst case).

`--mode write` loads the write task instead: each annotator loops `next_write_item`, then
`submit_demonstration` (an ideal response in the item's language, and a prompt for items that ask
for one; the judges' advice runs on every submit), every 5th submit sent twice. Checked the same
way against the database: every acknowledged demonstration stored, none twice (one per item and
annotator, each item written once: write overlap 1), progress exact, integrity ok.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation_ui.store import Store, sqlite_integrity_check  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_items(n: int, n_responses: int = 4) -> list[dict]:
    return [{"id": f"load-{i}", "lang": "en" if i % 2 else "zh", "category": "load", "prompt": f"prompt {i}",
             "responses": [f"response {k} of prompt {i} " + "lorem ipsum " * 20 for k in range(n_responses)],
             "source": "", "messages": None} for i in range(n)]


def make_write_items(n: int) -> list[dict]:
    """Prompts to write for: English and Chinese prompts, and every 10th a request to write the prompt."""
    rows = []
    for i in range(n):
        lang = "en" if i % 2 else "zh"
        row = {"id": f"write-{i}", "lang": lang, "category": "load", "source": "", "messages": None,
               "prompt": f"question {i}: what is {i} + {i}?" if lang == "en" else f"问题 {i}：{i} 加 {i} 等于多少？"}
        if i % 10 == 0:
            row["prompt"] = None
        rows.append(row)
    return rows


def demonstration_for(item: dict, k: int) -> tuple[str, str | None]:
    """(response, prompt or None) in the item's language."""
    if item["lang"] == "zh":
        response = f"答案是 {k}。这是一个示范回答，" + "写得清楚而且有帮助。" * 8
        prompt = f"请写一首关于第 {k} 天的短诗。" if item["write_prompt"] else None
    else:
        response = f"The answer is {k}. This is a demonstration, " + "written to be clear and helpful. " * 8
        prompt = f"Please write a short poem about day {k}." if item["write_prompt"] else None
    return response, prompt


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class HttpAnnotator:
    """One annotator over Gradio's REST API: its own login cookie and keep-alive connection.

    Written on the standard library's http.client rather than httpx: the load generator shares the
    machine with the server, and 32 httpx clients cost the bench process about twice the CPU per
    request (and the GIL queueing that comes with it) for no difference in what the server does."""

    def __init__(self, url: str, user: str, password: str):
        import urllib.parse

        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = self._connect()
        status, headers, body = self._request("POST", "/login", urllib.parse.urlencode(
            {"username": user, "password": password}), {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"login of {user} failed: HTTP {status} {body[:200]!r}")
        cookies = [v.split(";", 1)[0] for k, v in headers if k.lower() == "set-cookie"]
        self.headers = {"Content-Type": "application/json", "Cookie": "; ".join(cookies)}
        # Like a browser tab or gradio_client: one session hash per client, so the server keeps one
        # session state instead of building a fresh one for every call.
        self.session_hash = os.urandom(8).hex()

    def _connect(self):
        import http.client

        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def _request(self, method: str, path: str, body: str, headers: dict):
        import http.client

        for attempt in range(2):
            try:
                self.conn.request(method, path, body, headers)
                r = self.conn.getresponse()
                return r.status, r.getheaders(), r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed an idle keep-alive connection; sending again is safe, since a
                # repeated submit is recognised as a duplicate
                self.conn.close()
                self.conn = self._connect()
                if attempt:
                    raise

    def call(self, api_name: str, *data):
        status, _, raw = self._request("POST", f"/gradio_api/run/{api_name}",
                                       json.dumps({"data": list(data), "session_hash": self.session_hash}), self.headers)
        body = json.loads(raw)
        if status != 200 or "error" in body:
            raise RuntimeError(f"{api_name}: HTTP {status}: {body.get('error', body)}")
        return body["data"][0]

    def close(self):
        self.conn.close()


class GradioClientAnnotator:
    def __init__(self, url: str, user: str, password: str):
        from gradio_client import Client

        # Opening a client (login + config fetch) is not what is measured; on a busy machine 32 of them
        # at once can exceed httpx's default timeout, so allow more time and retry the opening.
        for attempt in range(4):
            try:
                self.c = Client(url, auth=(user, password), verbose=False, httpx_kwargs={"timeout": 120.0})
                break
            except Exception:  # noqa: BLE001
                if attempt == 3:
                    raise
                time.sleep(1.0 + attempt)

    def call(self, api_name: str, *data):
        return self.c.predict(*data, api_name="/" + api_name)

    def close(self):
        self.c.close()


def start_server(db_url: str, port: int, overlap: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    logf = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "annotation_ui", "serve", "--db", db_url, "--port", str(port), "--overlap", str(overlap)],
        cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; log: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start within 90 s; log: {log_path}")


def run_load(*, clients: int = 32, submissions: int = 50, overlap: int = 3, client: str = "http",
             think_ms: float = 0.0, workdir: str | Path | None = None, url: str | None = None,
             db_url: str | None = None, seed: int = 0, mode: str = "rank") -> dict:
    """Set up a database, start a server (unless `url` is given), run the load, verify, return results.
    mode: "rank" (next_item / submit_ranking) or "write" (next_write_item / submit_demonstration)."""
    if mode not in ("rank", "write"):
        raise ValueError(f"mode must be 'rank' or 'write', got {mode!r}")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="annotation-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = db_url or f"sqlite:///{workdir / 'load.db'}"
    n_prompts = max(clients * submissions // overlap + clients * 2, submissions * 2)
    store = Store(db_url, overlap=overlap)
    if mode == "write":  # each item is written once (write overlap 1)
        n_prompts = clients * submissions + clients * 2
        store.import_rows(make_write_items(n_prompts))
    else:
        store.import_rows(make_items(n_prompts))
    users = [(f"annotator{i:02d}", f"load-pass-{i:02d}") for i in range(clients)]
    for u, p in users:
        store.add_user(u, "annotator", p)
    proc = None
    if url is None:
        proc = start_server(db_url, free_port(), overlap, workdir / "server.log")
        url = f"http://127.0.0.1:{proc.args[proc.args.index('--port') + 1]}/"
    cls = HttpAnnotator if client == "http" else GradioClientAnnotator
    submit_lat: list[float] = []
    next_lat: list[float] = []
    acked: list[tuple[str, int, int]] = []
    errors: list[str] = []
    retry_not_dup: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def annotator(idx: int):
        user, pw = users[idx]
        rng = random.Random(seed * 1000 + idx)
        try:
            a = cls(url, user, pw)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"{user}: {e}")
            barrier.abort()
            return
        try:
            a.call("next_item" if mode == "rank" else "next_write_item")  # opening the app (not timed)
            barrier.wait(timeout=120)
            for k in range(submissions):
                if mode == "write":
                    t0 = time.perf_counter()
                    item = a.call("next_write_item")
                    t1 = time.perf_counter()
                    if item["item_id"] is None:
                        raise RuntimeError(f"{user}: no write item left after {k} submissions")
                    response, prompt = demonstration_for(item, k)
                    if think_ms:
                        time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
                    t2 = time.perf_counter()
                    res = a.call("submit_demonstration", item["item_id"], response, prompt, None)
                    t3 = time.perf_counter()
                    if not res.get("ok") or res.get("duplicate"):
                        raise RuntimeError(f"{user}: unexpected submit result {res}")
                    if k % 5 == 4:
                        again = a.call("submit_demonstration", item["item_id"], response, prompt, None)
                        if not again.get("duplicate") or again.get("demonstration_id") != res["demonstration_id"]:
                            with lock:
                                retry_not_dup.append(f"{user} item {item['item_id']}: {again}")
                    with lock:
                        next_lat.append(t1 - t0)
                        submit_lat.append(t3 - t2)
                        acked.append((user, item["item_id"], res["demonstration_id"]))
                    continue
                t0 = time.perf_counter()
                item = a.call("next_item")
                t1 = time.perf_counter()
                if item["item_id"] is None:
                    raise RuntimeError(f"{user}: no item left after {k} submissions")
                ids = [r["id"] for r in item["responses"]]
                order = list(range(1, len(ids) + 1))
                rng.shuffle(order)
                if rng.random() < 0.3:  # some ties
                    order[0] = order[1]
                ranks = {str(i): r for i, r in zip(ids, order)}
                flags = {str(ids[0]): ["unhelpful"]} if rng.random() < 0.2 else {}
                if think_ms:
                    time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
                t2 = time.perf_counter()
                res = a.call("submit_ranking", item["item_id"], ranks, flags, f"load {user} {k}", None)
                t3 = time.perf_counter()
                if not res.get("ok") or res.get("duplicate"):
                    raise RuntimeError(f"{user}: unexpected submit result {res}")
                if k % 5 == 4:  # a client retrying the same submit
                    again = a.call("submit_ranking", item["item_id"], ranks, flags, f"load {user} {k}", None)
                    if not again.get("duplicate") or again.get("ranking_id") != res["ranking_id"]:
                        with lock:
                            retry_not_dup.append(f"{user} item {item['item_id']}: {again}")
                with lock:
                    next_lat.append(t1 - t0)
                    submit_lat.append(t3 - t2)
                    acked.append((user, item["item_id"], res["ranking_id"]))
        except threading.BrokenBarrierError:
            pass
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"{user}: {type(e).__name__}: {e}")
        finally:
            a.close()

    load_before = os.getloadavg()
    t_start = time.perf_counter()
    threads = [threading.Thread(target=annotator, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    load_after = os.getloadavg()
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    # ---- verification against the database ---------------------------------------------------
    counts = store.counts()
    if mode == "write":
        demos = store.demonstrations()
        stored = {(d["annotator"], d["item_id"]) for d in demos}
        n_stored = len(demos)
        per_item: dict[int, int] = {}
        for d in demos:
            per_item[d["item_id"]] = per_item.get(d["item_id"], 0) + 1
        over_k = [i for i, n in per_item.items() if n > store.write_overlap]
        progress_of = store.write_progress
        counts["rankings"] = counts["demonstrations"]  # what this mode stores, under the common name
    else:
        items = store.items_with_rankings()
        stored = {(r["annotator"], it["item_id"]) for it in items for r in it["rankings"]}
        n_stored = sum(len(it["rankings"]) for it in items)
        over_k = [it["item_id"] for it in items if len(it["rankings"]) > overlap]
        progress_of = store.progress
    lost = [a for a in acked if (a[0], a[1]) not in stored]
    dup_pairs = n_stored - len(stored)
    progress_wrong = {u: p["done"] for u, p in ((u, progress_of(u)) for u, _ in users) if p["done"] != submissions}
    integrity = sqlite_integrity_check(db_url) if db_url.startswith("sqlite") else "n/a"
    store.close()
    expected = clients * submissions
    ok = (not errors and not lost and dup_pairs == 0 and not retry_not_dup and not over_k and not progress_wrong
          and len(acked) == expected and counts["rankings"] == expected and integrity == "ok")
    ms = lambda xs, q: round(1000 * percentile(xs, q), 1)  # noqa: E731
    return {
        "ok": ok,
        "mode": mode,
        "client": client, "clients": clients, "submissions_per_client": submissions, "overlap": overlap,
        "think_ms": think_ms, "prompts": n_prompts,
        "submit_latency_ms": {"p50": ms(submit_lat, 0.5), "p95": ms(submit_lat, 0.95), "p99": ms(submit_lat, 0.99),
                              "max": ms(submit_lat, 1.0), "mean": round(1000 * statistics.mean(submit_lat), 1) if submit_lat else None},
        "next_item_latency_ms": {"p50": ms(next_lat, 0.5), "p95": ms(next_lat, 0.95)},
        "submits_per_s": round(len(acked) / wall, 1), "wall_s": round(wall, 1),
        "acknowledged": len(acked), "stored_rankings": counts["rankings"], "expected": expected,
        "lost": len(lost), "duplicated": dup_pairs, "retries_not_reported_duplicate": len(retry_not_dup),
        "errors": len(errors), "error_samples": errors[:5], "progress_mismatches": progress_wrong,
        "prompts_over_k": len(over_k), "integrity_check": integrity,
        "machine": {"loadavg_1_5_15_before": [round(x, 2) for x in load_before],
                    "loadavg_1_5_15_after": [round(x, 2) for x in load_after],
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


def summary_line(res: dict) -> str:
    lat = res["submit_latency_ms"]
    return (f"{res.get('mode', 'rank')}: {res['clients']} clients x {res['submissions_per_client']} submissions ({res['client']}, think {res['think_ms']} ms): "
            f"submit p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms; {res['submits_per_s']} submits/s; "
            f"lost {res['lost']}, duplicated {res['duplicated']}, errors {res['errors']}, integrity {res['integrity_check']}"
            f" -> {'OK' if res['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--submissions", type=int, default=50)
    p.add_argument("--overlap", type=int, default=3)
    p.add_argument("--client", choices=("http", "gradio_client"), default="http")
    p.add_argument("--mode", choices=("rank", "write"), default="rank",
                   help="rank: next_item/submit_ranking; write: next_write_item/submit_demonstration")
    p.add_argument("--think-ms", type=float, default=0.0)
    p.add_argument("--repeat", type=int, default=3, help="independent runs (fresh database and server each); "
                   "the reported figures are their medians, as one run on a shared 2-core machine varies by ~10%%")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "annotation_load.json"))
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    repeats = []
    for i in range(max(args.repeat, 1)):
        workdir = None if args.workdir is None else Path(args.workdir) / f"run{i}"
        res = run_load(clients=args.clients, submissions=args.submissions, overlap=args.overlap, client=args.client,
                       think_ms=args.think_ms, workdir=workdir, mode=args.mode)
        print(f"run {i + 1}/{args.repeat}: " + summary_line(res), flush=True)
        if res["error_samples"]:
            print("errors:", *res["error_samples"], sep="\n  ")
        repeats.append(res)
    med = lambda xs: round(statistics.median(xs), 1)  # noqa: E731
    res = dict(repeats[len(repeats) // 2])  # machine/load fields of one run; figures replaced by medians
    res["ok"] = all(r["ok"] for r in repeats)
    res["repeats"] = len(repeats)
    for field in ("submit_latency_ms", "next_item_latency_ms"):
        res[field] = {q: med([r[field][q] for r in repeats]) for q in repeats[0][field]}
        res[field + "_per_run"] = [r[field] for r in repeats]
    res["submits_per_s"] = med([r["submits_per_s"] for r in repeats])
    for field in ("lost", "duplicated", "errors", "retries_not_reported_duplicate", "prompts_over_k"):
        res[field] = sum(r[field] for r in repeats)
    res["integrity_check"] = "ok" if all(r["integrity_check"] == "ok" for r in repeats) else "FAILED"
    res["error_samples"] = [e for r in repeats for e in r["error_samples"]][:10]
    p95 = res["submit_latency_ms"]["p95"]
    print(f"median of {len(repeats)}: " + summary_line(res) + f"; p95 target 200 ms: {'met' if p95 < 200 else 'NOT met'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = {}
    if out.exists():
        try:
            runs = json.loads(out.read_text()).get("runs", {})
        except (json.JSONDecodeError, AttributeError):
            runs = {}
    key = ("write_" if args.mode == "write" else "") + f"{res['client']}_c{res['clients']}_s{res['submissions_per_client']}_think{int(res['think_ms'])}"
    runs[key] = res
    out.write_text(json.dumps({"latest": key, "runs": runs}, indent=2))
    print(f"wrote {out}")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
