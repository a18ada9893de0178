"""Stable Diffusion's VAE (diffusers' AutoencoderKL) in PyTorch, written from
the public architecture description with diffusers' parameter names. The
decoder: conv_in, a mid block of resnet-attention-resnet, up blocks of resnets
with nearest 2x upsampling, group norm, SiLU, conv_out; VaeDecoder(z) is
AutoencoderKL.decode(z).sample. The encoder: conv_in, down blocks of resnets
with a stride-2 convolution after all but the last, the mid block, group norm,
SiLU, conv_out to a mean and a log-variance per latent channel, quant_conv;
VaeEncoder(x) is AutoencoderKL.encode(x).latent_dist.mean. Reference for
tiledraw's VAE decoder and encoder."""
import math

import torch
from torch import nn
import torch.nn.functional as F


class Resnet(nn.Module):
    def __init__(self, cin, cout, groups, eps=1e-6):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class SpatialAttention(nn.Module):
    """Single-head self-attention over the pixels, with a residual."""

    def __init__(self, channels, groups, eps=1e-6):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(t), self.to_k(t), self.to_v(t)
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1) @ v
        return x + self.to_out[0](a).transpose(1, 2).reshape(b, c, h, w)


class MidBlock(nn.Module):
    def __init__(self, channels, groups):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(channels, channels, groups), Resnet(channels, channels, groups)])
        self.attentions = nn.ModuleList([SpatialAttention(channels, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Upsampler(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UpBlock(nn.Module):
    def __init__(self, cin, cout, layers, groups, upsample):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsampler(cout)]) if upsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return self.upsamplers[0](x) if self.upsamplers is not None else x


class Decoder(nn.Module):
    def __init__(self, latent_channels, out_channels, block_out_channels, layers_per_block, groups):
        super().__init__()
        top = block_out_channels[-1]
        self.conv_in = nn.Conv2d(latent_channels, top, 3, padding=1)
        self.mid_block = MidBlock(top, groups)
        reversed_channels = list(reversed(block_out_channels))
        blocks, cin = [], top
        for i, cout in enumerate(reversed_channels):
            blocks.append(UpBlock(cin, cout, layers_per_block + 1, groups, i < len(block_out_channels) - 1))
            cin = cout
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(groups, block_out_channels[0], eps=1e-6)
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VaeDecoder(nn.Module):
    """AutoencoderKL's decode path: post_quant_conv, then the decoder."""

    def __init__(self, latent_channels=4, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                 norm_num_groups=32, scaling_factor=0.18215):
        super().__init__()
        self.config = dict(latent_channels=latent_channels, out_channels=out_channels,
                           block_out_channels=list(block_out_channels), layers_per_block=layers_per_block,
                           norm_num_groups=norm_num_groups, scaling_factor=scaling_factor)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.decoder = Decoder(latent_channels, out_channels, list(block_out_channels), layers_per_block, norm_num_groups)

    def forward(self, z):
        return self.decoder(self.post_quant_conv(z))


class Downsampler(nn.Module):
    """Padded by one row and column after (bottom, right) only, then a 3x3
    convolution of stride 2: diffusers' Downsample2D with padding 0."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class DownBlock(nn.Module):
    def __init__(self, cin, cout, layers, groups, downsample):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.downsamplers = nn.ModuleList([Downsampler(cout)]) if downsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return self.downsamplers[0](x) if self.downsamplers is not None else x


class Encoder(nn.Module):
    def __init__(self, in_channels, latent_channels, block_out_channels, layers_per_block, groups):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        blocks, cin = [], block_out_channels[0]
        for i, cout in enumerate(block_out_channels):
            blocks.append(DownBlock(cin, cout, layers_per_block, groups, i < len(block_out_channels) - 1))
            cin = cout
        self.down_blocks = nn.ModuleList(blocks)
        top = block_out_channels[-1]
        self.mid_block = MidBlock(top, groups)
        self.conv_norm_out = nn.GroupNorm(groups, top, eps=1e-6)
        self.conv_out = nn.Conv2d(top, 2 * latent_channels, 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class VaeEncoder(nn.Module):
    """AutoencoderKL's encode path: the encoder, then quant_conv; the output is
    the posterior's mean (the first half of the moments), not scaled."""

    def __init__(self, in_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                 norm_num_groups=32, scaling_factor=0.18215):
        super().__init__()
        self.config = dict(in_channels=in_channels, latent_channels=latent_channels,
                           block_out_channels=list(block_out_channels), layers_per_block=layers_per_block,
                           norm_num_groups=norm_num_groups, scaling_factor=scaling_factor)
        self.encoder = Encoder(in_channels, latent_channels, list(block_out_channels), layers_per_block, norm_num_groups)
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)

    def forward(self, x):
        return self.quant_conv(self.encoder(x)).chunk(2, dim=1)[0]


def encoder_to_original_layout(state_dict):
    """An encoder's weights in the original (LDM) names: down blocks keep their
    order, resnets are `block`, shortcuts `nin_shortcut`, the mid block's parts
    block_1, attn_1 (q, k, v, proj_out as 1x1 convolutions) and block_2."""
    renames = [("encoder.mid_block.resnets.0.", "encoder.mid.block_1."), ("encoder.mid_block.resnets.1.", "encoder.mid.block_2."),
               ("encoder.mid_block.attentions.0.", "encoder.mid.attn_1."), ("encoder.down_blocks.", "encoder.down."),
               (".resnets.", ".block."), ("conv_shortcut", "nin_shortcut"), (".downsamplers.0.", ".downsample."),
               ("attn_1.group_norm.", "attn_1.norm."), ("attn_1.to_q.", "attn_1.q."), ("attn_1.to_k.", "attn_1.k."),
               ("attn_1.to_v.", "attn_1.v."), ("attn_1.to_out.0.", "attn_1.proj_out."), ("encoder.conv_norm_out.", "encoder.norm_out.")]
    out = {}
    for name, t in state_dict.items():
        for old, new in renames:
            name = name.replace(old, new)
        if ".attn_1." in name and name.endswith("weight") and t.dim() == 2:
            t = t[:, :, None, None]
        out[name] = t
    return out


def decoder_to_original_layout(state_dict, levels):
    """A decoder's weights in the original (LDM) names: up blocks numbered from
    the latent side the other way round (up.{levels - 1 - i}), resnets `block`,
    shortcuts `nin_shortcut`, the upsampler `upsample.conv`, the mid block's
    parts block_1, attn_1 (q, k, v, proj_out as 1x1 convolutions) and block_2."""
    renames = [("decoder.mid_block.resnets.0.", "decoder.mid.block_1."), ("decoder.mid_block.resnets.1.", "decoder.mid.block_2."),
               ("decoder.mid_block.attentions.0.", "decoder.mid.attn_1."), (".resnets.", ".block."),
               ("conv_shortcut", "nin_shortcut"), (".upsamplers.0.", ".upsample."), ("attn_1.group_norm.", "attn_1.norm."),
               ("attn_1.to_q.", "attn_1.q."), ("attn_1.to_k.", "attn_1.k."), ("attn_1.to_v.", "attn_1.v."),
               ("attn_1.to_out.0.", "attn_1.proj_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    out = {}
    for name, t in state_dict.items():
        if name.startswith("decoder.up_blocks."):
            rest = name[len("decoder.up_blocks."):]
            index, tail = rest.split(".", 1)
            name = f"decoder.up.{levels - 1 - int(index)}.{tail}"
        for old, new in renames:
            name = name.replace(old, new)
        if ".attn_1." in name and name.endswith("weight") and t.dim() == 2:
            t = t[:, :, None, None]
        out[name] = t
    return out


def randomize(model, seed):
    """Random weights with 1/sqrt(fan-in) scale; norms near 1, biases small."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
    return model
