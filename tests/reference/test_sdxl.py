#!/usr/bin/python3
"""Reference tier: Stable Diffusion XL text-to-image end to end, against
PyTorch models written here from the architecture.

  /usr/bin/python3 tests/reference/test_sdxl.py TILEDRAW_BINARY [CLIP_DATA_DIR]

A tiny random SDXL-like checkpoint (tools/reference/sdxl_model.py: a CLIP
ViT-L-like text encoder in Hugging Face's names with QuickGELU, an OpenCLIP
bigG-like one with exact GELU and a text projection, a UNet of three levels
with no attention in the first, 1/2/3 transformer layers, linear projections
and the extra embedding of the pooled vector and the 6 size values; the SD VAE
with scaling factor 0.13025), every parameter non-zero, written as the single
file people download (model.diffusion_model.*, conditioner.embedders.0/1.*,
first_stage_model.*, with configs in the metadata) and as a diffusers folder.
Checked:

- `tiledraw inspect` names the file's family sdxl, runnable;
- `tiledraw forward` of text_encoder (input_ids padded with end-of-text for
  the first encoder, input_ids_2 padded with 0 for the second; hidden_states
  [batch, 77 k, 64 + 128] from both penultimate layers, pooled [batch, 96]
  from each row's first chunk), unet (with text_embeds and time_ids),
  vae_encoder and vae_decoder against the PyTorch forward of the same weights:
  float within 1e-4 of the largest output; the UNet as 8-bit S within the RMS
  bound below;
- a 4-step guided txt2img from fixed initial noise (`generate
  --initial-noise`) against the same loop in PyTorch: with a weighted prompt
  and a negative prompt (ddim with SD's leading timesteps, and euler), with an
  empty negative prompt (force_zeros_for_empty_prompt: the unconditional
  context and pooled vector are zeros), with `--original-size 64x48 --crop 4,8
  --target-size 32x24` (time ids [48, 64, 4, 8, 24, 32]; by default they are
  [H, W, 0, 0, H, W] of the image asked for), and with a prompt of two
  77-token chunks; the folder with the first and the empty negative;
- img2img: strength 0 returns the picture's latents (SDXL's scaling factor),
  strength 1 is txt2img from the same noise, strength 0.5 runs the last 2 of 4
  steps from the picture noised to their first sigma;
- a second model as real files come: BF16 and without configs, so that
  everything is read off the shapes (SDXL's 256-wide size sinusoids, the
  VAE's groups and SDXL's scaling factor): its components and two
  generations, and `tiledraw convert` of the whole file to 8-bit S; the
  folder converted into a new folder too.

The token ids come from `tiledraw tokenize --json` (the tokenizer has its own
tests against hand-checked ids); the second encoder's are the same with 0
after each chunk's first end-of-text. The prompt weighting is done here, as in
test_sd.py, for each encoder on its own part of the context (each token's
hidden state times its weight, the chunk rescaled to that encoder's former
mean); the pooled vector is unweighted and comes from the first chunk. The
unconditional rows use the same time ids as the conditional ones."""
import json
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
import noise as noise_streams  # noqa: E402
import samplers  # noqa: E402
import schedule  # noqa: E402
import st_io  # noqa: E402
from sdxl_model import EOS, RandomSdxl, pad_after_eos  # noqa: E402
from judge import judge  # noqa: E402
# The same tiny sizes, prompts, loop and float bounds as SD 1.x/2.x's tier, and
# its helpers that run tiledraw (with the same arguments: binary, CLIP data).
from test_sd import (CFG, CLIP_DATA, FLOAT_BOUND, HEIGHT, LONG_PROMPT, LOOP_BOUND, NEGATIVE, PROMPT, SEED, STEPS,  # noqa: E402
                     WIDTH, fixed_noise, img2img_inputs, run, tokenize)

