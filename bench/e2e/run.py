#!/usr/bin/python3
"""tiledraw against PyTorch on the same CPU, the same weights, the same run.

  /usr/bin/python3 bench/e2e/run.py --tiledraw build/tiledraw --dir DIR
      [--sizes 256,512] [--threads N] [--repeats R] [--runs N] [--generate-steps 50] [--tiny]

DIR receives the random DiT-XL/2 and SD VAE decoder (tools/make_bench_models.py)
and their 8-bit S conversions, made once and reused. For each size (batch 2, as
with guidance) it times one denoising forward pass: tiledraw's default path
(8-bit S on `auto`), 8-bit S on oneDNN, and its float path, against PyTorch
fp32, bf16 autocast and dynamically quantized int8 linears (onednn engine),
the two sides interleaved, each in its own process; then one whole generation
(DDIM steps plus the VAE decode) on each side. Outputs are checked against
PyTorch fp32 before any time is reported. --tiny runs a small model quickly
(the test suite's smoke run)."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import dit  # noqa: E402
import st_io  # noqa: E402
import vae  # noqa: E402

TILEDRAW_PATHS = [("8-bit S, auto", ["--accel", "auto"], "8bit"), ("8-bit S, onednn", ["--accel", "onednn"], "8bit"),
                  ("float path", [], "f16")]
TORCH_MODES = ["fp32", "bf16", "int8"]
FLOAT_BOUND = 1e-3


def run_child(command):
    """Runs a process; returns (stdout, stderr, wall seconds)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr}")
    return stdout, stderr, wall


