#!/usr/bin/env python3
"""A bounded load test of `tiledraw serve` (bundled model, 2 workers, queue of
32, 1M body limit): concurrent clients send a seeded random mix of valid
generations, refusable bodies and plain GETs. Every generation must come back
200 with the pixels `tiledraw generate` draws from the same settings, every
refusal must be a 4xx whose JSON "detail" names the field (or "body"), no
request may go unanswered, and afterwards nothing may be running or queued,
the resident memory must be about what it was after the warm-up, and the
server must stop cleanly.

    load_test.py TILEDRAW_BINARY [--clients 8] [--requests 20] [--seed 1] [--workers 2]"""
import argparse
import base64
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, image_pixels  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from png_pixels import read_png  # noqa: E402

T2I, I2I = "/sdapi/v1/txt2img", "/sdapi/v1/img2img"
PROMPTS = ["a white sneaker", "a dark ankle boot", "light grey trousers", "a striped shirt", "a red handbag", "a sandal"]
MAX_BODY = 1 << 20
# Memory may grow by this much over the run: max(20 MiB, 20 %) of the RSS after the warm-up.
RSS_MARGIN_KIB, RSS_MARGIN_FRACTION = 20 * 1024, 0.20


def valid_pool(rng, samplers, schedulers, size=10):
    """`size` distinct generation bodies, with the CLI flags that draw the same images."""
    pool, seen = [], set()
    while len(pool) < size:
        sampler, scheduler = rng.choice(samplers), rng.choice(schedulers)
        body = {"prompt": rng.choice(PROMPTS), "seed": rng.randrange(1 << 31), "steps": rng.randint(2, 8),
                "batch_size": rng.randint(1, 2), "sampler_name": sampler["name"], "scheduler": scheduler["name"]}
        flags = ["-p", body["prompt"], "--seed", str(body["seed"]), "--steps", str(body["steps"]), "-b", str(body["batch_size"]),
                 "--sampler", sampler["aliases"][0], "--scheduler", scheduler["aliases"][0]]
        if rng.random() < 0.3:
            body["cfg_scale"] = rng.choice([1.0, 2.5, 6.0])
            flags += ["--cfg-scale", str(body["cfg_scale"])]
        key = json.dumps(body, sort_keys=True)
        if key not in seen:
            seen.add(key)
            pool.append((body, flags))
    return pool


def expected_images(tiledraw, flags, workdir, name):
    """What `tiledraw generate` draws: [(w, h, c, pixels)] for the batch."""
    out = os.path.join(workdir, name + ".png")
    subprocess.run([tiledraw, "generate", "-q", "-o", out, *flags], check=True)
    batch = sorted(f for f in os.listdir(workdir) if f.startswith(name + "-") and f.endswith(".png"))
    return [read_png(os.path.join(workdir, f)) for f in batch] if batch else [read_png(out)]