# 8-bit S rounds every matrix's weights per row and its input rows to 8 bits;
# this UNet chains more layers than test_sd.py's (transformers 1-3 deep, 2
# resnets per block) and its extra embedding. Measured (2026-12-03): 6.3% RMS
# (tiledraw, this file). Estimated in PyTorch, rounding weights and matmul
# input rows (a convolution's im2col rows) as docs/FORMAT.md defines 8-bit S:
# 6.0-6.9% on three seeds, where the same estimate gives 4.8-5.3% for
# test_sd.py's UNets and tiledraw 4.7-4.9%. Bound 10%, so that a broken path
# (tens of percent) fails.
INT8_BOUND = 1e-1
# LOOP_BOUND as test_sd.py's. Measured here (2026-12-03): 2.6e-6 to 3.3e-6
# (PyTorch's own loop in float64 against float32: 1.9e-6 to 2.7e-6). A wrong
# convention costs far more: the emphasis rescaled on the whole context
# instead of per encoder 2.1e-2, time ids as (width, height) 4.9e-2 to
# 6.5e-2, the size options ignored 6.5e-2, the pooled vector from the last
# chunk 9.5e-2, the empty negative encoded instead of zeros 4.9e-1, the second
# encoder's ids padded with end-of-text 8.9e-1.
LONG_PROMPT_2 = " ".join(["an old (blue:0.8) sphere"] * 24)  # 96 tokens: two chunks, other end-of-text positions
SIZE_FLAGS = ("--original-size", "64x48", "--crop", "4,8", "--target-size", "32x24")
SIZE_TIME_IDS = [48, 64, 4, 8, 24, 32]  # original (h, w), crop (top, left), target (h, w)
DEFAULT_TIME_IDS = [HEIGHT, WIDTH, 0, 0, HEIGHT, WIDTH]

failures = []


def compare(label, got, expected, bound, metric="max"):
    if got is None:  # an output tiledraw did not write
        failures.append(f"{label}: no such output")
        print("FAIL", failures[-1], flush=True)
        return
    judge(failures, label, got, expected, bound, metric)


def forward(tmp, model_path, component, inputs, precision="float"):
    """All of the outputs."""
    st_io.save(f"{tmp}/in.safetensors", inputs)
    run("forward", "-m", model_path, "--component", component, "--inputs", f"{tmp}/in.safetensors",
        "-o", f"{tmp}/out.safetensors", "--precision", precision)
    return st_io.load(f"{tmp}/out.safetensors")[0]


def encoder_ids(ids):
    """The first encoder's ids (end-of-text after each chunk's first one) and
    the second's (0 after it), whatever the tokenizer padded with."""
    return pad_after_eos(ids, EOS), pad_after_eos(ids, 0)


def emphasis(z, weights):
    """A1111's: each token's hidden state times its weight, then the chunk
    rescaled to its former mean (test_sd.py's context())."""
    w = torch.tensor(weights, dtype=torch.float32)
    if not bool((w != 1.0).any()):
        return z
    before = z.double().mean()
    z = z * w[None, :, None]
    return z * (before / z.double().mean()).float()


def conditioning(model, chunks):
    """(context [1, 77 k, 64 + 128], pooled [1, 96]) of one prompt's chunks:
    each encoder's part weighted on its own, chunk by chunk; the pooled vector
    from the first chunk, unweighted."""
    parts, pooled = [], None
    for ids, weights in chunks:
        h1, h2, p = model.encode_parts(*encoder_ids(torch.tensor([ids])))
        parts.append(torch.cat([emphasis(h1, weights), emphasis(h2, weights)], dim=-1))
        pooled = p if pooled is None else pooled
    return torch.cat(parts, dim=1), pooled


