#!/usr/bin/python3
"""Stable Diffusion 1.5 in tiledraw against PyTorch on the same CPU, the same
weights, the same run: the figures of issue 15's benchmark.

  /usr/bin/python3 bench/sd/run.py --tiledraw build/tiledraw --model DIR/sd15-random-f16.safetensors
      --clip CLIP_DIR [--dir WORK_DIR] [--sizes 512,768] [--threads 2] [--repeats 2] [--runs 3]
      [--torch-runs 1] [--steps 20] [--tiny]

--model is the random SD 1.5 stand-in in F16 (`tools/make_bench_models.py DIR
sd15`); its 8-bit S conversion is the same name with `8bit-s` for `f16`, made
by `tiledraw convert` when missing. --clip is the CLIP vocabulary (the model
carries none). tiledraw runs on the 8-bit S file; PyTorch runs the reference
UNet of tools/reference/unet.py on the F16 file's weights in fp32 and in bf16
autocast, each in its own process, interleaved with tiledraw so that drift
hits both sides. Before any time is reported, PyTorch's outputs are compared
with tiledraw's (relative RMS; 8-bit S rounding makes a few percent). Measured:

- the UNet's guided step (batch 2) at each size: tiledraw `forward --component
  unet --runs N` (median), PyTorch fp32 and bf16 (median of --torch-runs; its
  peak memory includes reading the whole checkpoint file);
- text encoding of a prompt and the empty prompt (batch 2), VAE decode and
  encode at the first size, through `forward`;
- a whole txt2img generation at the first size (--steps steps, guidance):
  load (process start to the first step, as `generate` prints it), wall time,
  CPU seconds and peak resident memory (the kernel's rusage of the process),
  and its profile by op (`generate --profile`).

--tiny writes a tiny random SD 1.x model (tools/reference/sd_model.py) and
runs everything in seconds: the test suite's smoke run (--model is then where
the model is written)."""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import st_io  # noqa: E402
from sd_model import RandomSd  # noqa: E402

TORCH_MODES = ["fp32", "bf16"]
# 8-bit S weights and activations against float: 4.5-4.8% RMS on the tiny
# UNets (tests/reference/test_sd.py bounds it at 8%); far more means a bug.
AGREEMENT_BOUND = 0.15
BOS, EOS = 49406, 49407


class Bench:
    def __init__(self, args):
        self.args = args
        self.commands = []
        self.failures = []

    def run(self, command, timed=False):
        """Runs a process; returns (stdout, stderr). The commands of timed runs
        are listed with the figures."""
        if timed and command not in self.commands:
            self.commands.append(command)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
        return result.stdout, result.stderr

    def tiledraw(self, *args):
        return [self.args.tiledraw, "--threads", str(self.args.threads), *args]

    def forward(self, model, component, inputs, out, runs):
        """`tiledraw forward --runs`: load, median seconds, arena and peak as it
        prints them (nothing when it runs only once)."""
        _, stderr = self.run(self.tiledraw("forward", "-m", model, "--component", component, "--inputs", inputs,
                                           "-o", out, "--runs", str(runs)), timed=runs > 0)
        m = re.search(r"load ([0-9.]+) s, first run ([0-9.]+) s, median ([0-9.]+) s .* arena ([0-9.]+ \w+) "
                      r"\(without reuse ([0-9.]+ \w+)\), peak resident ([0-9.]+ \w+)", stderr)
        return {"load": float(m[1]), "median": float(m[3]), "arena": f"{m[4]} / {m[5]}", "peak": m[6]} if m else None

    def torch_forward(self, mode, inputs, out, timed=True):
        stdout, _ = self.run(["/usr/bin/python3", f"{HERE}/torch_side.py", "--model", self.args.model, "--mode", mode,
                              "--threads", str(self.args.threads), "--inputs", inputs, "--out", out,
                              "--runs", str(self.args.torch_runs)], timed)
        result = json.loads(stdout)
        result["peak"] = f"{result['peak_resident'] / 2**30:.1f} GiB"
        return result

    def generation(self, model, size):
        """A whole txt2img run: wall and CPU seconds and peak resident memory
        from the kernel, load and profile from tiledraw's own report."""
        command = self.tiledraw("generate", "-m", model, "--tokenizer", self.args.clip, "-p", "a photo of a cat",
                                "--steps", str(self.args.steps), "--sampler", "euler", "--cfg-scale", "7",
                                "-W", str(size), "-H", str(size), "--seed", "1", "--profile",
                                "-o", f"{self.args.dir}/generation.png")
        self.commands.append(command)
        with open(f"{self.args.dir}/generation.out", "w+") as out, open(f"{self.args.dir}/generation.err", "w+") as err:
            start = time.perf_counter()
            process = subprocess.Popen(command, stdout=out, stderr=err)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
            out.seek(0)
            err.seek(0)
            summary, profile = out.read(), err.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{profile}")
        return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak": usage.ru_maxrss * 1024,
                "load": float(re.search(r"load ([0-9.]+) s", summary)[1]), "summary": summary.strip(),
                "profile": profile[profile.find("op "):].strip()}


