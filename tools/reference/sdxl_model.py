"""A random Stable Diffusion XL-like model in PyTorch, written as the files
tiledraw reads: its weights and configs, its PyTorch forward passes, and
writers for the single file people download and for a diffusers folder. Used
by the reference tier (tests/reference/test_sdxl.py).

SDXL, from its published architecture: two CLIP text encoders, OpenAI's
ViT-L (Hugging Face's names, QuickGELU) and OpenCLIP's ViT-bigG (OpenCLIP's
names in single files, exact GELU, a text projection); the UNet reads, as its
context, both encoders' penultimate hidden states (no final layer norm)
concatenated on the last axis, and, added to its timestep embedding, an
embedding of the bigG encoder's pooled vector (its final-normed hidden state
at each row's end-of-text token, times the projection) and of 6 size values
(unet.py describes it); three levels, the first without attention, deeper
transformers further down, linear projections; the SD VAE with scaling factor
0.13025; noise prediction on the SD discrete schedule.

  RandomSdxl(seed, ...)   tiny by default (the sizes are arguments): UNet
        32/64/128 with 1, 2, 3 transformer layers per level (heads of 64),
        text encoders of width 64 and 128 (3 layers each), a projection to 96,
        time ids embedded 8 wide; every parameter non-zero
  .write_single_file(path)   model.diffusion_model.* (original names,
        label_emb.0.0/0.2), conditioner.embedders.0.transformer.text_model.*
        (Hugging Face's names), conditioner.embedders.1.model.* (OpenCLIP's,
        with text_projection [width, projection] and logit_scale),
        first_stage_model.*; per-component configs in the "config" metadata
  .write_folder(path, tokenizer_dir)   a diffusers folder
  .round_weights(dtype)   the weights as a file of that dtype holds them
  .encode(ids1, ids2)   (context [b, 77, 64 + 128], pooled [b, 96]) of one
        77-token chunk per row: ids1 padded with end-of-text (TE1's
        tokenizer), ids2 with 0 (TE2's)
  .unet_forward(sample, t, context, text_embeds, time_ids)
  pad_after_eos(ids, pad)   each 77-token chunk's ids with everything after its
        first end-of-text set to `pad` (49407 for TE1, 0 for TE2)"""
import json
import math
import os
import shutil

import torch

import clip_text
import st_io
import unet
import vae
from sd_model import VOCABULARY, write_components

EOS = 49407
CHUNK = 77
SCALING_FACTOR = 0.13025


