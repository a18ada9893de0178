#!/usr/bin/python3
"""Writes random-weight stand-ins for timing: a DiT-XL/2 (depth 28, width 1152,
16 heads, patch 2, 4 latent channels, 1000 classes, learned sigma; 675M
parameters) in the original layout, Stable Diffusion's VAE decoder and encoder
(diffusers layout) and SD 1.5's text encoder (CLIP ViT-L/14, Hugging Face
names, 123M parameters), all F16, with weights scaled like trained ones so that
sampling stays finite; and `sd15`, a whole Stable Diffusion 1.5 checkpoint as
people download it (one file, the original names: model.diffusion_model.* the
860M-parameter UNet, cond_stage_model.transformer.* the text encoder,
first_stage_model.* the VAE's encoder and decoder; no config, as theirs have
none), written tensor by tensor from seeded generators; and `sdxl`, SDXL base
1.0's shapes in its single-file names (the 2.6B UNet, CLIP ViT-L and OpenCLIP
ViT-bigG text encoders, the VAE).

  /usr/bin/python3 tools/make_bench_models.py OUT_DIR [dit vae-decoder vae-encoder clip-l sd15 sdxl]

Without names it writes the DiT and the VAE decoder, the pair bench/ uses."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import clip_text  # noqa: E402
import dit  # noqa: E402
import st_io  # noqa: E402
import unet  # noqa: E402
import vae  # noqa: E402



def main(out, names):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    note = {"note": "random weights, for timing only"}
    if "clip-l" in names:
        sd = clip_text.random_state_dict(width=768, layers=12, mlp=3072, vocabulary=49408, positions=77, seed=2)
        st_io.save(f"{out}/sd15-text-encoder-random-f16.safetensors", {k: v.half() for k, v in sd.items()}, note)
    if "sdxl" in names:
        write_sdxl(out, note)
    if "vae-encoder" in names:
        encoder = vae.randomize(vae.VaeEncoder(), seed=3)
        st_io.save(f"{out}/sd-vae-encoder-random-f16.safetensors", {k: v.half() for k, v in encoder.state_dict().items()},
                   {"config": json.dumps(encoder.config), **note})
    if "dit" in names:
        write_dit(out)
    if "sd15" in names:
        write_sd15(out, note)
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


def write_sd15(out, note):
    tensors = {f"model.diffusion_model.{k}": v.half()
               for k, v in unet.to_ldm(unet.random_state_dict(unet.SD15_CONFIG, seed=4), unet.SD15_CONFIG).items()}
    text = clip_text.random_state_dict(width=768, layers=12, mlp=3072, vocabulary=49408, positions=77, seed=5)
    tensors.update({f"cond_stage_model.transformer.{k}": v.half() for k, v in text.items()})
    decoder = vae.randomize(vae.VaeDecoder(), seed=6).state_dict()
    encoder = vae.randomize(vae.VaeEncoder(), seed=7).state_dict()
    halves = {**vae.decoder_to_original_layout(decoder, 4), **vae.encoder_to_original_layout(encoder)}
    tensors.update({f"first_stage_model.{k}": v.half() for k, v in halves.items()})
    st_io.save(f"{out}/sd15-random-f16.safetensors", tensors, note)


def write_sdxl(out, note):
    """SDXL base 1.0's shapes: the 2.6B UNet, CLIP ViT-L (123M) and OpenCLIP
    ViT-bigG (695M, with its text projection and logit_scale), the VAE (84M);
    sgm's single-file names."""
    tensors = {f"model.diffusion_model.{k}": v for k, v in
               unet.to_ldm(unet.random_state_dict(unet.SDXL_CONFIG, seed=8, dtype=torch.float16), unet.SDXL_CONFIG).items()}
    counts = {"unet": sum(v.numel() for v in tensors.values())}
    first = clip_text.random_state_dict(width=768, layers=12, mlp=3072, vocabulary=49408, positions=77, seed=9)
    tensors.update({f"conditioner.embedders.0.transformer.{k}": v.half() for k, v in first.items()})
    second = clip_text.random_state_dict(width=1280, layers=32, mlp=5120, vocabulary=49408, positions=77,
                                         projection=1280, seed=10)
    counts["text encoders"] = sum(v.numel() for v in first.values()) + sum(v.numel() for v in second.values())
    second = dict(clip_text.to_openclip(second), logit_scale=torch.tensor(4.6055))
    tensors.update({f"conditioner.embedders.1.model.{k}": v.half() for k, v in second.items()})
    decoder = vae.randomize(vae.VaeDecoder(), seed=11).state_dict()
    encoder = vae.randomize(vae.VaeEncoder(), seed=12).state_dict()
    halves = {**vae.decoder_to_original_layout(decoder, 4), **vae.encoder_to_original_layout(encoder)}
    tensors.update({f"first_stage_model.{k}": v.half() for k, v in halves.items()})
    counts["vae"] = sum(v.numel() for v in halves.values())
    print("parameters:", ", ".join(f"{name} {count:,}" for name, count in counts.items()))
    st_io.save(f"{out}/sdxl-random-f16.safetensors", tensors, note)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["dit", "vae-decoder"])
