#!/usr/bin/env python3
"""Bounded HTTP load for the container tests: N client threads, each on one keep-alive
connection (reopened after an error), GET PATH in a loop until SIGTERM/SIGINT, --max-requests
or --max-seconds, whichever comes first. Prints one JSON object: requests, errors (with the
first few reasons), bodies seen (count per distinct body), longest stall (the longest time no
request completed successfully, across all threads) and the slowest request.

Usage: loadgen.py HOST:PORT PATH [--threads 4] [--max-requests 100000] [--max-seconds 120]
"""
import argparse
import http.client
import json
import signal
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("addr")
ap.add_argument("path")
ap.add_argument("--threads", type=int, default=4)
ap.add_argument("--max-requests", type=int, default=100_000)
ap.add_argument("--max-seconds", type=float, default=120.0)
ap.add_argument("--ready-file", help="written once the first request succeeded")
args = ap.parse_args()
host, port = args.addr.rsplit(":", 1)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())

lock = threading.Lock()
state = {
    "requests": 0,
    "errors": 0,
    "reasons": [],
    "bodies": {},
    "last_ok": None,
    "longest_stall_ms": 0.0,
    "slowest_ms": 0.0,
}
start = time.monotonic()
deadline = start + args.max_seconds


def worker():
    conn = None
    while not stop.is_set() and time.monotonic() < deadline:
        with lock:
            if state["requests"] >= args.max_requests:
                return
            state["requests"] += 1
        t0 = time.monotonic()
        err = None
        body = None
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", args.path)
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            if resp.status != 200:
                err = f"status {resp.status}: {body[:80]!r}"
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # any client-visible failure counts
            err = f"{type(e).__name__}: {e}"
            if conn is not None:
                conn.close()
            conn = None
        t1 = time.monotonic()
        with lock:
            state["slowest_ms"] = max(state["slowest_ms"], (t1 - t0) * 1000)
            if err is not None:
                state["errors"] += 1
                if len(state["reasons"]) < 10:
                    state["reasons"].append(f"{t1 - start:.3f}s {err}")
                continue
            state["bodies"][body] = state["bodies"].get(body, 0) + 1
            last = state["last_ok"] if state["last_ok"] is not None else start
            state["longest_stall_ms"] = max(state["longest_stall_ms"], (t1 - last) * 1000)
            state["last_ok"] = max(t1, last)
            if args.ready_file and state["last_ok"] is not None:
                path, args.ready_file = args.ready_file, None
                open(path, "w").close()


threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
end = time.monotonic()
with lock:
    out = {
        "requests": state["requests"],
        "errors": state["errors"],
        "reasons": state["reasons"],
        "bodies": state["bodies"],
        "longest_stall_ms": round(state["longest_stall_ms"], 1),
        "slowest_ms": round(state["slowest_ms"], 1),
        "seconds": round(end - start, 2),
        "stopped_by": "signal" if stop.is_set() else ("max-requests" if state["requests"] >= args.max_requests else "max-seconds"),
    }
json.dump(out, sys.stdout)
print()