class SdxlDenoiser:
    """test_sd.py's SdDenoiser (noise prediction) with SDXL's extra inputs: the
    conditional and unconditional rows' pooled vectors and the same time ids."""

    def __init__(self, model, discrete, cond, uncond, time_ids, cfg):
        self.model, self.schedule, self.cfg = model, discrete, cfg
        self.cond, self.uncond = cond, uncond  # (context, pooled) each
        self.time_ids = torch.tensor([time_ids], dtype=torch.float32)

    def __call__(self, x, sigma):
        images = x.shape[0]
        x_in = samplers.f32(samplers.f64(x) * (1.0 / np.sqrt(1.0 + sigma * sigma)))
        batch = torch.from_numpy(np.concatenate([x_in, x_in]))
        t = torch.full((2 * images,), float(np.float32(self.schedule.sigma_to_t(sigma))), dtype=torch.float32)
        rows = lambda pair, i: pair[i].expand(images, *pair[i].shape[1:])  # noqa: E731
        ctx = torch.cat([rows(self.cond, 0), rows(self.uncond, 0)])
        pooled = torch.cat([rows(self.cond, 1), rows(self.uncond, 1)])
        out = self.model.unet_forward(batch, t, ctx, pooled, self.time_ids.expand(2 * images, -1)).numpy()
        cond, uncond = samplers.f64(out[:images]), samplers.f64(out[images:])
        guided = samplers.f32(uncond + self.cfg * (cond - uncond))
        denoised = samplers.f64(x) - sigma * samplers.f64(guided)
        return samplers.f32(denoised), np.full_like(guided, -1.0)


def prompts(path, prompt, negative):
    """The chunks of the prompt, of the negative prompt (None when empty: its
    conditioning is zeros) and of the empty prompt (what the shorter is padded with)."""
    return tokenize(path, prompt), tokenize(path, negative) if negative else None, tokenize(path, "")


def reference_loop(model, sampler, scheduler, prompts, initial, time_ids, start=None, run_steps=STEPS):
    """The sampled latents."""
    prompt_chunks, negative_chunks, empty = prompts
    discrete = schedule.DiscreteSchedule(1000, 0.00085, 0.012, scaled=True, leading=True)
    sigmas = schedule.sigmas(discrete, scheduler, sampler, STEPS)[STEPS - run_steps:]
    streams = noise_streams.BatchNoise(SEED, 1, initial.shape[1:])
    streams.draw()  # the initial fill, drawn even when the noise is given
    clean = 0.0 if start is None else samplers.f64(start)
    x = samplers.f32(clean + samplers.f64(initial) * sigmas[0])
    chunks = max(len(prompt_chunks), len(negative_chunks or []))
    cond = conditioning(model, prompt_chunks + empty * (chunks - len(prompt_chunks)))
    if negative_chunks is None:  # force_zeros_for_empty_prompt
        uncond = (torch.zeros_like(cond[0]), torch.zeros_like(cond[1]))
    else:
        uncond = conditioning(model, negative_chunks + empty * (chunks - len(negative_chunks)))
    x = samplers.sample(sampler, SdxlDenoiser(model, discrete, cond, uncond, time_ids, CFG), sigmas, x, streams)
    if sigmas[-1] > 0:  # DDIM to timestep 0 (set_alpha_to_one false): diffusers' variance-preserving sample
        x = samplers.f32(samplers.f64(x) / np.sqrt(1.0 + sigmas[-1] ** 2))
    return x


def generate(tmp, model_path, sampler, scheduler, prompt, negative, noise_path, extra=()):
    out = f"{tmp}/latents.safetensors"
    run("generate", "-q", "-m", model_path, "-p", prompt, "-n", negative, "--steps", str(STEPS), "--sampler", sampler,
        "--scheduler", scheduler, "--cfg-scale", str(CFG), "--seed", str(SEED), "-W", str(WIDTH), "-H", str(HEIGHT),
        "--precision", "float", "--vae-precision", "float", "--tokenizer", os.path.join(CLIP_DATA, "hf"),
        "--initial-noise", noise_path, "--output-latents", out, "-o", f"{tmp}/image.png", *extra)
    return st_io.load(out)[0]["latents"].numpy()


def check_family(label, path):
    model = json.loads(run("inspect", "--json", path))["model"]
    ok = model["family"] == "sdxl" and model["supported"]
    print(f"{'ok' if ok else 'FAIL':4} {label} inspect: {model['family']}, {model['description']}"
          f"{'' if model['supported'] else ' (not supported)'}", flush=True)
    if not ok:
        failures.append(f"{label} inspect")