def tiny_unet_config(context_width, pooled_width, time_embed_dim=8, channels=(32, 64, 128), depths=(1, 2, 3)):
    """SDXL's unet/config.json at a small size: the same block types and
    options, heads of 64 channels (attention_head_dim counts heads, as in
    SDXL's [5, 10, 20]; the first level's is unused)."""
    return {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
            "addition_embed_type_num_heads": 64, "addition_time_embed_dim": time_embed_dim,
            "attention_head_dim": [max(1, c // 64) for c in channels], "block_out_channels": list(channels),
            "center_input_sample": False, "cross_attention_dim": context_width,
            "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (len(channels) - 1),
            "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
            "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-5, "norm_num_groups": 32,
            "num_attention_heads": None, "out_channels": 4,
            "projection_class_embeddings_input_dim": pooled_width + 6 * time_embed_dim, "sample_size": 16,
            "transformer_layers_per_block": list(depths),
            "up_block_types": ["CrossAttnUpBlock2D"] * (len(channels) - 1) + ["UpBlock2D"],
            "use_linear_projection": True}


def text_config(width, layers, activation, projection=None):
    """A Hugging Face CLIPTextConfig as SDXL's folders carry it (the legacy
    token ids 0/1/2 included; CLIPTextModel's has a projection_dim too, with
    no projection behind it)."""
    return {"architectures": ["CLIPTextModelWithProjection" if projection else "CLIPTextModel"],
            "model_type": "clip_text_model", "hidden_size": width, "intermediate_size": 4 * width,
            "num_hidden_layers": layers, "num_attention_heads": width // 64, "hidden_act": activation,
            "layer_norm_eps": 1e-5, "max_position_embeddings": CHUNK, "vocab_size": VOCABULARY,
            "projection_dim": projection or width, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}


def pad_after_eos(ids, pad):
    """ids [b, 77 k] with, in each 77-token chunk, every id after the chunk's
    first end-of-text set to `pad`."""
    out = ids.clone()
    for row in range(out.shape[0]):
        for start in range(0, out.shape[1], CHUNK):
            chunk = out[row, start:start + CHUNK]
            ends = (chunk == EOS).nonzero()
            if len(ends):
                chunk[int(ends[0]) + 1:] = pad
    return out


class RandomSdxl:
    """One checkpoint's weights, configs and PyTorch forward passes."""

    def __init__(self, seed, text_widths=(64, 128), text_layers=3, projection=96, time_embed_dim=8,
                 unet_channels=(32, 64, 128), unet_depths=(1, 2, 3), vae_channels=(16, 32), vae_layers=1, vae_groups=8):
        self.prediction = "eps"
        width1, width2 = text_widths
        self.te1 = clip_text.random_state_dict(width=width1, layers=text_layers, mlp=4 * width1, vocabulary=VOCABULARY,
                                               seed=seed)
        self.te2 = clip_text.random_state_dict(width=width2, layers=text_layers, mlp=4 * width2, vocabulary=VOCABULARY,
                                               projection=projection, seed=seed + 4)
        self.te1_heads, self.te2_heads = width1 // 64, width2 // 64
        self.te1_config = text_config(width1, text_layers, "quick_gelu")
        self.te2_config = text_config(width2, text_layers, "gelu", projection)
        # Both encoders are read at their penultimate layer, before the final norm.
        self.text_layers = text_layers - 1
        self.text_width = width1 + width2  # the UNet's context
        self.pooled_width = projection
        self.logit_scale = torch.tensor(math.log(1 / 0.07))  # CLIP's trained scalar: in real files, read by nobody
        self.unet_config = tiny_unet_config(self.text_width, projection, time_embed_dim, unet_channels, unet_depths)
        self.unet = unet.random_state_dict(self.unet_config, seed + 1)
        self.vae_config = dict(block_out_channels=list(vae_channels), layers_per_block=vae_layers,
                               norm_num_groups=vae_groups, scaling_factor=SCALING_FACTOR)
        shape = dict(block_out_channels=tuple(vae_channels), layers_per_block=vae_layers, norm_num_groups=vae_groups)
        self.decoder = vae.randomize(vae.VaeDecoder(latent_channels=4, out_channels=3, **shape), seed + 2).eval()
        self.encoder = vae.randomize(vae.VaeEncoder(in_channels=3, latent_channels=4, **shape), seed + 3).eval()

    def round_weights(self, dtype):
        """Every weight rounded to `dtype` and back, as a file of that dtype
        holds it, so that the forward passes here compute what it holds."""
        for state in (self.te1, self.te2, self.unet):
            for name, value in state.items():
                state[name] = value.to(dtype).float()
        for module in (self.decoder, self.encoder):
            for parameter in module.parameters():
                parameter.data = parameter.data.to(dtype).float()

    def vae_state_dict(self):
        return {**self.decoder.state_dict(), **self.encoder.state_dict()}

    def single_file_tensors(self):
        tensors = {f"model.diffusion_model.{k}": v for k, v in unet.to_ldm(self.unet, self.unet_config).items()}
        tensors.update({f"conditioner.embedders.0.transformer.{k}": v for k, v in self.te1.items()})
        openclip = dict(clip_text.to_openclip(self.te2), logit_scale=self.logit_scale)
        tensors.update({f"conditioner.embedders.1.model.{k}": v for k, v in openclip.items()})
        decoder = vae.decoder_to_original_layout(self.decoder.state_dict(), len(self.vae_config["block_out_channels"]))
        encoder = vae.encoder_to_original_layout(self.encoder.state_dict())
        tensors.update({f"first_stage_model.{k}": v for k, v in {**decoder, **encoder}.items()})
        return tensors

    def single_file_config(self):
        return {"unet": dict(self.unet_config, prediction_type="epsilon"), "text_encoder": self.te1_config,
                "text_encoder_2": self.te2_config, "vae": self.vae_config}

    def write_single_file(self, path, dtype=torch.float32, config=True):
        """With config False, no metadata: what real SDXL files hold."""
        tensors = {k: v.to(dtype) for k, v in self.single_file_tensors().items()}
        st_io.save(path, tensors, {"config": json.dumps(self.single_file_config())} if config else None)

    def write_folder(self, path, tokenizer_dir):
        os.makedirs(path)
        index = {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0",
                 "force_zeros_for_empty_prompt": True, "add_watermarker": None,
                 "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                 "text_encoder": ["transformers", "CLIPTextModel"],
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
                 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
        scheduler = {"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                     "beta_end": 0.012, "num_train_timesteps": 1000, "steps_offset": 1, "timestep_spacing": "leading",
                     "interpolation_type": "linear", "use_karras_sigmas": False, "set_alpha_to_one": False,
                     "skip_prk_steps": True, "clip_sample": False, "sample_max_value": 1.0, "trained_betas": None,
                     "prediction_type": "epsilon"}
        vae_config = dict(self.vae_config, _class_name="AutoencoderKL", in_channels=3, out_channels=3,
                          latent_channels=4, force_upcast=True)
        parts = {"unet": (self.unet, self.unet_config, "diffusion_pytorch_model"),
                 "text_encoder": (self.te1, self.te1_config, "model"),
                 "text_encoder_2": (self.te2, self.te2_config, "model"),
                 "vae": (self.vae_state_dict(), vae_config, "diffusion_pytorch_model")}
        write_components(path, parts, scheduler)
        # The same vocabulary for both; the second tokenizer pads with "!" (id 0).
        for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
            os.makedirs(f"{path}/{name}")
            for file in sorted(os.listdir(tokenizer_dir)):
                shutil.copyfile(os.path.join(tokenizer_dir, file), f"{path}/{name}/{file}")
            with open(f"{path}/{name}/special_tokens_map.json", "w") as f:
                json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": pad,
                           "unk_token": "<|endoftext|>"}, f)
        with open(f"{path}/model_index.json", "w") as f:
            json.dump(index, f)

    def encode_parts(self, ids1, ids2):
        """TE1's and TE2's penultimate hidden states [b, 77, width] and the
        pooled vector [b, projection], of one chunk per row."""
        with torch.no_grad():
            h1 = clip_text.forward(self.te1, ids1, self.te1_heads, "quick_gelu", self.text_layers, final_norm=False)
            h2 = clip_text.forward(self.te2, ids2, self.te2_heads, "gelu", self.text_layers, final_norm=False)
            full = clip_text.forward(self.te2, ids2, self.te2_heads, "gelu")
            return h1, h2, clip_text.pooled(self.te2, ids2, full)

    def encode(self, ids1, ids2):
        h1, h2, pooled = self.encode_parts(ids1, ids2)
        return torch.cat([h1, h2], dim=-1), pooled

    def unet_forward(self, sample, t, context, text_embeds, time_ids):
        with torch.no_grad():
            return unet.forward(self.unet, self.unet_config, sample, t, context, text_embeds, time_ids)