def invalid_requests(valid_body):
    """(method, path, JSON body or None, raw bytes or None, status, word the detail must hold)."""
    v = valid_body
    return [
        ("POST", T2I, None, b'{"prompt": "a dress", "steps": ', 400, "body"),
        ("POST", T2I, None, b"\xff\xfe{}", 400, "body"),
        ("POST", T2I, [1, 2, 3], None, 400, "body"),
        ("POST", T2I, "a white sneaker", None, 400, "body"),
        ("POST", T2I, None, b'{"prompt": "' + b"x" * MAX_BODY + b'"}', 413, "body"),
        ("POST", T2I, {**v, "steps": "ten"}, None, 422, "steps"),
        ("POST", T2I, {**v, "steps": -3}, None, 422, "steps"),
        ("POST", T2I, {**v, "steps": 2.5}, None, 422, "steps"),
        ("POST", T2I, {**v, "sampler_name": "Euler b"}, None, 422, "sampler_name"),
        ("POST", T2I, {**v, "scheduler": "cosine"}, None, 422, "scheduler"),
        ("POST", T2I, {**v, "width": 7}, None, 422, "width"),
        ("POST", T2I, {**v, "width": 100000}, None, 422, "width"),
        ("POST", T2I, {**v, "height": 100}, None, 422, "height"),
        ("POST", T2I, {**v, "batch_size": 0}, None, 422, "batch_size"),
        ("POST", T2I, {**v, "batch_size": 1000}, None, 422, "batch_size"),
        ("POST", T2I, {**v, "seed": "lucky"}, None, 422, "seed"),
        ("POST", T2I, {**v, "cfg_scale": "high"}, None, 422, "cfg_scale"),
        ("POST", T2I, {**v, "prompt": 5}, None, 422, "prompt"),
        ("POST", T2I, {**v, "override_settings": []}, None, 422, "override_settings"),
        ("POST", I2I, {**v, "init_images": ["%%%not base64"]}, None, 422, "init_images"),
        ("POST", I2I, {**v, "init_images": [base64.b64encode(b"GIF89a not a png").decode()]}, None, 422, "init_images"),
        ("POST", I2I, {**v, "init_images": "not a list"}, None, 422, "init_images"),
        ("POST", "/sdapi/v1/txt2vid", v, None, 404, "/sdapi/v1/txt2vid"),
        ("GET", "/sdapi/v1/nothing", None, None, 404, "/sdapi/v1/nothing"),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tiledraw")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--seed", type=int, default=1, help="of the random mix")
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--sanitized", action="store_true",
                        help="the binary runs under a sanitizer, whose allocator keeps freed memory (ASan's "
                             "quarantine, 256 MiB) or shadows it: resident memory says nothing, and leaks are "
                             "LeakSanitizer's to find at exit")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    failures = []

    def fail(what):
        if len(failures) < 15:
            print("FAIL  " + what)
        elif len(failures) == 15:
            print("FAIL  ... (only the first 15 failures are shown)")
        failures.append(what)

    def died(when):
        code = server.process.poll()
        if code is None:
            return False
        fail(f"tiledraw serve died {when}: exit code {code}"
             + (f" ({signal.Signals(-code).name})" if code < 0 else "") + f", stderr: {server.process.stderr.read()[-500:]}")
        return True

    server = Server(args.tiledraw, "--workers", str(args.workers), "--queue", "32", "--max-body", "1M")
    try:
        samplers, schedulers = server.get("/sdapi/v1/samplers")[2], server.get("/sdapi/v1/schedulers")[2]
        pool = valid_pool(rng, samplers, schedulers)
        with tempfile.TemporaryDirectory(prefix="tiledraw-load-") as workdir:
            expected = [expected_images(args.tiledraw, flags, workdir, f"pool{k}") for k, (_, flags) in enumerate(pool)]
        print(f"{len(pool)} distinct generations drawn by tiledraw generate "
              f"({sum(len(e) for e in expected)} images; samplers {sorted({b['sampler_name'] for b, _ in pool})}, "
              f"schedulers {sorted({b['scheduler'] for b, _ in pool})}) in {time.monotonic() - started:.1f} s")

        # Warm-up: both workers generate before the memory is measured.
        def warm(k):
            for body, _ in pool[k::2][:3]:
                try:
                    server.post(T2I, body)
                except OSError:
                    return
        warmers = [threading.Thread(target=warm, args=(k,)) for k in range(2)]
        for t in warmers:
            t.start()
        for t in warmers:
            t.join()
        if died("during the warm-up"):
            return 1
        rss_before = server.rss_kib()

        # Each client's list of requests is drawn up front from the seeded generator:
        # half generations, 40 % refusals, 10 % GETs, in random order; the pool's
        # bodies and the refusals are dealt from shuffled decks, so that each is
        # sent about equally often (every one, unless there are fewer requests).
        invalid = invalid_requests(pool[0][0])
        decks = {"valid": [], "invalid": []}

        def deal(kind, size):
            if not decks[kind]:
                decks[kind] = rng.sample(range(size), size)
            return decks[kind].pop()
        plans = []
        for _ in range(args.clients):
            plan = []
            for _ in range(args.requests):
                roll = rng.random()
                if roll < 0.5:
                    k = deal("valid", len(pool))
                    plan.append(("valid", k, ("POST", T2I, pool[k][0], None)))
                elif roll < 0.9:
                    k = deal("invalid", len(invalid))
                    plan.append(("invalid", k, invalid[k][:4]))
                else:
                    plan.append(("get", 0, ("GET", rng.choice(["/health", "/sdapi/v1/progress", "/sdapi/v1/sd-models"]), None, None)))
            plans.append(plan)
        kinds_sent = {kind: len({k for plan in plans for c, k, _ in plan if c == kind}) for kind in ("valid", "invalid")}

        results = []  # (kind, index, status, headers, answer) or (kind, index, None, None, exception)
        lock = threading.Lock()

        def client(plan):
            for kind, k, (method, path, body, raw) in plan:
                try:
                    status, headers, answer = server.request(method, path, body, raw=raw)
                    outcome = (kind, k, status, headers, answer)
                except Exception as e:  # a lost request: reset, refused, timed out
                    outcome = (kind, k, None, None, e)
                with lock:
                    results.append(outcome)
        run_start = time.monotonic()
        clients = [threading.Thread(target=client, args=(plan,)) for plan in plans]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        run_seconds = time.monotonic() - run_start

        sent = args.clients * args.requests
        lost = [r for r in results if r[2] is None]
        if len(results) != sent or lost:
            fail(f"{sent} requests, {len(results)} answered, {len(lost)} lost: {[(r[0], r[1], repr(r[4])) for r in lost[:5]]}")
        generations = images = refusals = gets = 0
        for kind, k, status, headers, answer in results:
            if status is None:
                continue
            if kind == "valid":
                body = pool[k][0]
                if status != 200 or not isinstance(answer, dict):
                    fail(f"{body}: {status} {str(answer)[:200]}")
                    continue
                got = [image_pixels(b64) for b64 in answer.get("images", [])]
                if got != expected[k]:
                    fail(f"{body}: {len(got)} images, not the {len(expected[k])} tiledraw generate draws "
                         f"(the first differs: {not got or got[0] != expected[k][0]})")
                    continue
                generations += 1
                images += len(got)
            elif kind == "invalid":
                method, path, body, raw, want_status, word = invalid[k]
                detail = answer.get("detail") if isinstance(answer, dict) else None
                what = f"{method} {path} {str(body if raw is None else raw[:40])[:90]}"
                if status != want_status or not isinstance(detail, str) or word not in detail:
                    fail(f"{what}: want {want_status} with a detail naming '{word}', got {status}: {str(answer)[:200]}")
                    continue
                refusals += 1
            else:
                if status != 200:
                    fail(f"GET: {status} {str(answer)[:200]}")
                    continue
                gets += 1

        rss_after = None
        if not died("during the run"):
            progress = server.get("/sdapi/v1/progress")[2]
            if progress["running"] != 0 or progress["queued"] != 0 or progress["state"]["job_count"] != 0:
                fail(f"after the run /sdapi/v1/progress still shows work: running {progress['running']}, "
                     f"queued {progress['queued']}, job_count {progress['state']['job_count']}")
            rss_after = server.rss_kib()
            limit = rss_before + max(RSS_MARGIN_KIB, int(rss_before * RSS_MARGIN_FRACTION))
            print(f"RSS after the warm-up {rss_before / 1024:.1f} MiB, after the run {rss_after / 1024:.1f} MiB "
                  + ("(not checked under a sanitizer)" if args.sanitized else
                     f"(allowed up to {limit / 1024:.1f} MiB: + max(20 MiB, 20 %))"))
            if rss_after > limit and not args.sanitized:
                fail(f"RSS grew from {rss_before / 1024:.1f} MiB to {rss_after / 1024:.1f} MiB, over {limit / 1024:.1f} MiB")
    finally:
        try:
            server.stop()
            stopped = "yes"
        except AssertionError as e:
            fail(str(e))
            stopped = "no"

    rss = f"{rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB" if rss_after is not None else "not measured"
    print(f"load test: {sent} requests from {args.clients} clients in {run_seconds:.1f} s ({sent / run_seconds:.1f}/s): "
          f"{generations} generations ({images} images, {kinds_sent['valid']} distinct) equal to tiledraw generate, "
          f"{refusals} refusals naming their field ({kinds_sent['invalid']} of {len(invalid)} kinds), {gets} GETs, "
          f"{len(lost)} lost; RSS {rss}; stopped cleanly: {stopped}; total {time.monotonic() - started:.1f} s")
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