def check_components(tmp, label, model, path):
    chunks = [tokenize(path, p) for p in (LONG_PROMPT, LONG_PROMPT_2)]
    assert all(len(c) == 2 for c in chunks), "both prompts make two chunks"
    ids1, ids2 = encoder_ids(torch.tensor([[i for ids, _ in c for i in ids] for c in chunks]))
    out = forward(tmp, path, "text_encoder", {"input_ids": ids1, "input_ids_2": ids2})
    parts = [model.encode(ids1[:, i:i + 77], ids2[:, i:i + 77]) for i in range(0, ids1.shape[1], 77)]
    compare(f"{label} text_encoder hidden_states (2 rows of 2 chunks)", out.get("hidden_states"),
            torch.cat([p[0] for p in parts], dim=1), FLOAT_BOUND)
    compare(f"{label} text_encoder pooled", out.get("pooled"), parts[0][1], FLOAT_BOUND)

    g = torch.Generator().manual_seed(31)
    sample = torch.randn((2, 4, 12, 16), generator=g)
    t = torch.tensor([999.0, 37.5])
    ctx = torch.randn((2, 154, model.text_width), generator=g)
    pooled = torch.randn((2, model.pooled_width), generator=g)
    # A realistic row (SDXL's 1024 x 768) and an odd one.
    time_ids = torch.tensor([[1024.0, 768.0, 0.0, 0.0, 1024.0, 768.0], [577.0, 1311.0, 37.0, 5.0, 896.0, 1152.0]])
    inputs = {"sample": sample, "timestep": t, "encoder_hidden_states": ctx, "text_embeds": pooled, "time_ids": time_ids}
    expected = model.unet_forward(sample, t, ctx, pooled, time_ids)
    compare(f"{label} unet", forward(tmp, path, "unet", inputs).get("out"), expected, FLOAT_BOUND)
    compare(f"{label} unet 8-bit S", forward(tmp, path, "unet", inputs, "8bit-s").get("out"), expected, INT8_BOUND,
            "rms")

    image = torch.rand((1, 3, 16, 24), generator=g) * 2 - 1
    with torch.no_grad():
        compare(f"{label} vae_encoder", forward(tmp, path, "vae_encoder", {"image": image}).get("mean"),
                model.encoder(image), FLOAT_BOUND)
        z = torch.randn((1, 4, 8, 12), generator=g)
        compare(f"{label} vae_decoder", forward(tmp, path, "vae_decoder", {"latents": z}).get("image"), model.decoder(z),
                FLOAT_BOUND)


def check_generation(tmp, label, model, path, cases):
    initial, noise_path = fixed_noise(tmp, torch.Generator().manual_seed(41))
    for sampler, scheduler, prompt, negative, extra, time_ids in cases:
        chunks = len(tokenize(path, prompt))
        what = [f"{chunks} chunk{'s' if chunks > 1 else ''}", "negative" if negative else "empty negative"]
        name = f"{label} txt2img {sampler} {scheduler}, {', '.join(what + [' '.join(extra)] if extra else what)}"
        try:
            got = generate(tmp, path, sampler, scheduler, prompt, negative, noise_path, extra)
        except RuntimeError as e:  # one case refused; the others still run
            failures.append(name)
            print(f"FAIL {name}: {e}", flush=True)
            continue
        expected = reference_loop(model, sampler, scheduler, prompts(path, prompt, negative), initial.numpy(), time_ids)
        compare(name, got, expected, LOOP_BOUND)


