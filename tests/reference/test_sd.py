#!/usr/bin/python3
"""Reference tier: Stable Diffusion 1.x and 2.x text-to-image end to end,
against PyTorch models written here from the architecture.

  /usr/bin/python3 tests/reference/test_sd.py TILEDRAW_BINARY [CLIP_DATA_DIR]

Tiny random SD 1.x-like (CLIP with QuickGELU, conv projections, noise
prediction) and SD 2.x-like (OpenCLIP names, GELU, linear projections, v
prediction) checkpoints, every parameter non-zero, written as the single files
people download (model.diffusion_model.*, cond_stage_model.*,
first_stage_model.*) and, for SD 1.x, as a diffusers folder. Checked:

- `tiledraw forward` of text_encoder, unet, vae_encoder and vae_decoder
  against the PyTorch forward of the same weights: float within 1e-4 of the
  largest output; the UNet as 8-bit S within 8% RMS;
- a 4-step guided txt2img from fixed initial noise (`generate
  --initial-noise`) against the same loop in PyTorch: ddim (SD's leading
  timesteps), euler, dpm++2m with karras, for both checkpoints and the
  folder, with a weighted prompt and a negative prompt, and a prompt of two
  77-token chunks;
- img2img: strength 0 returns the picture's latents, strength 1 is txt2img
  from the same noise, strength 0.5 runs the last 2 of 4 steps from the
  picture noised to their first sigma;
- the 9-channel inpainting UNet is refused with a message saying so.

The token ids come from `tiledraw tokenize --json` (the tokenizer has its own
tests against hand-checked ids); the prompt weighting (each token's hidden
state times its weight, the chunk rescaled to its former mean) is done here."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
import noise as noise_streams  # noqa: E402
import samplers  # noqa: E402
import schedule  # noqa: E402
import st_io  # noqa: E402
from sd_model import RandomSd  # noqa: E402
from judge import judge  # noqa: E402
import unet  # noqa: E402

FLOAT_BOUND = 1e-4
# Rounding weights and activations to 8 bits through the UNet's 40-60 narrow
# layers in a row: measured 4.5-4.8% RMS (tests/reference/test_unet.py).
INT8_BOUND = 8e-2
# The loops compute in float32 with float64 updates on both sides; what is left
# is the forward passes' float32 rounding, amplified by the guidance scale.
# Measured (2026-12-02): 1.9e-6 to 5.2e-6. A wrong convention costs far more:
# no emphasis rescale 3e-3 to 1.4e-2, no final variance-preserving scaling after
# DDIM 4.3e-4.
LOOP_BOUND = 2e-5
STEPS, CFG, SEED = 4, 5.0, 7
WIDTH, HEIGHT = 32, 24  # pixels: latents 16 x 12 with the tiny VAE's factor 2
PROMPT = "a (red:1.3) cube on a [wooden] table, ((studio light))"
NEGATIVE = "blurry, low quality"
LONG_PROMPT = " ".join(["a photo of a small red cube"] * 14)  # 98 tokens: two chunks

TILEDRAW = sys.argv[1]
CLIP_DATA = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "..", "..", "shared", "data", "clip")
failures = []


def write_png(path, rgb):
    """An 8-bit RGB PNG [height, width, 3] with no filtering, from the format's definition."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    height, width = rgb.shape[:2]
    raw = b"".join(b"\0" + rgb[y].tobytes() for y in range(height))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def run(*args):
    result = subprocess.run([TILEDRAW, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tiledraw {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def compare(label, got, expected, bound, metric="max"):
    judge(failures, label, got, expected, bound, metric)


def forward(tmp, model_path, component, inputs, output, precision="float"):
    st_io.save(f"{tmp}/in.safetensors", inputs)
    run("forward", "-m", model_path, "--component", component, "--inputs", f"{tmp}/in.safetensors",
        "-o", f"{tmp}/out.safetensors", "--precision", precision)
    return st_io.load(f"{tmp}/out.safetensors")[0][output]


def tokenize(model_path, prompt):
    """Per chunk: 77 ids and 77 weights."""
    out = json.loads(run("tokenize", "-m", model_path, "--tokenizer", os.path.join(CLIP_DATA, "hf"), "--json", prompt))
    return [(c["ids"], c.get("weights", [1.0] * len(c["ids"]))) for c in out["chunks"]]


def prompts(path, prompt):
    return tokenize(path, prompt), tokenize(path, NEGATIVE), tokenize(path, "")


def context(model, chunks):
    """The UNet's context [1, 77 k, width] of one prompt's chunks, A1111's
    emphasis applied chunk by chunk."""
    parts = []
    for ids, weights in chunks:
        z = model.encode_text(torch.tensor([ids]))
        w = torch.tensor(weights, dtype=torch.float32)
        if bool((w != 1.0).any()):
            before = z.double().mean()
            z = z * w[None, :, None]
            z = z * (before / z.double().mean()).float()
        parts.append(z)
    return torch.cat(parts, dim=1)


class SdDenoiser:
    """D(x, sigma) for a variance-preserving discrete model in sigma space: the
    UNet reads x / sqrt(1 + sigma^2) at the fractional timestep of sigma, the
    conditional and unconditional rows in one batch, guided on every channel;
    noise prediction gives x - sigma eps, v prediction (x - sigma v) / (1 + sigma^2)
    ... written out below as k-diffusion's c_skip and c_out."""

    def __init__(self, model, discrete, cond, uncond, cfg):
        self.model, self.schedule, self.cfg = model, discrete, cfg
        self.cond, self.uncond = cond, uncond

    def __call__(self, x, sigma):
        images = x.shape[0]
        x_in = samplers.f32(samplers.f64(x) * (1.0 / np.sqrt(1.0 + sigma * sigma)))
        batch = torch.from_numpy(np.concatenate([x_in, x_in]))
        t = torch.full((2 * images,), float(np.float32(self.schedule.sigma_to_t(sigma))), dtype=torch.float32)
        ctx = torch.cat([self.cond.expand(images, -1, -1), self.uncond.expand(images, -1, -1)])
        out = self.model.unet_forward(batch, t, ctx).numpy()
        cond, uncond = samplers.f64(out[:images]), samplers.f64(out[images:])
        guided = samplers.f32(uncond + self.cfg * (cond - uncond))
        if self.model.prediction == "v":
            c_skip, c_out = 1.0 / (sigma * sigma + 1.0), -sigma / np.sqrt(sigma * sigma + 1.0)
            denoised = samplers.f64(x) * c_skip + samplers.f64(guided) * c_out
        else:
            denoised = samplers.f64(x) - sigma * samplers.f64(guided)
        return samplers.f32(denoised), np.full_like(guided, -1.0)


def reference_loop(model, sampler, scheduler, prompts, initial, start=None, run_steps=STEPS):
    """The sampled latents; `prompts` holds the chunks of the prompt, of the
    negative prompt and of the empty prompt (what the shorter is padded with)."""
    prompt_chunks, negative_chunks, empty = prompts
    discrete = schedule.DiscreteSchedule(1000, 0.00085, 0.012, scaled=True, leading=True)
    sigmas = schedule.sigmas(discrete, scheduler, sampler, STEPS)[STEPS - run_steps:]
    streams = noise_streams.BatchNoise(SEED, 1, initial.shape[1:])
    streams.draw()  # the initial fill, drawn even when the noise is given
    clean = 0.0 if start is None else samplers.f64(start)
    x = samplers.f32(clean + samplers.f64(initial) * sigmas[0])
    chunks = max(len(prompt_chunks), len(negative_chunks))
    cond = context(model, prompt_chunks + empty * (chunks - len(prompt_chunks)))
    uncond = context(model, negative_chunks + empty * (chunks - len(negative_chunks)))
    x = samplers.sample(sampler, SdDenoiser(model, discrete, cond, uncond, CFG), sigmas, x, streams)
    if sigmas[-1] > 0:  # DDIM to timestep 0 (set_alpha_to_one false): diffusers' variance-preserving sample
        x = samplers.f32(samplers.f64(x) / np.sqrt(1.0 + sigmas[-1] ** 2))
    return x


def generate(tmp, model_path, sampler, scheduler, prompt, noise_path, extra=()):
    out = f"{tmp}/latents.safetensors"
    run("generate", "-q", "-m", model_path, "-p", prompt, "-n", NEGATIVE, "--steps", str(STEPS), "--sampler", sampler,
        "--scheduler", scheduler, "--cfg-scale", str(CFG), "--seed", str(SEED), "-W", str(WIDTH), "-H", str(HEIGHT),
        "--precision", "float", "--vae-precision", "float", "--tokenizer", os.path.join(CLIP_DATA, "hf"),
        "--initial-noise", noise_path, "--output-latents", out, "-o", f"{tmp}/image.png", *extra)
    return st_io.load(out)[0]["latents"].numpy()


def check_components(tmp, label, model, path):
    ids = torch.tensor([c[0] for c in tokenize(path, LONG_PROMPT)]).reshape(1, -1)
    hidden = forward(tmp, path, "text_encoder", {"input_ids": ids.to(torch.int64)}, "hidden_states")
    expected = torch.cat([model.encode_text(ids[:, i:i + 77]) for i in range(0, ids.shape[1], 77)], dim=1)
    compare(f"{label} text_encoder (2 chunks)", hidden, expected, FLOAT_BOUND)

    g = torch.Generator().manual_seed(31)
    sample = torch.randn((2, 4, 12, 8), generator=g)
    t = torch.tensor([999.0, 37.5])
    ctx = torch.randn((2, 154, model.text_width), generator=g)
    inputs = {"sample": sample, "timestep": t, "encoder_hidden_states": ctx}
    expected = model.unet_forward(sample, t, ctx)
    compare(f"{label} unet", forward(tmp, path, "unet", inputs, "out"), expected, FLOAT_BOUND)
    compare(f"{label} unet 8-bit S", forward(tmp, path, "unet", inputs, "out", "8bit-s"), expected, INT8_BOUND, "rms")

    image = torch.rand((1, 3, 16, 24), generator=g) * 2 - 1
    with torch.no_grad():
        compare(f"{label} vae_encoder", forward(tmp, path, "vae_encoder", {"image": image}, "mean"), model.encoder(image),
                FLOAT_BOUND)
        z = torch.randn((1, 4, 8, 12), generator=g)
        compare(f"{label} vae_decoder", forward(tmp, path, "vae_decoder", {"latents": z}, "image"), model.decoder(z),
                FLOAT_BOUND)


def fixed_noise(tmp, g):
    """Initial noise of the tiny models' latents from generator g, and the
    file `generate --initial-noise` reads it from."""
    initial = torch.randn((1, 4, HEIGHT // 2, WIDTH // 2), generator=g)
    noise_path = f"{tmp}/noise.safetensors"
    st_io.save(noise_path, {"noise": initial})
    return initial, noise_path


def check_generation(tmp, label, model, path, cases):
    initial, noise_path = fixed_noise(tmp, torch.Generator().manual_seed(41))
    for sampler, scheduler, prompt in cases:
        got = generate(tmp, path, sampler, scheduler, prompt, noise_path)
        expected = reference_loop(model, sampler, scheduler, prompts(path, prompt), initial.numpy())
        chunks = len(tokenize(path, prompt))
        compare(f"{label} txt2img {sampler} {scheduler}, {chunks} chunk{'s' if chunks > 1 else ''}", got, expected,
                LOOP_BOUND)


def img2img_inputs(tmp, model):
    """Fixed initial noise (and its file), a picture already at the output
    size (the resize has its own tests) and its latents through the model's
    VAE encoder: (initial, noise_path, picture, start)."""
    g = torch.Generator().manual_seed(51)
    initial, noise_path = fixed_noise(tmp, g)
    pixels = (torch.rand((HEIGHT, WIDTH, 3), generator=g) * 255).round().to(torch.uint8)
    picture = f"{tmp}/init.png"
    write_png(picture, pixels.numpy())
    image = pixels.permute(2, 0, 1)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        start = (model.encoder(image) * model.vae_config["scaling_factor"]).numpy()
    return initial, noise_path, picture, start


def check_img2img(tmp, label, model, path):
    initial, noise_path, picture, start = img2img_inputs(tmp, model)
    compare(f"{label} img2img strength 0 = the picture's latents",
            generate(tmp, path, "euler", "normal", PROMPT, noise_path, ("-i", picture, "--strength", "0")), start,
            FLOAT_BOUND)
    txt2img = generate(tmp, path, "euler", "normal", PROMPT, noise_path)
    compare(f"{label} img2img strength 1 = txt2img",
            generate(tmp, path, "euler", "normal", PROMPT, noise_path, ("-i", picture, "--strength", "1")), txt2img, 0.0)
    expected = reference_loop(model, "euler", "normal", prompts(path, PROMPT), initial.numpy(), start=start,
                              run_steps=STEPS // 2)
    compare(f"{label} img2img strength 0.5 (2 of 4 steps)",
            generate(tmp, path, "euler", "normal", PROMPT, noise_path, ("-i", picture, "--strength", "0.5")), expected,
            LOOP_BOUND)


def check_inpainting_refused(tmp):
    """The 9-channel inpainting UNet is recognised and refused, naming why."""
    model = RandomSd("sd1", 300, unet_config=dict(unet.tiny_config("sd1"), in_channels=9))
    path = f"{tmp}/inpainting.safetensors"
    model.write_single_file(path)
    result = subprocess.run([TILEDRAW, "generate", "-m", path, "-p", "x", "-o", f"{tmp}/never.png"], capture_output=True,
                            text=True)
    message = result.stderr.strip()
    expected = "a UNet of 9 input channels (inpainting); tiledraw runs the 4-channel text-to-image UNet only"
    ok = result.returncode == 2 and expected in message and not os.path.exists(f"{tmp}/never.png")
    print(f"{'ok' if ok else 'FAIL':4} inpainting UNet refused: {message}")
    if not ok:
        failures.append("inpainting UNet refused")


def main():
    torch.set_num_threads(1)
    cases = [("ddim", "default", PROMPT), ("euler", "normal", PROMPT), ("dpm++2m", "karras", PROMPT),
             ("euler", "normal", LONG_PROMPT)]
    with tempfile.TemporaryDirectory() as tmp:
        sd1 = RandomSd("sd1", 100)
        sd1.write_single_file(f"{tmp}/sd1.safetensors")
        sd1.write_folder(f"{tmp}/sd1-diffusers", os.path.join(CLIP_DATA, "hf"))
        sd2 = RandomSd("sd2", 200)
        sd2.write_single_file(f"{tmp}/sd2.safetensors")
        for label, model, path in (("sd1 file", sd1, f"{tmp}/sd1.safetensors"),
                                   ("sd1 folder", sd1, f"{tmp}/sd1-diffusers"),
                                   ("sd2 file", sd2, f"{tmp}/sd2.safetensors")):
            check_components(tmp, label, model, path)
            check_generation(tmp, label, model, path, cases if label != "sd1 folder" else cases[:1])
        check_img2img(tmp, "sd1 file", sd1, f"{tmp}/sd1.safetensors")
        check_inpainting_refused(tmp)
    if failures:
        print("failed:", *failures, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
