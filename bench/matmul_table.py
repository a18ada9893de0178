#!/usr/bin/env python3
"""Runs build/bench/tiledraw_matmul_bench (5 repetitions of every case in random
interleaving, each at least 0.2 s of batches) and prints, per shape and thread
count, the median GOP/s of each backend and the ratios of our kernels to
oneDNN's s8 matmul. Usage: bench/matmul_table.py [BENCH_BINARY] [extra args]"""
import json
import subprocess
import sys
from collections import defaultdict

binary = sys.argv[1] if len(sys.argv) > 1 else "build/bench/tiledraw_matmul_bench"
args = [binary, "--benchmark_format=json", "--benchmark_repetitions=5",
        "--benchmark_enable_random_interleaving=true", "--benchmark_report_aggregates_only=true"] + sys.argv[2:]
report = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)

rates = defaultdict(dict)  # (M, K, N, threads) -> backend -> GOP/s
labels = {}
for b in report["benchmarks"]:
    if b.get("aggregate_name") != "median" or "OP/s" not in b or b["run_name"].startswith("overhead/"):
        continue
    name, *params = b["run_name"].split("/")[:2] + b["run_name"].split("/")[2:]
    fields = dict(p.split(":") for p in b["run_name"].split("/")[2:] if ":" in p and not p.startswith("min_time"))
    key = tuple(int(fields[f]) for f in ("M", "K", "N", "threads"))
    backend = "/".join(b["run_name"].split("/")[:2])
    rates[key][backend] = b["OP/s"] / 1e9
    labels[backend] = b.get("label", "")
cache_hit = [b for b in report["benchmarks"] if b["run_name"] == "program_cache_hit" and b.get("aggregate_name") == "median"]

columns = ["s8/amx", "s8/vnni", "s8/onednn", "s8/auto", "bf16/onednn", "f32/onednn"]
columns = [c for c in columns if any(c in r for r in rates.values())]
print("GOP/s (median of 5), activation quantization included for s8")
print(f"{'M':>5} {'K':>5} {'N':>5} {'thr':>3} " + " ".join(f"{c:>12}" for c in columns) +
      f" {'ours/onednn-s8':>15} {'ours/f32':>9} {'auto/best':>9}")
ratios = defaultdict(list)
for key in sorted(rates):
    r = rates[key]
    ours = max(r.get("s8/amx", 0), r.get("s8/vnni", 0))
    vs_s8 = ours / r["s8/onednn"] if r.get("s8/onednn") else float("nan")
    vs_f32 = ours / r["f32/onednn"] if r.get("f32/onednn") else float("nan")
    auto_vs_best = r.get("s8/auto", float("nan")) / max(ours, r.get("s8/onednn", 0))
    ratios["s8"].append(vs_s8)
    ratios["f32"].append(vs_f32)
    ratios["auto"].append(auto_vs_best)
    print(f"{key[0]:>5} {key[1]:>5} {key[2]:>5} {key[3]:>3} " +
          " ".join(f"{r.get(c, float('nan')):>12.1f}" for c in columns) +
          f" {vs_s8:>15.2f} {vs_f32:>9.2f} {auto_vs_best:>9.2f}")


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


print(f"median ratio ours/onednn-s8: {median(ratios['s8']):.2f}   ours/onednn-f32: {median(ratios['f32']):.2f}"
      f"   worst auto/best: {min(ratios['auto']):.2f}")
for c in columns:
    print(f"  {c}: {labels.get(c, '')}")
if cache_hit:
    print(f"program cache hit: {cache_hit[0]['real_time']:.1f} ns")
for b in report["benchmarks"]:
    if b["run_name"].startswith("overhead/") and b.get("aggregate_name") == "median":
        print(f"{b['run_name'].split('/M:')[0]} (16 x 64 x 64, 2 threads): {b['real_time'] / 1000:.2f} us per call")
