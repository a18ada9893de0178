#!/usr/bin/python3
"""Stable Diffusion XL on SDXL base 1.0's exact shapes: the figures of issue
18's benchmark.

  /usr/bin/python3 bench/sdxl.py --tiledraw build/tiledraw --model DIR/sdxl-random-f16.safetensors
      --clip CLIP_DIR [--dir WORK_DIR] [--sizes 768,1024] [--threads 2] [--runs 2] [--steps 20]

--model is the random SDXL stand-in in F16 (`tools/make_bench_models.py DIR
sdxl`: the 2.6B UNet, the 123M and 695M text encoders, the 84M VAE); its
8-bit S conversion is the same name with `8bit-s` for `f16`, made by
`tiledraw convert` when missing (and timed then). --clip is the CLIP
vocabulary (the model carries none). Everything runs on the 8-bit S file:

- the UNet's guided step (batch 2, 77 tokens, pooled text and sizes) at each
  size: `forward --component unet --runs N`, the median;
- text encoding of a prompt and a negative prompt (both encoders, batch 2),
  and the VAE decode at the last size, through `forward`;
- a whole txt2img generation at the last size (--steps steps; bench/sd's
  command: euler, guidance 7): load (process start to the first step, as
  `generate` prints it), wall and CPU seconds and peak resident memory (the
  kernel's rusage of the process), and the share of the machine's int8
  ceiling the UNet's convolutions and linear layers reach (`--profile`'s
  GOP/s of each, against `tiledraw_bench --benchmark_filter=PeakInt8`'s
  per-core figure times the threads, when --peak-gops is not given)."""
import argparse
import os
import re
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "sd"))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
import st_io  # noqa: E402
from run import Bench, cpu_name  # noqa: E402


def quantized_model(bench):
    args = bench.args
    if not os.path.exists(args.model):
        sys.exit(f"{args.model} is missing: write it with /usr/bin/python3 tools/make_bench_models.py DIR sdxl")
    folder, name = os.path.split(args.model)
    quantized = os.path.join(folder, name.replace("f16", "8bit-s") if "f16" in name else "8bit-s-" + name)
    if not os.path.exists(quantized):
        bench.run([args.tiledraw, "convert", "-q", args.model, quantized], timed=True)
    return quantized


def widths(model):
    """The UNet's context and pooled text widths, read off the file's tensors
    (2048 and 1280 for SDXL's shapes)."""
    header, _ = st_io.load_header(model)
    unet = "model.diffusion_model."
    context = next(t["shape"][1] for name, t in header.items()
                   if name.startswith(unet) and name.endswith("attn2.to_k.weight"))
    return context, header[unet + "label_emb.0.0.weight"]["shape"][1] - 6 * 256


def write_inputs(args, model):
    """Seeded random inputs of the model's shapes: token ids of a prompt and a
    negative prompt, a guided UNet step per size, latents to decode."""
    context, pooled = widths(model)
    g = torch.Generator().manual_seed(1)
    ids = torch.full((2, 77), 49407, dtype=torch.int64)
    ids[:, 0] = 49406
    ids[0, 1:9] = torch.randint(300, 40000, (8,), generator=g)
    ids[1, 1:4] = torch.randint(300, 40000, (3,), generator=g)
    ids_2 = ids.clone()
    ids_2[0, 10:] = 0
    ids_2[1, 5:] = 0
    st_io.save(f"{args.dir}/text.safetensors", {"input_ids": ids, "input_ids_2": ids_2})
    for size in args.sizes:
        latent = size // 8
        st_io.save(f"{args.dir}/unet-{size}.safetensors", {
            "sample": torch.randn((2, 4, latent, latent), generator=g),
            "timestep": torch.tensor([999.0, 999.0]),
            "encoder_hidden_states": torch.randn((2, 77, context), generator=g),
            "text_embeds": torch.randn((2, pooled), generator=g),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, dtype=torch.float32)})
    latent = args.sizes[-1] // 8
    st_io.save(f"{args.dir}/latents.safetensors", {"latents": torch.randn((1, 4, latent, latent), generator=g)})


