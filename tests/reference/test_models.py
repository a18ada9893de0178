#!/usr/bin/python3
"""Reference tier: tiledraw's forward pass against PyTorch on small random
models with every parameter non-zero.

  /usr/bin/python3 tests/reference/test_models.py TILEDRAW_BINARY

For each model: written as safetensors (F32, and BF16 for one), run through
`tiledraw forward` on the float path and as 8-bit S (`tiledraw convert`), and
compared with the PyTorch forward of the same weights (for 8-bit S, the
dequantized weights). The float path must be within 1e-4 of the largest output
value: max|tiledraw - torch| / max|torch|. The 8-bit S path also rounds every
matmul's input rows to 8 bits (one scale per row), which PyTorch does not; its
bound is on the RMS error ||tiledraw - torch|| / ||torch||."""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "reference"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import dit  # noqa: E402
import png_pixels  # noqa: E402
from judge import judge  # noqa: E402
import noise  # noqa: E402
import samplers  # noqa: E402
import schedule  # noqa: E402
import st_io  # noqa: E402
import vae  # noqa: E402

FLOAT_BOUND = 1e-4
# Rounding a row of activations to 8 bits costs about (max/rms) / (127 sqrt 12)
# of its RMS, ~0.7% for Gaussian-like rows of 64-512 values, at each of the
# layers in a row. Measured (2026-11-22): 1.2-1.3% on the 2-block DiT and
# 2.7-3.0% on the 13-convolution VAE decoder, whose random weights compound the
# error. Bound: 5%, so a broken path (errors of tens of percent) fails.
INT8_BOUND = 5e-2

TILEDRAW = sys.argv[1]
failures = []


