#!/usr/bin/python3
"""Reference tier for the Stable Diffusion UNet: tiledraw's UNet against the
PyTorch one in tools/reference/unet.py, on tiny random models with every
parameter non-zero.

  /usr/bin/python3 tests/reference/test_unet.py TILEDRAW_TESTS_BINARY

Writes into a temporary folder an SD 1.x-like UNet (1x1-convolution
projections, three levels, two resnets per block, one level without
attention) and an SD 2.x-like one (linear projections, heads of size 8, 8
groups, two transformer layers at its second level), each in diffusers' layout
with its config and in the original layout under `model.diffusion_model.`
(the SD 1.x one without a config, so its shape inference is tested too);
inputs at batch 2, 48 x 32 latents, fractional timesteps, contexts of 77 and
154 tokens; and PyTorch's outputs. Then it runs the gtest UNetReference.*
(tests/unet_test.cpp), which loads every case on the float path, as 8-bit S
quantized at load, and as a file converted to 8-bit S (every matrix), runs it
and compares: the float path within 1e-4 of the largest output value
(max |tiledraw - torch| / max |torch|), 8-bit S within the RMS bound below
(against PyTorch's float weights, so it includes the weights' rounding as well
as the activations')."""
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "reference"))
import st_io  # noqa: E402
import unet  # noqa: E402

FLOAT_BOUND = 1e-4
# Each 8-bit S layer rounds its weights and its input rows to 8 bits, and
# these UNets chain 40-60 layers of 32-64 inputs. Measured (2026-12-02):
# 4.5-4.8% RMS, of which rounding the weights alone (in PyTorch) makes 2.8%.
# Bound 8%, so a broken path (tens of percent; a skip concatenated in the wrong
# order gave 135%) fails.
INT8_BOUND = 8e-2
HEIGHT, WIDTH = 48, 32
PREFIX = "model.diffusion_model."


def main():
    binary = sys.argv[1]
    g = torch.Generator().manual_seed(20261203)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed, variant in enumerate(("sd1", "sd2")):
            config = unet.tiny_config(variant)
            sd = unet.random_state_dict(config, seed)
            ldm = unet.to_ldm(sd, config, PREFIX)
            assert len(ldm) == len(sd), "the original layout's names must be distinct"
            st_io.save(f"{tmp}/{variant}-diffusers.safetensors", sd, {"config": json.dumps(config)})
            # SD 1.x checkpoints carry no config: the loader infers it from the shapes.
            st_io.save(f"{tmp}/{variant}-original.safetensors", ldm, {"config": json.dumps(config)} if variant == "sd2" else None)
            sample = torch.randn((2, config["in_channels"], HEIGHT, WIDTH), generator=g)
            timestep = torch.tensor([999.0, 37.5])
            for tokens in (77, 154):
                context = torch.randn((2, tokens, config["cross_attention_dim"]), generator=g)
                with torch.no_grad():
                    out = unet.forward(sd, config, sample, timestep, context)
                io = f"{variant}-{tokens}.io.safetensors"
                st_io.save(f"{tmp}/{io}", {"sample": sample, "timestep": timestep, "encoder_hidden_states": context, "out": out})
                for layout, prefix in (("diffusers", ""), ("original", PREFIX)):
                    cases.append({"name": f"{variant} {layout}, {tokens} tokens", "model": f"{variant}-{layout}.safetensors",
                                  "prefix": prefix, "io": io})
        with open(f"{tmp}/cases.json", "w") as f:
            json.dump({"float_bound": FLOAT_BOUND, "int8_bound": INT8_BOUND, "cases": cases}, f)
        result = subprocess.run([binary, "--gtest_filter=UNetReference.*"], env={**os.environ, "TILEDRAW_UNET_REFERENCE": tmp},
                                capture_output=True, text=True)
    print(result.stdout + result.stderr)
    if result.returncode != 0 or "[  PASSED  ] 1 test" not in result.stdout:
        sys.exit(1)


if __name__ == "__main__":
    main()