def peak_gops(args):
    """The machine's int8 ceiling for --threads cores, GOP/s."""
    if args.peak_gops:
        return args.peak_gops
    bench = os.path.join(os.path.dirname(args.tiledraw), "bench", "tiledraw_bench")
    out = subprocess.run([bench, "--benchmark_filter=PeakInt8", "--benchmark_format=console"], capture_output=True,
                         text=True).stdout
    per_core = max(float(v) * (1000 if unit == "T" else 1) for v, unit in re.findall(r"([0-9.]+)([GT])/s", out))
    return per_core * args.threads


def matmul_share(profile, ceiling):
    """GOP/s of the UNet's convolutions and linear layers together, from the
    profile's table of the UNet (the one with a timestep embedding), and
    their share of the ceiling."""
    tables = profile.split("\nop ")
    unet = next((t for t in tables if "timestep_embedding" in t), "")
    ops = milliseconds = 0.0
    for line in unet.splitlines():
        parts = line.split()
        share = next((i for i, p in enumerate(parts) if p.endswith("%")), None)
        if parts and parts[0] in ("conv2d", "linear") and share and share + 1 < len(parts):
            ops += float(parts[share - 1]) * float(parts[share + 1])
            milliseconds += float(parts[share - 1])
    gops = ops / milliseconds if milliseconds else 0.0
    return gops, gops / ceiling


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiledraw", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--dir", default="/tmp/tiledraw-sdxl-bench")
    parser.add_argument("--sizes", default="768,1024")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peak-gops", type=float, default=0.0)
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.tiledraw = os.path.abspath(args.tiledraw)
    os.makedirs(args.dir, exist_ok=True)
    bench = Bench(args)
    model = quantized_model(bench)
    write_inputs(args, model)
    print(f"CPU: {cpu_name(args)}, {args.threads} threads; model {model} ({os.path.getsize(model) / 2**30:.2f} GiB)",
          flush=True)

    rows = []
    for size in args.sizes:
        r = bench.forward(model, "unet", f"{args.dir}/unet-{size}.safetensors", f"{args.dir}/out.safetensors", args.runs)
        rows.append((f"UNet guided step (batch 2), {size} x {size}", f"{r['median']:.2f} s (median of {args.runs}), "
                     f"arena {r['arena']}, peak {r['peak']}, load {r['load']:.2f} s"))
        print(" | ".join(rows[-1]), flush=True)
    r = bench.forward(model, "text_encoder", f"{args.dir}/text.safetensors", f"{args.dir}/out.safetensors", 5)
    rows.append(("text encoding, both encoders, 2 x 77 tokens", f"{r['median']:.3f} s (median of 5)"))
    r = bench.forward(model, "vae_decoder", f"{args.dir}/latents.safetensors", f"{args.dir}/out.safetensors", 1)
    size = args.sizes[-1]
    rows.append((f"VAE decode, {size} x {size}", f"{r['median']:.2f} s, arena {r['arena']}, peak {r['peak']}"))
    print(" | ".join(rows[-1]), flush=True)

    g = bench.generation(model, size)
    gops, share = matmul_share(g["profile"], peak_gops(args))
    rows.append((f"whole {args.steps}-step {size} x {size} generation",
                 f"{g['wall']:.1f} s wall, {g['cpu']:.0f} CPU-seconds, load {g['load']:.2f} s"))
    file_size = os.path.getsize(model)
    rows.append(("its peak resident memory", f"{g['peak'] / 2**30:.2f} GiB; the 8-bit S file + 1 GiB = "
                 f"{(file_size + 2**30) / 2**30:.2f} GiB"))
    rows.append(("convolutions and linear layers of the UNet, share of the int8 ceiling",
                 f"{gops:.0f} GOP/s, {100 * share:.0f}% of {peak_gops(args):.0f} GOP/s"))
    print("\n| figure | measured |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\ncommands:")
    for command in bench.commands:
        print("  " + " ".join(command))
    print("\n" + g["summary"] + "\n\n" + g["profile"])


if __name__ == "__main__":
    main()