def make_models(bench):
    args = bench.args
    if args.tiny:
        os.makedirs(os.path.dirname(os.path.abspath(args.model)), exist_ok=True)
        RandomSd("sd1", 11).write_single_file(args.model, torch.float16)
    elif not os.path.exists(args.model):
        sys.exit(f"{args.model} is missing: write it with /usr/bin/python3 tools/make_bench_models.py DIR sd15")
    folder, name = os.path.split(args.model)
    quantized = os.path.join(folder, name.replace("f16", "8bit-s") if "f16" in name else "8bit-s-" + name)
    if args.tiny or not os.path.exists(quantized):
        bench.run([args.tiledraw, "convert", "-q", args.model, quantized], timed=True)
    return quantized


def shapes(args):
    """Latent factor and text width: from the file's config when it has one
    (the tiny model), else SD 1.5's (8 and 768)."""
    _, metadata = st_io.load_header(args.model)
    if "config" not in metadata:
        return 8, 768
    config = json.loads(metadata["config"])
    return 2 ** (len(config["vae"]["block_out_channels"]) - 1), config["unet"]["cross_attention_dim"]


def relative_rms(path, reference):
    a, b = st_io.load(path)[0]["out"], st_io.load(reference)[0]["out"]
    return ((a - b).norm() / b.norm()).item()


