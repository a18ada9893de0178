#!/usr/bin/python3
"""What a LoRA adapter costs beside 8-bit S weights: issue 19's figures.

  /usr/bin/python3 bench/lora.py --tiledraw build/tiledraw --model DIR/sd15-panels.safetensors
      [--dir WORK_DIR] [--rank 32] [--size 512] [--runs 3] [--pairs 3] [--threads 2]

--model is the SD 1.5 stand-in as 8-bit S (`tools/make_bench_models.py DIR
sd15`, then `tiledraw convert`). The script writes a random kohya-ss adapter
of --rank on every attention projection (self and cross: q, k, v, out) and
feed-forward layer of SD 1.5's UNet (diffusers names, F16, alpha = rank), and
times, interleaved in --pairs pairs so that the machine's drift hits both:

- the UNet's guided step (batch 2, 77 tokens) at --size with and without the
  adapter: `forward --component unet --runs N` medians, and their ratio;
- switching adapters: the wall time of a `forward` at 8 x 8 latents with
  the adapter less one without (reading the file, matching its layers and
  building their branches, plus the graph's extra nodes): an upper bound."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
import st_io  # noqa: E402
import unet  # noqa: E402

TARGETS = (".attn1.to_q.", ".attn1.to_k.", ".attn1.to_v.", ".attn1.to_out.0.", ".attn2.to_q.", ".attn2.to_k.",
           ".attn2.to_v.", ".attn2.to_out.0.", ".ff.net.0.proj.", ".ff.net.2.")


def write_adapter(path, rank):
    g = torch.Generator().manual_seed(1)
    tensors = {}
    for name, shape in unet.parameter_shapes(unet.SD15_CONFIG):
        if not name.endswith(".weight") or not any(t in name for t in TARGETS):
            continue
        key = "lora_unet_" + name[:-len(".weight")].replace(".", "_")
        tensors[key + ".lora_down.weight"] = (torch.randn((rank, shape[1]), generator=g) * 0.01).half()
        tensors[key + ".lora_up.weight"] = (torch.randn((shape[0], rank), generator=g) * 0.01).half()
        tensors[key + ".alpha"] = torch.tensor(float(rank)).half()
    st_io.save(path, tensors, {"ss_network_dim": str(rank)})
    return len(tensors) // 3


def forward(args, inputs, lora, runs):
    command = [args.tiledraw, "--threads", str(args.threads), "forward", "-m", args.model, "--component", "unet",
               "--inputs", inputs, "-o", f"{args.dir}/out.safetensors", "--runs", str(runs)]
    if lora:
        command += ["--lora", lora]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    median = re.search(r"median ([0-9.]+) s", result.stderr)
    return (float(median[1]) if median else 0.0), wall, " ".join(command)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiledraw", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dir", default="/tmp/tiledraw-lora-bench")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    lora = f"{args.dir}/lora-rank{args.rank}.safetensors"
    layers = write_adapter(lora, args.rank)
    g = torch.Generator().manual_seed(2)
    for name, latent in (("step", args.size // 8), ("small", 8)):
        st_io.save(f"{args.dir}/{name}.safetensors", {
            "sample": torch.randn((2, 4, latent, latent), generator=g), "timestep": torch.tensor([999.0, 999.0]),
            "encoder_hidden_states": torch.randn((2, 77, 768), generator=g)})
    print(f"adapter: rank {args.rank} on {layers} layers, {os.path.getsize(lora) / 2**20:.1f} MiB", flush=True)

    steps = {False: [], True: []}
    switches = {False: [], True: []}
    commands = set()
    forward(args, f"{args.dir}/small.safetensors", lora, 0)  # programs and auto's choices made once, untimed
    for _ in range(args.pairs):
        for adapted in (False, True):
            median, _, command = forward(args, f"{args.dir}/step.safetensors", lora if adapted else "", args.runs)
            steps[adapted].append(median)
            commands.add(command)
            _, wall, _ = forward(args, f"{args.dir}/small.safetensors", lora if adapted else "", 0)
            switches[adapted].append(wall)
    ratios = [a / b for a, b in zip(steps[True], steps[False])]
    print(f"UNet step at {args.size}: without {statistics.median(steps[False]):.3f} s, with "
          f"{statistics.median(steps[True]):.3f} s (medians of {args.pairs}); ratio per pair "
          f"{', '.join(f'{r:.3f}' for r in ratios)}, median {statistics.median(ratios):.3f}")
    extra = [a - b for a, b in zip(switches[True], switches[False])]
    print(f"switching: forward at 8 x 8 latents takes {1000 * statistics.median(extra):.0f} ms longer with the adapter "
          f"(per pair {', '.join(f'{1000 * e:.0f}' for e in extra)} ms)")
    print("commands:\n  " + "\n  ".join(sorted(commands)))


if __name__ == "__main__":
    main()
