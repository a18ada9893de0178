#!/usr/bin/python3
"""Reference tier: `tiledraw generate`'s samplers and schedulers against an
independent PyTorch/numpy implementation of k-diffusion's definitions.

  /usr/bin/python3 tests/reference/test_samplers.py TILEDRAW_BINARY [SAMPLER[:SCHEDULER] ...]

A tiny random latent DiT (4 channels, learned variance, every parameter
non-zero) with a tiny random VAE, both F32 safetensors: every sampler with every
scheduler, 4 steps, classes 3 and 7 one image each, guidance 3, from the same
initial noise (--initial-noise) and the same per-image noise streams. The
sampled latents (--output-latents) must agree: max|tiledraw - torch| /
max|torch| <= 1e-5. Then one run from the seeded initial noise, and the
bundled pixel-space model (1 channel, no VAE, so the clean estimate is clipped
to [-1, 1]) with ddim and euler_a (bound 1e-4: see PIXEL_BOUND). Arguments
after the binary pick cases (euler, or euler:karras)."""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "reference"))
import dit  # noqa: E402
import noise as noise_streams  # noqa: E402
import samplers  # noqa: E402
import schedule  # noqa: E402
import st_io  # noqa: E402
import vae  # noqa: E402

# Both sides compute in float32 with float64 updates; the remaining differences
# are the model's float32 forward passes (tiledraw's kernels against PyTorch's,
# ~4e-7 of the output). Measured (2026-12-02): 0.9-4.5e-6 on the latent cases.
# A random model cannot denoise, so its first clean estimate (~1e3) dominates
# the samples; the later steps still move them by percents, far above the
# bound: 5% on dpm++2m's 1/(2r) fails by 2e-3, 1% on the exponential
# scheduler's sigma_min by 5e-4, whole instead of fractional timesteps by 2e-4.
BOUND = 1e-5
# The pixel model's samples are within [-1, 1] but its first clean estimate,
# x - sigma eps at sigma_max = 157, multiplies the forward pass's float32 error
# by 157: the same reference with PyTorch's model in float64 instead of float32
# moves by 1.8e-5 (ddim) and 1.4e-5 (euler_a), and tiledraw is 3.7e-5 and
# 2.4e-5 from the float32 one. 1e-5 is below what float32 can hold here; a wrong
# convention costs far more (no clip: 0.5; ddim's step off by 1%: 5e-2).
PIXEL_BOUND = 1e-4
STEPS, CFG, SEED, CLASSES = 4, 3.0, 5, (3, 7)
HERE = os.path.dirname(os.path.abspath(__file__))

TILEDRAW = sys.argv[1]
SELECTED = sys.argv[2:]
failures = []
results = []


def selected(sampler, scheduler):
    return not SELECTED or any(s in (sampler, f"{sampler}:{scheduler}") for s in SELECTED)


def run_generate(tmp, model_path, vae_path, sampler, scheduler, initial_noise):
    out = f"{tmp}/latents-{sampler}-{scheduler}.safetensors"
    args = [TILEDRAW, "generate", "-q", "-m", model_path, "--class", ",".join(map(str, CLASSES)), "-b", "1",
            "--steps", str(STEPS), "--sampler", sampler, "--scheduler", scheduler, "--cfg-scale", str(CFG),
            "--seed", str(SEED), "--precision", "float", "--output-latents", out, "-o", f"{tmp}/image.png"]
    if vae_path:
        args += ["--vae", vae_path, "--vae-precision", "float"]
    if initial_noise:
        args += ["--initial-noise", initial_noise]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return st_io.load(out)[0]["latents"].numpy()


def reference(model, config, sampler, scheduler, initial, clip):
    """The sampled latents of images (class CLASSES[i], seed SEED + i)."""
    discrete = schedule.DiscreteSchedule()
    sigmas = schedule.sigmas(discrete, scheduler, sampler, STEPS)
    channels, size = config["in_channels"], config["input_size"]
    streams = noise_streams.BatchNoise(SEED, len(CLASSES), (channels, size, size))
    seeded = streams.draw()  # the initial fill, drawn even when the noise is given
    x = samplers.f32(samplers.f64(seeded if initial is None else initial) * sigmas[0])
    denoise = samplers.GuidedDenoiser(model, discrete, CLASSES, config["num_classes"], CFG, channels,
                                      config["learn_sigma"], clip)
    return samplers.sample(sampler, denoise, sigmas, x, streams)


