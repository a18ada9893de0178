#!/usr/bin/python3
"""Measures what keeping a checkpoint's matrices in float buys: the output
error of each component on the 8-bit S path against the float path, and the
bytes each group costs in F16 over 8-bit S. The figures behind `convert`'s
rule (docs/FORMAT.md).

  /usr/bin/python3 tools/measure_convert_policy.py TILEDRAW_BINARY [SD15_FILE]

Models: a random SD 1.x-like checkpoint in the single-file layout, a
scaled-down SD 1.5 (UNet 64/128/256 with two levels of cross-attention, text
encoder of width 256 and 4 layers, VAE 32/64/128), and a DiT of width 256,
both F32. Rows: every matrix quantized when loaded (`forward --precision
8bit-s`); `convert`'s rule; the rule with each group also kept (`--keep`).
At SD 1.5's and DiT-XL's sizes every layer measured here has more than 4096
elements, so the smaller models are converted with `--min-elements 1` to be
treated as the full sizes are. Each runs through `tiledraw forward` on fixed
inputs. With SD15_FILE (the random
SD 1.5 stand-in; only its header is read) the SD bytes are counted on its shapes."""
import fnmatch
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import dit  # noqa: E402
import st_io  # noqa: E402
from sd_model import RandomSd  # noqa: E402

UNET = {"in_channels": 4, "out_channels": 4, "block_out_channels": [64, 128, 256], "layers_per_block": 2,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "attention_head_dim": 8, "norm_num_groups": 32, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0}

# Groups of matrices in the single-file (LDM) layout that the rule quantizes.
SD_GROUPS = {
    "unet time embedding": ["model.diffusion_model.time_embed.*"],
    "unet proj_in + proj_out": ["model.diffusion_model.*.proj_in.*", "model.diffusion_model.*.proj_out.*"],
    "unet cross-attention k, v": ["model.diffusion_model.*.attn2.to_k.*", "model.diffusion_model.*.attn2.to_v.*"],
    "vae mid attention": ["first_stage_model.*.attn_1.*"],
}
# What the rule keeps: the first and last layers.
SD_EDGE_LAYERS = ["model.diffusion_model.input_blocks.0.0.*", "model.diffusion_model.out.2.*",
                  "first_stage_model.*.conv_in.*", "first_stage_model.*.conv_out.*"]
DIT = dict(input_size=16, patch_size=2, in_channels=4, hidden_size=256, depth=4, num_heads=4, mlp_ratio=4.0,
           num_classes=1000, learn_sigma=True)
DIT_EDGE_LAYERS = ["x_embedder.*", "final_layer.linear.*"]


def run(tiledraw, *args):
    subprocess.run([tiledraw, *args], check=True, capture_output=True)


def forward(tiledraw, model, component, inputs, output, tmp, precision="auto"):
    st_io.save(f"{tmp}/in.safetensors", inputs)
    run(tiledraw, "--threads", "2", "forward", "-m", model, "--component", component, "--inputs", f"{tmp}/in.safetensors",
        "-o", f"{tmp}/out.safetensors", "--precision", precision)
    return st_io.load(f"{tmp}/out.safetensors")[0][output]


def header(path):
    return {name: entry["shape"] for name, entry in st_io.load_header(path)[0].items()}


def extra_bytes(shapes, patterns):
    """F16 bytes over 8-bit S (one byte a value and a float scale a row) of the
    matrices the patterns keep."""
    total = 0
    for name, shape in shapes.items():
        if len(shape) in (2, 4) and name.endswith("weight") and any(fnmatch.fnmatch(name, p) for p in patterns):
            numel = 1
            for d in shape:
                numel *= d
            total += numel - 4 * shape[0]
    return total


def measure(tiledraw, tmp, source, inputs, groups, edge_layers, shapes):
    """Prints the relative RMS error per component against the float path of:
    every matrix in 8-bit S (quantized when loaded), convert's rule, and the
    rule with each group kept in float too; with what each costs in F16."""
    floats = {c: forward(tiledraw, source, c, i, o, tmp, "float") for c, (i, o) in inputs.items()}
    print(f"{'matrices in float':42} " + " ".join(f"{c:>12}" for c in inputs) + f" {'F16 cost':>10}")
    rows = [("none (every matrix 8-bit S)", None, []), ("convert's rule: first and last layers", [], edge_layers)] + \
           [(f"the rule's + {name}", patterns, patterns) for name, patterns in groups.items()]
    for label, keep, costed in rows:
        model, precision = source, "8bit-s"
        if keep is not None:
            model, precision = f"{tmp}/8bit.safetensors", "auto"
            run(tiledraw, "convert", "-q", "--min-elements", "1", *[a for p in keep for a in ("--keep", p)], source, model)
        errors = []
        for component, (tensors, output) in inputs.items():
            got, expected = forward(tiledraw, model, component, tensors, output, tmp, precision), floats[component]
            errors.append(((got - expected).norm() / expected.norm()).item())
        cost = f"{extra_bytes(shapes, costed) / 2**10:8.1f} KiB" if costed else ""
        print(f"{label:42} " + " ".join(f"{e:12.2e}" for e in errors) + f" {cost:>12}", flush=True)


def main():
    tiledraw = sys.argv[1]
    g = torch.Generator().manual_seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = RandomSd("sd1", 300, unet_config=UNET, text_width=256, text_layers=4, vae_channels=(32, 64, 128),
                         vae_layers=2, vae_groups=32)
        ids = torch.full((1, 77), 49407, dtype=torch.int64)
        ids[0, 0], ids[0, 1:12] = 49406, torch.randint(300, 49000, (11,), generator=g)
        inputs = {
            "unet": ({"sample": torch.randn((2, 4, 16, 16), generator=g), "timestep": torch.tensor([500.0, 500.0]),
                      "encoder_hidden_states": torch.randn((2, 77, 256), generator=g)}, "out"),
            "text_encoder": ({"input_ids": ids}, "hidden_states"),
            "vae_decoder": ({"latents": torch.randn((1, 4, 16, 16), generator=g)}, "image"),
            "vae_encoder": ({"image": torch.rand((1, 3, 64, 64), generator=g) * 2 - 1}, "mean"),
        }
        source = f"{tmp}/sd.safetensors"
        model.write_single_file(source)
        print("Stable Diffusion 1.x, scaled down" + (f"; bytes on the shapes of {sys.argv[2]}" if len(sys.argv) > 2 else ""))
        shapes = header(sys.argv[2]) if len(sys.argv) > 2 else header(source)
        measure(tiledraw, tmp, source, inputs, SD_GROUPS, SD_EDGE_LAYERS, shapes)

        source = f"{tmp}/dit.safetensors"
        model = dit.randomize(dit.DiT(**DIT), seed=5, scale=0.5)
        st_io.save(source, dit.state_dict(model), {"config": json.dumps(DIT)})
        inputs = {"diffusion_model": ({"x": torch.randn((2, 4, 16, 16), generator=g), "t": torch.tensor([500, 500]),
                                       "y": torch.tensor([3, 1000])}, "out")}
        print("\nDiT (width 256, depth 4, patch 2, 16 x 16 latents)")
        measure(tiledraw, tmp, source, inputs, {}, DIT_EDGE_LAYERS, header(source))


if __name__ == "__main__":
    main()
