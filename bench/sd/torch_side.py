#!/usr/bin/python3
"""The PyTorch side of bench/sd/run.py: loads the UNet of a Stable Diffusion
single file (model.diffusion_model.*, float) into the reference forward of
tools/reference/unet.py and times guided steps in one precision. The config is
the file's "config" metadata ({"unet": ...}) when it has one, else SD 1.5's.
Prints one JSON line: load, first and median seconds, peak resident bytes.

  /usr/bin/python3 bench/sd/torch_side.py --model F.safetensors --mode fp32|bf16
      --threads N --inputs IN.safetensors --out OUT.safetensors [--runs N]"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
import st_io  # noqa: E402
import unet  # noqa: E402

PREFIX = "model.diffusion_model."


def load_unet(path):
    tensors, metadata = st_io.load(path)
    config = json.loads(metadata["config"])["unet"] if "config" in metadata else unet.SD15_CONFIG
    weights = {k: v.float() for k, v in unet.from_ldm(tensors, config, PREFIX).items()}
    return weights, config


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--mode", choices=["fp32", "bf16"], required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    weights, config = load_unet(args.model)
    if args.mode == "bf16":
        # PyTorch 1.13's CPU autocast leaves group_norm out of its lists: it then
        # refuses bf16 activations with float32 scales, so hand it bf16 ones.
        weights = {k: v.bfloat16() if v.dim() == 1 else v for k, v in weights.items()}
    inputs, _ = st_io.load(args.inputs)
    load = time.perf_counter() - start

    def step():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.mode == "bf16"):
            return unet.forward(weights, config, inputs["sample"], inputs["timestep"],
                                inputs["encoder_hidden_states"]).float()

    begin = time.perf_counter()
    out = step()
    first = time.perf_counter() - begin
    times = []
    for _ in range(args.runs):
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    st_io.save(args.out, {"out": out})
    print(json.dumps({"load": load, "first": first, "median": statistics.median(times) if times else first,
                      "peak_resident": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