def compare(label, got, expected, bound=BOUND):
    if got.shape != expected.shape:
        failures.append(f"{label}: shape {got.shape}, expected {expected.shape}")
        print(f"FAIL {label}: shape {got.shape}, expected {expected.shape}")
        return
    error = float(np.abs(got.astype(np.float64) - expected).max() / np.abs(expected).max())
    verdict = "ok" if error <= bound else "FAIL"
    results.append((label, error))
    print(f"{verdict:4} {label}: max {error:.2e} (bound {bound:.0e}), max|torch| {np.abs(expected).max():.3g}",
          flush=True)
    if error > bound:
        failures.append(label)


def latent_tests(tmp):
    config = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, mlp_ratio=4.0,
                  num_classes=10, learn_sigma=True)
    model = dit.randomize(dit.DiT(**config), seed=21).eval()
    model_path = f"{tmp}/dit.safetensors"
    st_io.save(model_path, dit.state_dict(model), {"config": json.dumps(config)})
    decoder = vae.randomize(vae.VaeDecoder(latent_channels=4, out_channels=3, block_out_channels=(16, 32),
                                           layers_per_block=1, norm_num_groups=8), seed=22)
    vae_path = f"{tmp}/vae.safetensors"
    st_io.save(vae_path, decoder.state_dict(), {"config": json.dumps(decoder.config)})

    g = torch.Generator().manual_seed(23)
    initial = torch.randn((len(CLASSES), 4, 8, 8), generator=g)
    noise_path = f"{tmp}/noise.safetensors"
    st_io.save(noise_path, {"noise": initial})
    for sampler in samplers.SAMPLERS:
        for scheduler in schedule.SCHEDULERS:
            if not selected(sampler, scheduler):
                continue
            got = run_generate(tmp, model_path, vae_path, sampler, scheduler, noise_path)
            compare(f"latent {sampler:11} {scheduler:11}", got,
                    reference(model, config, sampler, scheduler, initial.numpy(), clip=False))
    # The seeded initial noise, without a file.
    if selected("euler_a", "karras"):
        got = run_generate(tmp, model_path, vae_path, "euler_a", "karras", None)
        compare(f"latent {'euler_a':11} {'karras':11} seeded noise", got,
                reference(model, config, "euler_a", "karras", None, clip=False))


def pixel_tests(tmp):
    """The bundled model, dequantized (a trained model: a random one's samples
    would sit at the clip bounds), read as float by tiledraw."""
    path = os.path.join(HERE, "..", "..", "models", "fashion-dit-8bit-s.safetensors")
    tensors, metadata = st_io.load(path)
    config = json.loads(metadata["config"])
    model = dit.DiT(**config).eval()
    model.load_state_dict(st_io.dequantize_8bit_s(tensors))
    size, channels = config["input_size"], config["in_channels"]
    g = torch.Generator().manual_seed(24)
    initial = torch.randn((len(CLASSES), channels, size, size), generator=g)
    noise_path = f"{tmp}/pixel-noise.safetensors"
    st_io.save(noise_path, {"noise": initial})
    for sampler in ("ddim", "euler_a"):
        if not selected(sampler, "default"):
            continue
        got = run_generate(tmp, path, None, sampler, "default", noise_path)
        expected = reference(model, config, sampler, "default", initial.numpy(), clip=True)
        compare(f"pixel  {sampler:11} {'default':11}", got, expected, PIXEL_BOUND)
        print(f"     ({int((np.abs(expected) >= 1.0).sum())} of {expected.size} values at the clip bounds)")


def main():
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        latent_tests(tmp)
        pixel_tests(tmp)
    if results:
        worst = max(results, key=lambda r: r[1])
        print(f"{len(results)} cases in {time.perf_counter() - start:.1f} s; "
              f"largest error {worst[1]:.2e} ({' '.join(worst[0].split())})")
    if failures:
        print("failed:", *failures, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
