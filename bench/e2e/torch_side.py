#!/usr/bin/python3
"""The PyTorch side of bench/e2e/run.py: loads the same safetensors as
tiledraw into the reference DiT (and VAE decoder), then either times forward
passes in one precision or runs a whole generation. Prints one JSON line."""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
import dit  # noqa: E402
import schedule  # noqa: E402
import st_io  # noqa: E402
import vae  # noqa: E402


def load_dit(path, mode):
    tensors, metadata = st_io.load(path)
    model = dit.DiT(**json.loads(metadata["config"]))
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.eval()
    if mode == "int8":
        torch.backends.quantized.engine = "onednn"
        model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    return model


def forward(model, mode, *inputs):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
        return model(*inputs).float()


def peak_resident():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_forward(args):
    start = time.perf_counter()
    model = load_dit(args.model, args.mode)
    inputs, _ = st_io.load(args.inputs)
    load = time.perf_counter() - start
    x, t, y = inputs["x"].float(), inputs["t"], inputs["y"]
    begin = time.perf_counter()
    out = forward(model, args.mode, x, t, y)
    first = time.perf_counter() - begin
    times = []
    for _ in range(args.runs):
        begin = time.perf_counter()
        forward(model, args.mode, x, t, y)
        times.append(time.perf_counter() - begin)
    times.sort()
    st_io.save(args.out, {"out": out})
    return {"load": load, "first": first, "median": times[len(times) // 2], "peak_resident": peak_resident()}


def generate(args):
    """50 DDIM steps with guidance 4 and one VAE decode, as `tiledraw generate` does."""
    start = time.perf_counter()
    model = load_dit(args.model, args.mode)
    tensors, metadata = st_io.load(args.vae)
    decoder = vae.VaeDecoder(**{k: v for k, v in json.loads(metadata["config"]).items()
                                if k in ("latent_channels", "out_channels", "block_out_channels", "layers_per_block",
                                         "norm_num_groups", "scaling_factor")})
    decoder.load_state_dict({k: v.float() for k, v in tensors.items()})
    load = time.perf_counter() - start
    size = args.size // 8
    g = torch.Generator().manual_seed(42)
    x = torch.randn((1, 4, size, size), generator=g).repeat(2, 1, 1, 1)
    y = torch.tensor([207, 1000])
    alphas = schedule.alphas_cumprod()
    steps = schedule.spaced_timesteps(args.steps)
    for k in range(args.steps - 1, -1, -1):
        ab, ab_prev = alphas[steps[k]], alphas[steps[k - 1]] if k > 0 else 1.0
        eps = forward(model, args.mode, x, torch.tensor([steps[k]] * 2), y)[:, :4]
        guided = eps[1:, :3] + 4.0 * (eps[:1, :3] - eps[1:, :3])
        eps[:, :3] = guided
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        x = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps
    with torch.no_grad():  # in fp32 for every mode: PyTorch 1.13's group norm has no bf16 autocast on the CPU
        image = decoder(x[:1] / decoder.config["scaling_factor"])
    assert torch.isfinite(image).all()
    return {"load": load, "total": time.perf_counter() - start, "peak_resident": peak_resident()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--mode", choices=["fp32", "bf16", "int8"], required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--inputs")
    parser.add_argument("--out")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vae")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(generate(args) if args.vae else time_forward(args)))


if __name__ == "__main__":
    main()
