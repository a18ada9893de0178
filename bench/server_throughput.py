#!/usr/bin/env python3
"""Throughput of `tiledraw serve` on the bundled 32x32 model: requests per
minute with --workers 1 and --workers 2, concurrent clients keeping the
workers busy with one fixed request (20 steps, batch 1, one seed, so every
answer must be the same image); then the queue under overload: --workers 1
--queue 2 and 16 clients at once, counting the 200s and the 503s with
Retry-After, and timing GET /health while the queue is full.

    server_throughput.py TILEDRAW_BINARY [--seconds 20] [--clients 4]

Prints its results; it writes nothing."""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "server"))
from harness import Server, image_pixels  # noqa: E402

T2I = "/sdapi/v1/txt2img"
REQUEST = {"prompt": "a white sneaker", "seed": 1234, "steps": 20, "batch_size": 1}


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def throughput(tiledraw, workers, clients, seconds):
    """(completed in the window, per minute, median s, p90 s, wrong images, errors, how the server ended)."""
    server = Server(tiledraw, "--workers", str(workers), "--queue", "16")
    lock = threading.Lock()
    latencies, wrong, errors = [], [0], []

    def post():
        try:
            return server.post(T2I, REQUEST)
        except OSError as e:
            with lock:
                errors.append(repr(e))
            return None, None, None
    status, _, answer = post()
    if status != 200:
        server.stop()
        raise RuntimeError(f"--workers {workers}: the first request failed: {status} {answer} {errors}")
    reference = image_pixels(answer["images"][0])
    warm = [threading.Thread(target=post) for _ in range(workers)]
    for t in warm:
        t.start()
    for t in warm:
        t.join()

    deadline = time.monotonic() + seconds

    def client():
        while time.monotonic() < deadline and server.process.poll() is None:
            sent = time.monotonic()
            status, _, answer = post()
            done = time.monotonic()
            with lock:
                if status is None:
                    continue
                if status != 200:
                    errors.append(f"{status} {str(answer)[:100]}")
                elif done <= deadline:  # only what finished inside the window counts
                    latencies.append(done - sent)
                    if image_pixels(answer["images"][0]) != reference:
                        wrong[0] += 1
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        server.stop()
        ended = "stopped cleanly"
    except AssertionError as e:
        ended = str(e).strip()
    median = statistics.median(latencies) if latencies else float("nan")
    return len(latencies), len(latencies) * 60.0 / seconds, median, percentile(latencies, 0.9), wrong[0], errors, ended


def overload(tiledraw, clients=16):
    with Server(tiledraw, "--workers", "1", "--queue", "2") as server:
        server.post(T2I, REQUEST)  # warm
        barrier = threading.Barrier(clients + 1)
        answers, health = [], []
        lock = threading.Lock()
        finished = threading.Event()

        def client():
            barrier.wait()
            sent = time.monotonic()
            status, headers, answer = server.post(T2I, REQUEST)
            with lock:
                answers.append((status, headers, answer, time.monotonic() - sent))

        def health_poller():
            barrier.wait()
            time.sleep(0.01)  # let the burst arrive first
            while not finished.is_set():
                sent = time.monotonic()
                status, _, body = server.get("/health")
                elapsed = time.monotonic() - sent
                with lock:
                    health.append((status, elapsed, body.get("running", 0) + body.get("queued", 0)))
                time.sleep(0.02)
        threads = [threading.Thread(target=client) for _ in range(clients)]
        poller = threading.Thread(target=health_poller)
        for t in threads + [poller]:
            t.start()
        for t in threads:
            t.join()
        finished.set()
        poller.join()
    ok = [a for a in answers if a[0] == 200]
    busy = [a for a in answers if a[0] == 503 and a[1].get("Retry-After")]
    other = [(a[0], str(a[2])[:80]) for a in answers if a not in ok and a not in busy]
    busy_health = [h for h in health if h[2] > 0]  # answered while jobs were running or queued
    return ok, busy, other, health, busy_health


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tiledraw")
    parser.add_argument("--seconds", type=float, default=20.0, help="of each throughput run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients in the throughput runs")
    args = parser.parse_args()

    info = subprocess.run([args.tiledraw, "info"], capture_output=True, text=True, check=True).stdout.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    print(f"tiledraw serve throughput, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"{model}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    for line in info[:8]:
        print("  " + line)
    print(f"\nbundled model (32x32), txt2img {REQUEST['steps']} steps, batch 1, {args.clients} clients, {args.seconds:g} s per row")
    print(f"{'workers':>7}  {'requests':>8}  {'req/min':>8}  {'median s':>8}  {'p90 s':>6}  {'wrong images':>12}  errors")
    notes = []
    for workers in (1, 2):
        done, per_minute, median, p90, wrong, errors, ended = throughput(args.tiledraw, workers, args.clients, args.seconds)
        print(f"{workers:>7}  {done:>8}  {per_minute:>8.0f}  {median:>8.3f}  {p90:>6.3f}  {wrong:>12}  {len(errors)}"
              + (f" (first: {errors[0][:60]})" if errors else ""))
        if ended != "stopped cleanly":
            notes.append(f"--workers {workers}: the server did not stop cleanly: {ended[:200]}")
        if wrong:
            notes.append(f"--workers {workers}: {wrong} answers differ from the first answer to the same request")
    for note in notes:
        print("  NOTE " + note)

    ok, busy, other, health, busy_health = overload(args.tiledraw)
    print("\noverload: --workers 1 --queue 2, 16 clients at once")
    print(f"  200: {len(ok)}, 503 with Retry-After: {len(busy)}, other: {len(other)}{' ' + str(other) if other else ''}")
    if ok:
        print(f"  the 200s: median latency {statistics.median(a[3] for a in ok):.3f} s, the slowest {max(a[3] for a in ok):.3f} s")
    if busy:
        print(f"  the 503s: median latency {statistics.median(a[3] for a in busy) * 1000:.1f} ms "
              f"(Retry-After: {busy[0][1]['Retry-After']} s)")
    times = [h[1] * 1000 for h in busy_health]
    if times:
        print(f"  GET /health while jobs were running or queued: {len(times)} answers, all 200: "
              f"{all(h[0] == 200 for h in busy_health)}, median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")
    else:
        print(f"  GET /health: no answer came while jobs were running ({len(health)} polls)")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
