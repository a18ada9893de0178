#!/usr/bin/python3
"""What a LoRA adapter costs beside 8-bit S weights: issue 19's figures.

  /usr/bin/python3 bench/lora.py --bench build/bench/tiledraw_lora_bench --model DIR/sd15-panels.safetensors
      [--dir WORK_DIR] [--rank 32] [--size 512] [--runs 3] [--pairs 5]

--model is the SD 1.5 stand-in as 8-bit S (`tools/make_bench_models.py DIR
sd15`, then `tiledraw convert`). The script writes a random kohya-ss adapter
of --rank on every attention projection (self and cross: q, k, v, out) and
feed-forward layer of SD 1.5's UNet (diffusers names, F16, alpha = rank),
then runs bench/lora_bench.cpp on it, which times in one process, pair by
pair, the UNet's guided step with and without the adapter, and switching
to a new set of strengths."""
import argparse
import os
import subprocess
import sys

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True, help="build/bench/tiledraw_lora_bench")
    parser.add_argument("--model", required=True)
    parser.add_argument("--dir", default="/tmp/tiledraw-lora-bench")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    lora = f"{args.dir}/lora-rank{args.rank}.safetensors"
    layers = write_adapter(lora, args.rank)
    print(f"adapter: rank {args.rank} on {layers} layers, {os.path.getsize(lora) / 2**20:.1f} MiB", flush=True)
    command = [args.bench, args.model, lora, "--size", str(args.size), "--pairs", str(args.pairs), "--runs", str(args.runs)]
    print(" ".join(command), flush=True)
    sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    main()
