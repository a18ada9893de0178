#!/usr/bin/python3
"""Writes random-weight stand-ins for timing: a DiT-XL/2 (depth 28, width 1152,
16 heads, patch 2, 4 latent channels, 1000 classes, learned sigma; 675M
parameters) in the original layout and Stable Diffusion's VAE decoder
(diffusers layout), both F16, with weights scaled like trained ones so that
sampling stays finite.

  /usr/bin/python3 tools/make_bench_models.py OUT_DIR"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import dit  # noqa: E402
import st_io  # noqa: E402
import vae  # noqa: E402


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    config = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16, mlp_ratio=4.0,
                  num_classes=1000, learn_sigma=True)
    model = dit.randomize(dit.DiT(**config), seed=0, scale=0.5)
    st_io.save(f"{out}/dit-xl-2-256-random-f16.safetensors", {k: v.half() for k, v in dit.state_dict(model).items()},
               {"config": json.dumps(config), "note": "random weights, for timing only"})
    del model
    decoder = vae.randomize(vae.VaeDecoder(), seed=1)
    st_io.save(f"{out}/sd-vae-decoder-random-f16.safetensors", {k: v.half() for k, v in decoder.state_dict().items()},
               {"config": json.dumps(decoder.config), "note": "random weights, for timing only"})
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
