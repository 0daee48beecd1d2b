"""Load on `digitlab serve`: N predictions from C concurrent clients on loopback; throughput, p50/p99, errors.

Claim checked (issue 5): 10000 predictions from 32 concurrent clients at >= 400 requests/s with p99 < 50 ms and
zero errors, for the default (shipped) model, on 2 CPU cores. The server runs as its own process, started the way a
user starts it; the load generator is this process, on the same 2 cores (its CPU time is reported beside the
server's). The client is a minimal HTTP/1.1 keep-alive client on asyncio streams, so that as much of the machine
as possible goes to the server; every answer is parsed and its label checked against the MNIST label.

Run: python -m benchmarks.serve_load [--payload json|png] [--requests 10000] [--concurrency 32] [--runs 3]
Each run starts a fresh server; the record holds every run and their medians (the machine is noisy, +-40%), and
the target is judged on the medians. Writes benchmarks/results/serve_load.json (serve_load_png.json for png).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digitlab.data import load_mnist

from .common import write_record

MNIST_TEST = 256  # distinct test digits cycled through as request bodies


def payloads(kind: str) -> tuple[list[tuple[str, bytes]], list[int]]:
    """(content type, body) per MNIST test digit, and its label. json: 0..255 pixels; png: a 280x280 black-on-white
    drawing-like PNG, what the page sends."""
    valid = load_mnist()["valid"]
    images, labels = valid.images[:MNIST_TEST].numpy(), valid.labels[:MNIST_TEST].tolist()
    out = []
    for im in images:
        if kind == "json":
            out.append(("application/json", json.dumps({"pixels": im.tolist()}).encode()))
        else:
            buf = io.BytesIO()
            Image.fromarray(255 - im).resize((280, 280), Image.Resampling.BILINEAR).save(buf, "PNG")
            boundary = "digitlabbench"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
                    f"Content-Type: image/png\r\n\r\n").encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
            out.append((f"multipart/form-data; boundary={boundary}", body))
    return out, labels


def request_bytes(host: str, port: int, content_type: str, body: bytes) -> bytes:
    return (f"POST /api/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def one(reader, writer, req: bytes) -> tuple[int, bytes]:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    return status, await reader.readexactly(length)


async def load(host: str, port: int, reqs: list[bytes], labels: list[int] | None, n: int, concurrency: int,
               deadline_s: float, timeout_s: float) -> dict:
    """n requests from `concurrency` keep-alive connections; stops at the deadline whatever is left."""
    latencies, errors, wrong, next_i = [], [], [], 0
    start = time.perf_counter()

    async def client():
        nonlocal next_i
        reader, writer = await asyncio.open_connection(host, port)
        while next_i < n and time.perf_counter() - start < deadline_s:
            i, next_i = next_i, next_i + 1
            t0 = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(one(reader, writer, reqs[i % len(reqs)]), timeout_s)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, AttributeError) as e:
                errors.append(f"{e.__class__.__name__}: {e}")
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"HTTP {status}: {body[:200]!r}")
            elif labels and (got := json.loads(body).get("label")) != labels[i % len(labels)]:
                wrong.append((i % len(labels), labels[i % len(labels)], got))
        writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"completed": len(latencies), "errors": len(errors), "error_samples": errors[:5], "wall_s": round(wall, 3),
            "throughput_rps": round(len(latencies) / wall, 1),
            "latency_ms": {q: round(float(np.percentile(ms, p)), 2) for q, p in
                           (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} if len(ms) else {},
            "wrong_labels": len(wrong), "wrong_samples": sorted(set(wrong))[:10]}


def start_server(model: str | None, threads: int) -> tuple[subprocess.Popen, str, int]:
    cmd = [sys.executable, "-m", "digitlab", "serve", *([model] if model else []), "--port", "0",
           "--threads", str(threads)]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "NO_COLOR": "1"})
    line = proc.stdout.readline()
    m = re.search(r"http://([\d.]+):(\d+)/", line)
    if not m:
        proc.kill()
        log.seek(0)
        raise SystemExit(f"the server did not start: {line!r} {log.read().decode()[-2000:]}")
    return proc, m.group(1), int(m.group(2))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def get_json(host: str, port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    body = await reader.readexactly(int(re.search(rb"(?i)content-length: *(\d+)", head).group(1)))
    writer.close()
    return json.loads(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--payload", choices=["json", "png"], default="json")
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--deadline", type=float, default=120.0, help="stop after this many seconds whatever is left")
    ap.add_argument("--timeout", type=float, default=10.0, help="a request slower than this counts as an error")
    ap.add_argument("--threads", type=int, default=1, help="the server's --threads (PyTorch threads)")
    ap.add_argument("--model", default=None, help="a run folder or .safetensors (default: the shipped model)")
    ap.add_argument("--runs", type=int, default=3, help="runs, each on a fresh server; medians are reported")
    args = ap.parse_args()

    bodies, labels = payloads(args.payload)
    runs = []
    for i in range(args.runs):
        runs.append(one_run(args, bodies, labels))
        print(f"run {i + 1}: {summary(runs[-1])}", flush=True)
    med = {k: float(np.median([r[k] for r in runs])) for k in ("throughput_rps", "server_cpu_s", "client_cpu_s",
                                                                 "mean_batch", "wall_s")}
    result = {"completed": sum(r["completed"] for r in runs), "errors": sum(r["errors"] for r in runs),
              "wrong_labels": sum(r["wrong_labels"] for r in runs), **med,
              "latency_ms": {q: float(np.median([r["latency_ms"][q] for r in runs])) for q in ("p50", "p90", "p99")}
              | {"max": max(r["latency_ms"]["max"] for r in runs)}}
    ok = result["errors"] == 0 and result["completed"] == args.requests * args.runs \
        and result["throughput_rps"] >= 400 and result["latency_ms"]["p99"] < 50
    record = {"claim": f"{args.requests} predictions ({args.payload}) from {args.concurrency} concurrent clients on "
                       f"loopback: >= 400 req/s, p99 < 50 ms, zero errors (2 CPU cores shared by server and client)",
              "target_met": ok, "payload": args.payload, "requests": args.requests, "concurrency": args.concurrency,
              "server_threads": args.threads, "model": args.model or "digitlab/pretrained/digits-cnn.safetensors",
              "command": " ".join(["python -m benchmarks.serve_load", *sys.argv[1:]]),
              "medians_of_runs": args.runs, **result, "runs": runs}
    path = write_record("serve_load" if args.payload == "json" else f"serve_load_{args.payload}", record)
    print(f"{args.payload}, median of {args.runs} runs: {summary(result)}; target {'met' if ok else 'MISSED'}; "
          f"wrote {path}")


def summary(r: dict) -> str:
    lat = r["latency_ms"]
    return (f"{r['completed']} requests, {r['throughput_rps']:.1f} req/s, p50 {lat.get('p50')} ms, "
            f"p99 {lat.get('p99')} ms, errors {r['errors']}, wrong labels {r['wrong_labels']}, mean batch "
            f"{r['mean_batch']}, CPU s server {r['server_cpu_s']} / client {r['client_cpu_s']}")


def one_run(args, bodies: list[tuple[str, bytes]], labels: list[int]) -> dict:
    """Start a server, warm it up, measure, stop it."""
    proc, host, port = start_server(args.model, args.threads)
    try:
        reqs = [request_bytes(host, port, ct, body) for ct, body in bodies]
        asyncio.run(load(host, port, reqs, labels, args.warmup, args.concurrency, 60, args.timeout))
        cpu0, own0 = cpu_seconds(proc.pid), resource.getrusage(resource.RUSAGE_SELF)
        result = asyncio.run(load(host, port, reqs, labels, args.requests, args.concurrency, args.deadline,
                                  args.timeout))
        cpu1, own1 = cpu_seconds(proc.pid), resource.getrusage(resource.RUSAGE_SELF)
        health = asyncio.run(get_json(host, port, "/api/health"))
    finally:
        proc.terminate()
        proc.wait(10)
    client_cpu = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    return result | {"server_cpu_s": round(cpu1 - cpu0, 2), "client_cpu_s": round(client_cpu, 2),
                     "mean_batch": round(health["predictions"] / max(health["batches"], 1), 2)}


if __name__ == "__main__":
    main()