def run(*args):
    result = subprocess.run([TILEDRAW, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tiledraw {' '.join(args)} failed: {result.stderr.strip()}")


def check(name, model_path, inputs, reference, bound, precision="auto", metric="max", output="out"):
    """`output`: the tensor forward writes, 'out' for a diffusion model, 'image' for a VAE decoder."""
    with tempfile.TemporaryDirectory() as tmp:
        st_io.save(f"{tmp}/in.safetensors", inputs)
        run("forward", "-m", model_path, "--inputs", f"{tmp}/in.safetensors", "-o", f"{tmp}/out.safetensors",
            "--precision", precision)
        out = st_io.load(f"{tmp}/out.safetensors")[0][output]
    judge(failures, name, out, reference, bound, metric)


def diffusers_dit_forward(sd, config, x, t, y, norm_eps=1e-5):
    """DiTTransformer2DModel's forward written over its own state_dict: every
    block with its own timestep and class embedders, separate q/k/v."""
    patch, heads = config["patch_size"], config["num_heads"]
    width = sd["pos_embed.proj.weight"].shape[0]
    rows, cols = x.shape[2] // patch, x.shape[3] // patch
    base = config["input_size"] // patch
    h = F.conv2d(x, sd["pos_embed.proj.weight"], sd["pos_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    h = h + dit.position_embedding(width, rows, cols, base, base)[None]

    def lin(v, name):
        return F.linear(v, sd[name + ".weight"], sd[name + ".bias"])

    def conditioning(i):
        p = f"transformer_blocks.{i}.norm1.emb."
        half = 128
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
        args = t.float()[:, None] * freqs[None]
        te = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        te = lin(F.silu(lin(te, p + "timestep_embedder.linear_1")), p + "timestep_embedder.linear_2")
        return te + sd[p + "class_embedder.embedding_table.weight"][y]

    def attention(v, p):
        b, n, c = v.shape
        q, k, vv = (lin(v, p + name).reshape(b, n, heads, c // heads).transpose(1, 2) for name in ("to_q", "to_k", "to_v"))
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(c // heads), dim=-1) @ vv
        return lin(a.transpose(1, 2).reshape(b, n, c), p + "to_out.0")

    depth = sum(1 for k in sd if k.endswith("attn1.to_q.weight"))
    for i in range(depth):
        p = f"transformer_blocks.{i}."
        m = lin(F.silu(conditioning(i)), p + "norm1.linear").chunk(6, dim=1)
        n1 = F.layer_norm(h, (width,), eps=1e-6) * (1 + m[1][:, None]) + m[0][:, None]
        h = h + m[2][:, None] * attention(n1, p + "attn1.")
        n2 = F.layer_norm(h, (width,), eps=norm_eps) * (1 + m[4][:, None]) + m[3][:, None]
        ff = lin(F.gelu(lin(n2, p + "ff.net.0.proj"), approximate="tanh"), p + "ff.net.2")
        h = h + m[5][:, None] * ff
    shift, scale = lin(F.silu(conditioning(0)), "proj_out_1").chunk(2, dim=1)
    h = lin(F.layer_norm(h, (width,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None], "proj_out_2")
    out_channels = h.shape[-1] // (patch * patch)
    h = h.reshape(x.shape[0], rows, cols, patch, patch, out_channels)
    return torch.einsum("nhwpqc->nchpwq", h).reshape(x.shape[0], out_channels, rows * patch, cols * patch)


def dit_tests(tmp):
    config = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, mlp_ratio=4.0,
                  num_classes=10, learn_sigma=True)
    model = dit.randomize(dit.DiT(**config), seed=1)
    sd = dit.state_dict(model)
    g = torch.Generator().manual_seed(2)
    t = torch.tensor([7, 999])
    y = torch.tensor([3, 10])  # a class and the null class
    sizes = [(8, 8), (16, 12)]  # the trained size, and another (positions scaled to the trained grid)
    xs = {size: torch.randn((2, 4) + size, generator=g) for size in sizes}

    original = f"{tmp}/dit-original.safetensors"
    st_io.save(original, sd, {"config": json.dumps(config)})
    bf16 = f"{tmp}/dit-original-bf16.safetensors"
    st_io.save(bf16, {k: v.bfloat16() for k, v in sd.items()}, {"config": json.dumps(config)})
    model_bf16 = dit.DiT(**config)
    model_bf16.load_state_dict({k: v.bfloat16().float() for k, v in sd.items()})

    diffusers_sd = dit.to_diffusers(sd, config["depth"])
    # Block 1 gets embedders of its own, as a diffusers-trained model would have.
    for name in list(diffusers_sd):
        if name.startswith("transformer_blocks.1.norm1.emb."):
            diffusers_sd[name] = diffusers_sd[name] + 0.1 * torch.randn(diffusers_sd[name].shape, generator=g)
    diffusers_dir = f"{tmp}/diffusers/transformer"
    os.makedirs(diffusers_dir)
    diffusers = f"{diffusers_dir}/diffusion_pytorch_model.safetensors"
    st_io.save(diffusers, diffusers_sd)
    with open(f"{diffusers_dir}/config.json", "w") as f:
        json.dump({"_class_name": "DiTTransformer2DModel", "num_attention_heads": 4, "attention_head_dim": 16,
                   "in_channels": 4, "out_channels": 8, "num_layers": 2, "sample_size": 8, "patch_size": 2,
                   "norm_eps": 1e-5}, f)

    with torch.no_grad():
        for size in sizes:
            x = xs[size]
            inputs = {"x": x, "t": t, "y": y}
            label = f"{size[0]}x{size[1]}"
            check(f"DiT original layout F32 {label}", original, inputs, model(x, t, y), FLOAT_BOUND)
            check(f"DiT original layout BF16 {label}", bf16, inputs, model_bf16(x, t, y), FLOAT_BOUND)
            check(f"DiT diffusers layout F32 {label}", diffusers, inputs,
                  diffusers_dit_forward(diffusers_sd, config, x, t, y), FLOAT_BOUND)
            for path, kind in ((original, "original"), (diffusers, "diffusers")):
                quantized = path.replace(".safetensors", "-8bit-s.safetensors")
                if not os.path.exists(quantized):
                    run("convert", path, quantized, "--min-elements", "1")  # beside the same config.json
                deq = st_io.dequantize_8bit_s(st_io.load(quantized)[0])
                if kind == "original":
                    ref_model = dit.DiT(**config)
                    ref_model.load_state_dict(deq)
                    reference = ref_model(x, t, y)
                else:
                    reference = diffusers_dit_forward(deq, config, x, t, y)
                check(f"DiT {kind} layout 8-bit S {label}", quantized, inputs, reference, INT8_BOUND, metric="rms")
                check(f"DiT {kind} layout 8-bit S read as float {label}", quantized, inputs, reference, FLOAT_BOUND,
                      precision="float")


def vae_tests(tmp):
    config = dict(latent_channels=4, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
                  norm_num_groups=8)
    model = vae.randomize(vae.VaeDecoder(**config), seed=3)
    path = f"{tmp}/vae.safetensors"
    st_io.save(path, model.state_dict(), {"config": json.dumps(model.config)})
    quantized = f"{tmp}/vae-8bit-s.safetensors"
    run("convert", path, quantized, "--min-elements", "1")
    model_q = vae.VaeDecoder(**config)
    model_q.load_state_dict(st_io.dequantize_8bit_s(st_io.load(quantized)[0]))
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for size in [(4, 4), (6, 5)]:
            z = torch.randn((2, 4) + size, generator=g)
            label = f"{size[0]}x{size[1]} latents"
            check(f"VAE decoder F32 {label}", path, {"z": z}, model(z), FLOAT_BOUND, output="image")
            check(f"VAE decoder 8-bit S {label}", quantized, {"z": z}, model_q(z), INT8_BOUND, metric="rms",
                  output="image")


def read_png(path):
    """Pixels of an 8-bit gray or RGB PNG as [height, width, channels]."""
    width, height, channels, pixels = png_pixels.read_png(path)
    return np.frombuffer(pixels, np.uint8).reshape(height, width, channels)


def generate_tests(tmp):
    """`tiledraw generate` (DDIM on DiT's respaced timesteps, with guidance, the
    float path) against the same sampling in PyTorch (tools/reference/samplers.py,
    k-diffusion's sigma-space definitions) from the same seeded noise streams, on
    the bundled trained model (a random model's samples saturate to black and
    white, which would hide differences): the PNGs must agree to one level.
    tests/reference/test_samplers.py compares every sampler and scheduler."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "fashion-dit-8bit-s.safetensors")
    tensors, metadata = st_io.load(path)
    config = json.loads(metadata["config"])
    model = dit.DiT(**config)
    model.load_state_dict(st_io.dequantize_8bit_s(tensors))
    steps, cfg, seed, images, label = 10, 3.0, 11, 2, 7
    run("generate", "-q", "-m", path, "--precision", "float", "--class", str(label), "--steps", str(steps),
        "--cfg-scale", str(cfg), "--seed", str(seed), "-b", str(images), "--sampler", "ddim", "-o", f"{tmp}/sample.png")

    discrete = schedule.DiscreteSchedule()
    sigmas = schedule.sigmas(discrete, "default", "ddim", steps)
    channels, size = config["in_channels"], config["input_size"]
    streams = noise.BatchNoise(seed, images, (channels, size, size))  # image i: seed + i
    x = samplers.f32(samplers.f64(streams.draw()) * sigmas[0])
    # A pixel model's clean estimate is clipped to [-1, 1] (guided-diffusion's clip_denoised).
    denoise = samplers.GuidedDenoiser(model, discrete, [label] * images, config["num_classes"], cfg, channels,
                                      config["learn_sigma"], clip=True)
    x = samplers.sample("ddim", denoise, sigmas, x, streams)
    for i in range(images):
        expected = np.clip(np.rint((x[i] + 1.0) * 127.5), 0, 255).astype(np.int32).transpose(1, 2, 0)
        got = read_png(f"{tmp}/sample-{i + 1}.png").astype(np.int32)
        worst = int(np.abs(got - expected).max())
        levels = len(np.unique(expected))
        verdict = "ok" if worst <= 1 and levels > 16 else "FAIL"
        print(f"{verdict:4} generate DDIM {steps} steps, guidance {cfg}, image {i + 1}: worst pixel difference {worst} "
              f"(bound 1 level), {levels} distinct levels")
        if verdict != "ok":
            failures.append(f"generate image {i + 1}")


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        dit_tests(tmp)
        vae_tests(tmp)
        generate_tests(tmp)
    if failures:
        print("failed:", *failures, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