def cpu_seconds(command):
    """Wall and CPU seconds (user + system) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def make_models(args):
    names = {"dit": "dit-xl-2-256-random", "vae": "sd-vae-decoder-random"}
    if args.tiny:
        names = {"dit": "dit-tiny-random", "vae": "vae-tiny-random"}
    paths = {f"{k}-{kind}": f"{args.dir}/{v}-{'f16' if kind == 'f16' else '8bit-s'}.safetensors"
             for k, v in names.items() for kind in ("f16", "8bit")}
    if not os.path.exists(paths["dit-f16"]):
        os.makedirs(args.dir, exist_ok=True)
        if args.tiny:
            config = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4,
                          num_classes=1000, learn_sigma=True)
            model = dit.randomize(dit.DiT(**config), seed=0, scale=0.5)
            st_io.save(paths["dit-f16"], {k: v.half() for k, v in dit.state_dict(model).items()},
                       {"config": json.dumps(config)})
            decoder = vae.randomize(vae.VaeDecoder(block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=8), 1)
            st_io.save(paths["vae-f16"], {k: v.half() for k, v in decoder.state_dict().items()},
                       {"config": json.dumps(decoder.config)})
        else:
            subprocess.run(["/usr/bin/python3", f"{ROOT}/tools/make_bench_models.py", args.dir], check=True)
    for kind in ("dit", "vae"):
        if not os.path.exists(paths[f"{kind}-8bit"]):
            subprocess.run([args.tiledraw, "convert", "-q", paths[f"{kind}-f16"], paths[f"{kind}-8bit"]], check=True,
                           stdout=subprocess.DEVNULL)
    return paths


def tiledraw_forward(args, model, flags, inputs, out):
    _, stderr, _ = run_child([args.tiledraw, "--threads", str(args.threads), *flags, "forward", "-m", model,
                              "--inputs", inputs, "-o", out, "--runs", str(args.runs)])
    m = re.search(r"load ([0-9.]+) s, first run ([0-9.]+) s, median ([0-9.]+) s .* arena ([0-9.]+ \w+) "
                  r"\(without reuse [0-9.]+ \w+\), peak resident ([0-9.]+ \w+)", stderr)
    return {"load": float(m[1]), "median": float(m[3]), "arena": m[4], "peak": m[5]}


def torch_forward(args, model, mode, inputs, out):
    stdout, _, _ = run_child(["/usr/bin/python3", f"{HERE}/torch_side.py", "--model", model, "--mode", mode,
                              "--threads", str(args.threads), "--inputs", inputs, "--out", out, "--runs", str(args.runs)])
    result = json.loads(stdout)
    result["peak"] = f"{result['peak_resident'] / 2**30:.1f} GiB"
    return result


def compare(out, reference):
    a, b = st_io.load(out)[0]["out"], st_io.load(reference)[0]["out"]
    return ((a - b).abs().max() / b.abs().max()).item(), ((a - b).norm() / b.norm()).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiledraw", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--generate-steps", type=int, default=50)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        args.sizes, args.repeats, args.runs, args.generate_steps = "64", 1, 1, 3
    paths = make_models(args)
    failures = []
    print(f"threads {args.threads}, batch 2 (guidance), medians of {args.runs} runs x {args.repeats} repeats")

    # auto's choices per weight shape live in a cache of the benchmark's own:
    # the first load times the candidates; the table's loads remember them.
    cache = f"{args.dir}/auto-choices"
    os.environ["TILEDRAW_CACHE_DIR"] = cache
    if os.path.exists(f"{cache}/auto-choices.json"):
        os.remove(f"{cache}/auto-choices.json")
    first_size = int(args.sizes.split(",")[0])
    first_inputs = f"{args.dir}/inputs-first.safetensors"
    st_io.save(first_inputs, {"x": torch.zeros((2, 4, first_size // 8, first_size // 8)), "t": torch.tensor([500, 500]),
                              "y": torch.tensor([207, 1000])})
    first = tiledraw_forward(args, paths["dit-8bit"], ["--accel", "auto"], first_inputs,
                             f"{args.dir}/out-first.safetensors")
    print(f"first load on auto, timing its candidates per weight shape: {first['load']:.2f} s")

    for size in [int(s) for s in args.sizes.split(",")]:
        latent = size // 8
        inputs = f"{args.dir}/inputs-{size}.safetensors"
        g = torch.Generator().manual_seed(size)
        st_io.save(inputs, {"x": torch.randn((2, 4, latent, latent), generator=g), "t": torch.tensor([500, 500]),
                            "y": torch.tensor([207, 1000])})
        results = {}
        for repeat in range(args.repeats):  # interleaved so that drift hits both sides
            for label, flags, kind in TILEDRAW_PATHS:
                r = tiledraw_forward(args, paths[f"dit-{kind}"], flags, inputs, f"{args.dir}/out-{label}.safetensors")
                results.setdefault(("tiledraw", label), []).append(r)
            for mode in TORCH_MODES:
                r = torch_forward(args, paths["dit-f16"], mode, inputs, f"{args.dir}/out-torch-{mode}.safetensors")
                results.setdefault(("pytorch", mode), []).append(r)

        reference = f"{args.dir}/out-torch-fp32.safetensors"
        print(f"\n{size} x {size} ({latent} x {latent} latents, {(latent // 2) ** 2} tokens)")
        print(f"{'side':9} {'path':16} {'s/step':>8} {'load s':>7} {'peak':>9} {'arena':>10} {'max err':>9} {'rms err':>9}")
        medians = {}
        for (side, label), runs in results.items():
            medians[(side, label)] = statistics.median(r["median"] for r in runs)
            out = f"{args.dir}/out-{label}.safetensors" if side == "tiledraw" else f"{args.dir}/out-torch-{label}.safetensors"
            max_err, rms_err = compare(out, reference)
            if side == "tiledraw" and label == "float path" and max_err > FLOAT_BOUND:
                failures.append(f"{size}: float path differs from PyTorch fp32 by {max_err:.2e}")
            if rms_err > 0.1:
                failures.append(f"{size}: {side} {label} differs from PyTorch fp32 by {rms_err:.2e} RMS")
            print(f"{side:9} {label:16} {medians[(side, label)]:8.3f} {statistics.median(r['load'] for r in runs):7.2f} "
                  f"{runs[-1]['peak']:>9} {runs[-1].get('arena', '-'):>10} {max_err:9.2e} {rms_err:9.2e}")
        ours = medians[("tiledraw", "8-bit S, auto")]
        print("ratios (PyTorch s/step / tiledraw default s/step): " +
              ", ".join(f"{mode} {medians[('pytorch', mode)] / ours:.2f}x" for mode in TORCH_MODES))

    size = 256 if not args.tiny else 64
    print(f"\nwhole generation at {size} x {size}: {args.generate_steps} DDIM steps, guidance 4, one VAE decode")
    wall, cpu, peak = cpu_seconds([args.tiledraw, "--threads", str(args.threads), "generate", "-q",
                                   "-m", paths["dit-8bit"], "--vae", paths["vae-8bit"], "-W", str(size), "-H", str(size),
                                   "--steps", str(args.generate_steps), "--class", "207", "-o", f"{args.dir}/e2e.png"])
    print(f"tiledraw (8-bit S, auto): {wall:.1f} s, {cpu:.1f} CPU-s, peak {peak / 2**30:.1f} GiB")
    for mode in ("fp32", "bf16"):
        wall, cpu, peak = cpu_seconds(["/usr/bin/python3", f"{HERE}/torch_side.py", "--model", paths["dit-f16"],
                                       "--vae", paths["vae-f16"], "--mode", mode, "--threads", str(args.threads),
                                       "--size", str(size), "--steps", str(args.generate_steps)])
        print(f"pytorch {mode}: {wall:.1f} s, {cpu:.1f} CPU-s, peak {peak / 2**30:.1f} GiB")
    if failures:
        print("FAILED:", *failures, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
