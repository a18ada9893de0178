#!/usr/bin/python3
"""Writes random-weight stand-ins for timing: a DiT-XL/2 (depth 28, width 1152,
16 heads, patch 2, 4 latent channels, 1000 classes, learned sigma; 675M
parameters) in the original layout, Stable Diffusion's VAE decoder and encoder
(diffusers layout) and SD 1.5's text encoder (CLIP ViT-L/14, Hugging Face
names, 123M parameters), all F16, with weights scaled like trained ones so that
sampling stays finite.

  /usr/bin/python3 tools/make_bench_models.py OUT_DIR [dit vae-decoder vae-encoder clip-l]

Without names it writes the DiT and the VAE decoder, the pair bench/ uses."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import clip_text  # noqa: E402
import dit  # noqa: E402
import st_io  # noqa: E402
import vae  # noqa: E402


def main(out, names):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    note = {"note": "random weights, for timing only"}
    if "clip-l" in names:
        sd = clip_text.random_state_dict(width=768, layers=12, mlp=3072, vocabulary=49408, positions=77, seed=2)
        st_io.save(f"{out}/sd15-text-encoder-random-f16.safetensors", {k: v.half() for k, v in sd.items()}, note)
    if "vae-encoder" in names:
        encoder = vae.randomize(vae.VaeEncoder(), seed=3)
        st_io.save(f"{out}/sd-vae-encoder-random-f16.safetensors", {k: v.half() for k, v in encoder.state_dict().items()},
                   {"config": json.dumps(encoder.config), **note})
    if "dit" in names:
        write_dit(out)
    if "vae-decoder" in names:
        decoder = vae.randomize(vae.VaeDecoder(), seed=1)
        st_io.save(f"{out}/sd-vae-decoder-random-f16.safetensors", {k: v.half() for k, v in decoder.state_dict().items()},
                   {"config": json.dumps(decoder.config), **note})
    print("wrote", out)


def write_dit(out):
    config = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16, mlp_ratio=4.0,
                  num_classes=1000, learn_sigma=True)
    model = dit.randomize(dit.DiT(**config), seed=0, scale=0.5)
    st_io.save(f"{out}/dit-xl-2-256-random-f16.safetensors", {k: v.half() for k, v in dit.state_dict(model).items()},
               {"config": json.dumps(config), "note": "random weights, for timing only"})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["dit", "vae-decoder"])