def cpu_name(args):
    stdout = subprocess.run([args.tiledraw, "info"], capture_output=True, text=True, check=True).stdout
    return "; ".join(" ".join(line.split()) for line in stdout.splitlines() if line.startswith(("cpu", "isa", "amx")))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiledraw", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--dir", help="where inputs and outputs go (default: beside the model)")
    parser.add_argument("--sizes", default="512,768")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--torch-runs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        args.sizes, args.repeats, args.runs, args.torch_runs, args.steps = "32", 1, 1, 1, 2
    args.dir = args.dir or os.path.join(os.path.dirname(os.path.abspath(args.model)), "sd-bench")
    os.makedirs(args.dir, exist_ok=True)
    bench = Bench(args)
    quantized = make_models(bench)
    factor, text_width = shapes(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)

    # Inputs: a guided step's batch (conditional and unconditional rows) per size.
    unet_inputs = {}
    for size in sizes:
        latent = size // factor
        unet_inputs[size] = f"{args.dir}/unet-inputs-{size}.safetensors"
        st_io.save(unet_inputs[size], {"sample": torch.randn((2, 4, latent, latent), generator=g),
                                       "timestep": torch.tensor([500.0, 500.0]),
                                       "encoder_hidden_states": torch.randn((2, 77, text_width), generator=g)})
    ids = torch.full((2, 77), EOS, dtype=torch.int64)
    ids[:, 0], ids[0, 1:8] = BOS, torch.tensor([320, 1125, 539, 320, 2368, 530, 3101])  # "a photo of a cat in snow"
    pieces = {"text encoding": ("text_encoder", {"input_ids": ids}),
              "VAE decode": ("vae_decoder", {"latents": torch.randn((1, 4, sizes[0] // factor, sizes[0] // factor),
                                                                     generator=g)}),
              "VAE encode": ("vae_encoder", {"image": torch.rand((1, 3, sizes[0], sizes[0]), generator=g) * 2 - 1})}
    piece_inputs = {}
    for label, (component, tensors) in pieces.items():
        piece_inputs[label] = f"{args.dir}/{component}-inputs.safetensors"
        st_io.save(piece_inputs[label], tensors)

    # auto's choices per weight shape live in a cache of the benchmark's own,
    # made by these first runs, so that no timed load includes timing them.
    cache = f"{args.dir}/auto-choices"
    os.environ["TILEDRAW_CACHE_DIR"] = cache
    if os.path.exists(f"{cache}/auto-choices.json"):
        os.remove(f"{cache}/auto-choices.json")
    for label, (component, _) in pieces.items():
        bench.forward(quantized, component, piece_inputs[label], f"{args.dir}/{component}-out.safetensors", 0)
    # Then the outputs: each PyTorch precision against tiledraw's 8-bit S output.
    agreement = {}
    for size in sizes:
        ours = f"{args.dir}/unet-tiledraw-{size}.safetensors"
        bench.forward(quantized, "unet", unet_inputs[size], ours, 0)
        for mode in TORCH_MODES:
            theirs = f"{args.dir}/unet-torch-{mode}-{size}.safetensors"
            bench.torch_forward(mode, unet_inputs[size], theirs, timed=False)
            agreement[(size, mode)] = relative_rms(ours, theirs)
            if agreement[(size, mode)] > AGREEMENT_BOUND:
                bench.failures.append(f"{size}: tiledraw and PyTorch {mode} differ by {agreement[(size, mode)]:.2e} RMS")
    if bench.failures:
        print("FAILED before timing:", *bench.failures, sep="\n  ")
        sys.exit(1)

    results = {}
    for _ in range(args.repeats):  # interleaved so that drift hits both sides
        for size in sizes:
            out = f"{args.dir}/unet-out.safetensors"
            results.setdefault(("unet", size, "tiledraw"), []).append(
                bench.forward(quantized, "unet", unet_inputs[size], out, args.runs))
            for mode in TORCH_MODES:
                results.setdefault(("unet", size, mode), []).append(bench.torch_forward(mode, unet_inputs[size], out))
        for label, (component, _) in pieces.items():
            results.setdefault((label, sizes[0], "tiledraw"), []).append(
                bench.forward(quantized, component, piece_inputs[label], f"{args.dir}/{component}-out.safetensors",
                              args.runs))
    generation = bench.generation(quantized, sizes[0])

    print(f"date     {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine  {cpu_name(args)}; {platform.node()}")
    print(f"model    {quantized} (8-bit S) and {args.model} (PyTorch, as float32)")
    print(f"threads  {args.threads}; medians of {args.runs} runs (PyTorch {args.torch_runs}) x {args.repeats} repeats\n")
    print(f"{'what':30} {'side':9} {'seconds':>9} {'vs ours':>8} {'load s':>7} {'peak':>9} {'arena / no reuse':>22} {'rms vs ours':>12}")
    for (what, size, side), runs in results.items():
        median = statistics.median(r["median"] for r in runs)
        ours = statistics.median(r["median"] for r in results[(what, size, "tiledraw")])
        label = f"UNet guided step {size}x{size}" if what == "unet" else f"{what} {size}x{size}" if "VAE" in what \
            else f"{what} (batch 2)"
        rms = f"{agreement[(size, side)]:.2e}" if side in TORCH_MODES else ""
        print(f"{label:30} {side:9} {median:9.3f} {median / ours:7.2f}x {statistics.median(r['load'] for r in runs):7.2f} "
              f"{runs[-1]['peak']:>9} {runs[-1].get('arena', ''):>22} {rms:>12}")
    print(f"\nwhole generation at {sizes[0]}x{sizes[0]}, {args.steps} euler steps with guidance, one VAE decode:")
    print(f"  {generation['summary']}")
    print(f"  load (process start to first step) {generation['load']:.2f} s, wall {generation['wall']:.1f} s, "
          f"{generation['cpu']:.1f} CPU-s, peak resident {generation['peak'] / 2**30:.2f} GiB")
    print("\nprofile of the whole generation (generate --profile):")
    print(generation["profile"])
    print("\ncommands:")
    for command in bench.commands:
        print("  " + " ".join(command))
    if bench.failures:
        print("FAILED:", *bench.failures, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