def check_img2img(tmp, label, model, path):
    initial, noise_path, picture, start = img2img_inputs(tmp, model)
    compare(f"{label} img2img strength 0 = the picture's latents (scaling factor 0.13025)",
            generate(tmp, path, "euler", "normal", PROMPT, NEGATIVE, noise_path, ("-i", picture, "--strength", "0")),
            start, FLOAT_BOUND)
    txt2img = generate(tmp, path, "euler", "normal", PROMPT, NEGATIVE, noise_path)
    compare(f"{label} img2img strength 1 = txt2img",
            generate(tmp, path, "euler", "normal", PROMPT, NEGATIVE, noise_path, ("-i", picture, "--strength", "1")),
            txt2img, 0.0)
    expected = reference_loop(model, "euler", "normal", prompts(path, PROMPT, NEGATIVE), initial.numpy(),
                              DEFAULT_TIME_IDS, start=start, run_steps=STEPS // 2)
    compare(f"{label} img2img strength 0.5 (2 of 4 steps)",
            generate(tmp, path, "euler", "normal", PROMPT, NEGATIVE, noise_path, ("-i", picture, "--strength", "0.5")),
            expected, LOOP_BOUND)


CASES = [("ddim", "default", PROMPT, NEGATIVE, (), DEFAULT_TIME_IDS),
         ("euler", "normal", PROMPT, NEGATIVE, (), DEFAULT_TIME_IDS),
         ("euler", "normal", PROMPT, "", (), DEFAULT_TIME_IDS),
         ("euler", "normal", PROMPT, NEGATIVE, SIZE_FLAGS, SIZE_TIME_IDS),
         ("euler", "normal", LONG_PROMPT, NEGATIVE, (), DEFAULT_TIME_IDS)]


def check_converted(tmp, label, model, path):
    """`tiledraw convert` of the whole checkpoint (a file, or a folder into a
    new folder): the 8-bit S model is still SDXL, and its UNet runs as stored
    within the 8-bit S bound of PyTorch."""
    converted = f"{tmp}/{os.path.basename(path).replace('.safetensors', '')}-8bit-s" + (
        "" if os.path.isdir(path) else ".safetensors")
    run("convert", "-q", path, converted)
    check_family(f"{label}, converted to 8-bit S", converted)
    g = torch.Generator().manual_seed(61)
    t = torch.tensor([500.0])
    inputs = {"sample": torch.randn((1, 4, 8, 8), generator=g), "timestep": t,
              "encoder_hidden_states": torch.randn((1, 77, model.text_width), generator=g),
              "text_embeds": torch.randn((1, model.pooled_width), generator=g),
              "time_ids": torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]])}
    expected = model.unet_forward(*(inputs[k] for k in ("sample", "timestep", "encoder_hidden_states", "text_embeds",
                                                        "time_ids")))
    compare(f"{label}, converted: unet as stored", forward(tmp, converted, "unet", inputs, "auto").get("out"), expected,
            INT8_BOUND, "rms")


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = RandomSdxl(500)
        model.write_single_file(f"{tmp}/sdxl.safetensors")
        model.write_folder(f"{tmp}/sdxl-diffusers", os.path.join(CLIP_DATA, "hf"))
        check_family("sdxl file", f"{tmp}/sdxl.safetensors")
        for label, path, cases in (("sdxl file", f"{tmp}/sdxl.safetensors", CASES),
                                   ("sdxl folder", f"{tmp}/sdxl-diffusers", CASES[1:3])):
            check_components(tmp, label, model, path)
            check_generation(tmp, label, model, path, cases)
        check_img2img(tmp, "sdxl file", model, f"{tmp}/sdxl.safetensors")
        # As real files come: BF16, no configs (everything read off the shapes:
        # SDXL's 256-wide size sinusoids, the VAE's 32 groups, its 0.13025).
        bare_label, bare_path = "sdxl BF16 file without metadata", f"{tmp}/sdxl-bare.safetensors"
        bare = RandomSdxl(600, time_embed_dim=256, vae_channels=(32, 64), vae_groups=32)
        bare.round_weights(torch.bfloat16)
        bare.write_single_file(bare_path, torch.bfloat16, config=False)
        check_family(bare_label, bare_path)
        check_components(tmp, bare_label, bare, bare_path)
        check_generation(tmp, bare_label, bare, bare_path, CASES[2:4])
        check_converted(tmp, bare_label, bare, bare_path)
        check_converted(tmp, "sdxl folder", model, f"{tmp}/sdxl-diffusers")
    if failures:
        print("failed:", *failures, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
