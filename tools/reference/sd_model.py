"""A random Stable Diffusion 1.x-like or 2.x-like model in PyTorch, written as
the files tiledraw reads: its weights and configs, its PyTorch forward passes,
and writers for the single file people download and for a diffusers folder.
Used by the reference tier (tests/reference/test_sd.py), the SD side-by-side
benchmark (bench/sd/run.py) and the convert policy measurement
(tools/measure_convert_policy.py).

  RandomSd(variant, seed, ...)   'sd1': CLIP with QuickGELU, conv projections,
        noise prediction; 'sd2': OpenCLIP names, GELU, linear projections, v
        prediction. Tiny by default; the sizes are arguments.
  .write_single_file(path)      model.diffusion_model.*, cond_stage_model.*,
        first_stage_model.*, per-component configs in the metadata
  .write_folder(path, tokenizer_dir)   a diffusers folder"""
import json
import os
import shutil

import torch

import clip_text
import st_io
import unet
import vae

VOCABULARY = 49408


def write_components(path, parts, scheduler):
    """A diffusers folder's component folders ({name: (tensors, config, file
    stem)}) and its scheduler/scheduler_config.json."""
    for name, (tensors, config, stem) in parts.items():
        os.makedirs(f"{path}/{name}")
        st_io.save(f"{path}/{name}/{stem}.safetensors", tensors)
        with open(f"{path}/{name}/config.json", "w") as f:
            json.dump(config, f)
    os.makedirs(f"{path}/scheduler")
    with open(f"{path}/scheduler/scheduler_config.json", "w") as f:
        json.dump(scheduler, f)


class RandomSd:
    """One checkpoint's weights, configs and PyTorch forward passes."""

    def __init__(self, variant, seed, unet_config=None, text_width=None, text_layers=3, vae_channels=(16, 32),
                 vae_layers=1, vae_groups=8):
        self.variant = variant
        sd2 = variant == "sd2"
        self.text_width = text_width or (128 if sd2 else 64)
        self.text_heads = self.text_width // 64
        self.activation = "gelu" if sd2 else "quick_gelu"
        self.text = clip_text.random_state_dict(width=self.text_width, layers=text_layers, mlp=4 * self.text_width,
                                                vocabulary=VOCABULARY, seed=seed)
        # SD 2.x reads the penultimate layer (clip skip 2), SD 1.x the last.
        self.text_layers = text_layers - 1 if sd2 else text_layers
        self.unet_config = dict(unet_config or unet.tiny_config(variant), cross_attention_dim=self.text_width)
        self.unet = unet.random_state_dict(self.unet_config, seed + 1)
        self.prediction = "v" if sd2 else "eps"
        self.vae_config = dict(block_out_channels=list(vae_channels), layers_per_block=vae_layers,
                               norm_num_groups=vae_groups, scaling_factor=0.18215)
        shape = dict(block_out_channels=tuple(vae_channels), layers_per_block=vae_layers, norm_num_groups=vae_groups)
        self.decoder = vae.randomize(vae.VaeDecoder(latent_channels=4, out_channels=3, **shape), seed + 2).eval()
        self.encoder = vae.randomize(vae.VaeEncoder(in_channels=3, latent_channels=4, **shape), seed + 3).eval()

    def vae_state_dict(self):
        return {**self.decoder.state_dict(), **self.encoder.state_dict()}

    def write_single_file(self, path, dtype=torch.float32):
        tensors = {f"model.diffusion_model.{k}": v for k, v in unet.to_ldm(self.unet, self.unet_config).items()}
        if self.variant == "sd2":
            tensors.update({f"cond_stage_model.model.{k}": v for k, v in clip_text.to_openclip(self.text).items()})
        else:
            tensors.update({f"cond_stage_model.transformer.{k}": v for k, v in self.text.items()})
        decoder = vae.decoder_to_original_layout(self.decoder.state_dict(), len(self.vae_config["block_out_channels"]))
        encoder = vae.encoder_to_original_layout(self.encoder.state_dict())
        tensors.update({f"first_stage_model.{k}": v for k, v in {**decoder, **encoder}.items()})
        unet_config = dict(self.unet_config, prediction_type="v_prediction" if self.prediction == "v" else "epsilon")
        st_io.save(path, {k: v.to(dtype) for k, v in tensors.items()},
                   {"config": json.dumps({"unet": unet_config, "vae": self.vae_config})})

    def write_folder(self, path, tokenizer_dir):
        os.makedirs(path)
        index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                 "text_encoder": ["transformers", "CLIPTextModel"], "vae": ["diffusers", "AutoencoderKL"],
                 "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"]}
        text_config = {"hidden_size": self.text_width, "num_hidden_layers": clip_text.layer_count(self.text),
                       "num_attention_heads": self.text_heads, "hidden_act": self.activation, "layer_norm_eps": 1e-5,
                       "max_position_embeddings": 77, "vocab_size": VOCABULARY}
        scheduler = {"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                     "beta_end": 0.012, "num_train_timesteps": 1000, "steps_offset": 1, "set_alpha_to_one": False,
                     "prediction_type": "v_prediction" if self.prediction == "v" else "epsilon"}
        parts = {"unet": (self.unet, self.unet_config, "diffusion_pytorch_model"),
                 "text_encoder": (self.text, text_config, "model"),
                 "vae": (self.vae_state_dict(), self.vae_config, "diffusion_pytorch_model")}
        write_components(path, parts, scheduler)
        shutil.copytree(tokenizer_dir, f"{path}/tokenizer")
        with open(f"{path}/model_index.json", "w") as f:
            json.dump(index, f)

    def encode_text(self, ids):
        with torch.no_grad():
            return clip_text.forward(self.text, ids, self.text_heads, self.activation, self.text_layers)

    def unet_forward(self, sample, t, context):
        with torch.no_grad():
            return unet.forward(self.unet, self.unet_config, sample, t, context)
