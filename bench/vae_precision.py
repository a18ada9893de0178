#!/usr/bin/python3
"""How far an 8-bit S VAE decoder's image is from its float one: decodes one
seeded 32 x 32 latent with `tiledraw forward` through the float file, the 8-bit
S file, and the 8-bit S file on the float path (weights alone), and prints the
relative RMS error and the 8-bit pixel difference against the float file.

  /usr/bin/python3 bench/vae_precision.py TILEDRAW FLOAT_VAE 8BIT_S_VAE"""
import math
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
import st_io  # noqa: E402


def main(tiledraw, float_vae, int8_vae):
    with tempfile.TemporaryDirectory() as tmp:
        st_io.save(f"{tmp}/z.safetensors", {"z": torch.randn((1, 4, 32, 32), generator=torch.Generator().manual_seed(0))})
        outs = {}
        for name, path, precision in (("float", float_vae, "auto"), ("8-bit S", int8_vae, "auto"),
                                      ("8-bit S weights, float path", int8_vae, "float")):
            subprocess.run([tiledraw, "forward", "-m", path, "--inputs", f"{tmp}/z.safetensors", "-o", f"{tmp}/out.safetensors",
                            "--precision", precision], check=True)
            outs[name] = st_io.load(f"{tmp}/out.safetensors")[0]["image"]
    reference = outs.pop("float")
    pixels = ((reference.clamp(-1, 1) + 1) * 127.5).round()
    for name, out in outs.items():
        diff = ((out.clamp(-1, 1) + 1) * 127.5).round() - pixels
        mse = (diff ** 2).mean().item()
        psnr = 10 * math.log10(255 ** 2 / mse) if mse > 0 else float("inf")
        print(f"{name}: relative RMS {((out - reference).norm() / reference.norm()).item():.4f}, pixels: mean "
              f"{diff.abs().mean().item():.2f} levels, max {diff.abs().max().item():.0f}, PSNR {psnr:.1f} dB")


if __name__ == "__main__":
    main(*sys.argv[1:4])
