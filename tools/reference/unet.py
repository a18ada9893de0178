"""Stable Diffusion 1.x/2.x's UNet (diffusers' UNet2DConditionModel) in plain
PyTorch ops over a state dict, written from the published architecture: the
reference that tiledraw's UNet is tested against.

  config      a diffusers unet/config.json as a dict (the keys SD 1.x/2.x use)
  random_state_dict(config, seed)   every parameter of that UNet, diffusers'
              names, random and non-zero (norm scales near 1)
  to_ldm(state_dict, config)        the same tensors under the original
              (LDM) single-file names: input_blocks.N.M, middle_block.M,
              output_blocks.N.M, time_embed.0/2, out.0/2; from_ldm the inverse
  SD15_CONFIG, SDXL_CONFIG  Stable Diffusion 1.5's and XL base's configs
  forward(state_dict, config, sample, timestep, context, text_embeds,
              time_ids)   the raw model output (noise or v) for sample
              [b, in, h, w], timestep [b] (possibly fractional) and context
              [b, tokens, cross_attention_dim]; with SDXL's extra embedding,
              text_embeds [b, pooled] and time_ids [b, 6]; the state dict in
              diffusers' names

The architecture: conv_in; a sinusoidal timestep embedding of width
block_out_channels[0] ([cos, sin], freq_shift 0) through linear_1, SiLU,
linear_2; down blocks of resnets (each followed by a spatial transformer in
cross-attention blocks) and a stride-2 conv; a mid block of resnet,
transformer, resnet; up blocks of layers_per_block + 1 resnets, each reading
the concatenation with a skip, then nearest 2x upsampling and a conv; group
norm, SiLU, conv_out. `attention_head_dim` counts heads unless
`num_attention_heads` is given (diffusers' naming quirk).

SDXL's UNet (`"addition_embed_type": "text_time"`) adds to the timestep
embedding, before any resnet reads it, add_embedding.linear_2(SiLU(
add_embedding.linear_1([text_embeds, time_embeds]))), where time_embeds is
each of the 6 time ids (original height and width, crop top and left, target
height and width) through the timestep's sinusoid of width
addition_time_embed_dim, flattened to [b, 6 D]; linear_1 reads
projection_class_embeddings_input_dim = pooled + 6 D values. The original
layout names the two layers label_emb.0.0 and label_emb.0.2. Its levels may
differ in transformer depth (`transformer_layers_per_block` per level, the
mid block taking the last level's, an up block its level's) and its first
level has no attention (DownBlock2D first, UpBlock2D last)."""
import math

import torch
import torch.nn.functional as F

RESNET_LDM_PARTS = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                    "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


# diffusers' unet/config.json of Stable Diffusion 1.5 (the keys that shape it):
# single files carry no config.
SD15_CONFIG = {"in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
               "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
               "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
               "attention_head_dim": 8, "cross_attention_dim": 768, "use_linear_projection": False,
               "norm_num_groups": 32, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0}

# Stable Diffusion XL base 1.0's (the keys that shape it).
SDXL_CONFIG = {"in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280], "layers_per_block": 2,
               "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
               "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
               "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
               "cross_attention_dim": 2048, "use_linear_projection": True, "addition_embed_type": "text_time",
               "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,
               "norm_num_groups": 32, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0}


def tiny_config(variant):
    """A small config of either kind: 'sd1' (conv projections, heads counted
    by attention_head_dim, 32 groups) or 'sd2' (linear projections, heads of
    size 8 given per level, 8 groups, two transformer layers in the last level)."""
    if variant == "sd1":
        return {"in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64, 64], "layers_per_block": 2,
                "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                "attention_head_dim": 8, "cross_attention_dim": 32, "use_linear_projection": False,
                "norm_num_groups": 32, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0}
    return {"in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64], "layers_per_block": 1,
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "attention_head_dim": [4, 8], "cross_attention_dim": 24, "use_linear_projection": True,
            "transformer_layers_per_block": [1, 2],
            "norm_num_groups": 8, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0}


def per_level(config, key, default):
    value = config.get(key, default)
    levels = len(config["block_out_channels"])
    return list(value) if isinstance(value, (list, tuple)) else [value] * levels


def heads_per_level(config):
    return per_level(config, "num_attention_heads", None) if config.get("num_attention_heads") is not None \
        else per_level(config, "attention_head_dim", 8)


def has_text_time(config):
    """SDXL's extra embedding of the pooled text vector and the 6 size values."""
    kind = config.get("addition_embed_type")
    if kind not in (None, "text_time"):
        raise ValueError(f"addition_embed_type {kind!r}: only SDXL's 'text_time' is written here")
    return kind == "text_time"


def layout(config):
    """Per level: channels, whether the down and up blocks attend, heads and
    transformer layers; the up lists indexed by up block (deepest first)."""
    channels = config["block_out_channels"]
    down_attention = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    up_attention = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    return channels, down_attention, up_attention, heads_per_level(config), per_level(config, "transformer_layers_per_block", 1)


def parameter_shapes(config):
    """Every parameter's name (diffusers) and shape, in model order."""
    channels, down_attention, up_attention, heads, depths = layout(config)
    layers, context = config["layers_per_block"], config["cross_attention_dim"]
    temb = 4 * channels[0]
    linear_proj = config.get("use_linear_projection", False)
    shapes = []

    def conv(name, cout, cin, k):
        shapes.extend([(name + ".weight", (cout, cin, k, k)), (name + ".bias", (cout,))])

    def lin(name, cout, cin, bias=True):
        shapes.append((name + ".weight", (cout, cin)))
        if bias:
            shapes.append((name + ".bias", (cout,)))

    def norm(name, c):
        shapes.extend([(name + ".weight", (c,)), (name + ".bias", (c,))])

    def resnet(p, cin, cout):
        norm(p + ".norm1", cin)
        conv(p + ".conv1", cout, cin, 3)
        lin(p + ".time_emb_proj", cout, temb)
        norm(p + ".norm2", cout)
        conv(p + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(p + ".conv_shortcut", cout, cin, 1)

    def transformer(p, c, depth):
        norm(p + ".norm", c)
        if linear_proj:
            lin(p + ".proj_in", c, c)
        else:
            conv(p + ".proj_in", c, c, 1)
        for k in range(depth):
            b = f"{p}.transformer_blocks.{k}"
            for n in ("norm1", "norm2", "norm3"):
                norm(f"{b}.{n}", c)
            for a, kv_width in (("attn1", c), ("attn2", context)):
                lin(f"{b}.{a}.to_q", c, c, bias=False)
                lin(f"{b}.{a}.to_k", c, kv_width, bias=False)
                lin(f"{b}.{a}.to_v", c, kv_width, bias=False)
                lin(f"{b}.{a}.to_out.0", c, c)
            lin(f"{b}.ff.net.0.proj", 8 * c, c)
            lin(f"{b}.ff.net.2", c, 4 * c)
        if linear_proj:
            lin(p + ".proj_out", c, c)
        else:
            conv(p + ".proj_out", c, c, 1)

    conv("conv_in", channels[0], config["in_channels"], 3)
    lin("time_embedding.linear_1", temb, channels[0])
    lin("time_embedding.linear_2", temb, temb)
    if has_text_time(config):
        lin("add_embedding.linear_1", temb, config["projection_class_embeddings_input_dim"])
        lin("add_embedding.linear_2", temb, temb)
    skips = [channels[0]]
    cin = channels[0]
    for level, cout in enumerate(channels):
        for m in range(layers):
            resnet(f"down_blocks.{level}.resnets.{m}", cin, cout)
            if down_attention[level]:
                transformer(f"down_blocks.{level}.attentions.{m}", cout, depths[level])
            cin = cout
            skips.append(cout)
        if level + 1 < len(channels):
            conv(f"down_blocks.{level}.downsamplers.0.conv", cout, cout, 3)
            skips.append(cout)
    resnet("mid_block.resnets.0", cin, cin)
    transformer("mid_block.attentions.0", cin, depths[-1])
    resnet("mid_block.resnets.1", cin, cin)
    for up, cout in enumerate(reversed(channels)):
        level = len(channels) - 1 - up
        for m in range(layers + 1):
            resnet(f"up_blocks.{up}.resnets.{m}", cin + skips.pop(), cout)
            if up_attention[up]:
                transformer(f"up_blocks.{up}.attentions.{m}", cout, depths[level])
            cin = cout
        if level > 0:
            conv(f"up_blocks.{up}.upsamplers.0.conv", cout, cout, 3)
    norm("conv_norm_out", channels[0])
    conv("conv_out", config["out_channels"], channels[0], 3)
    return shapes


def random_state_dict(config, seed, dtype=torch.float32):
    """Random weights of 1/sqrt(fan-in) scale, norm scales 1 +- 0.1, biases
    +-0.1 (every value non-zero: zeros are redrawn as 0.01), each stored as
    `dtype` as it is drawn."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in parameter_shapes(config):
        if len(shape) == 1:
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            t = base + 0.1 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        sd[name] = torch.where(t == 0, torch.full_like(t, 0.01), t).to(dtype)
    return sd


def ldm_name(name, config):
    """One diffusers name in the original (LDM) layout."""
    channels, _, up_attention, _, _ = layout(config)
    layers = config["layers_per_block"]
    parts = name.split(".")
    fixed = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
    for diffusers, ldm in fixed.items():
        if name.startswith(diffusers + "."):
            return ldm + name[len(diffusers):]

    def resnet(prefix, rest):
        return f"{prefix}.{RESNET_LDM_PARTS[rest[0]]}." + ".".join(rest[1:])

    if parts[0] == "mid_block":
        index = {("resnets", "0"): 0, ("attentions", "0"): 1, ("resnets", "1"): 2}[(parts[1], parts[2])]
        if parts[1] == "resnets":
            return resnet(f"middle_block.{index}", parts[3:])
        return f"middle_block.{index}." + ".".join(parts[3:])
    index, kind, m, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
    if parts[0] == "down_blocks":
        if kind == "downsamplers":
            return f"input_blocks.{1 + index * (layers + 1) + layers}.0.op." + ".".join(rest[1:])
        block = f"input_blocks.{1 + index * (layers + 1) + m}"
    else:
        if kind == "upsamplers":
            slot = 2 if up_attention[index] else 1
            return f"output_blocks.{index * (layers + 1) + layers}.{slot}.conv." + ".".join(rest[1:])
        block = f"output_blocks.{index * (layers + 1) + m}"
    if kind == "resnets":
        return resnet(f"{block}.0", rest)
    return f"{block}.1." + ".".join(rest)


def to_ldm(sd, config, prefix=""):
    return {prefix + ldm_name(name, config): t for name, t in sd.items()}


def from_ldm(tensors, config, prefix=""):
    """The UNet's weights in diffusers' names from a file's original (LDM) ones
    under `prefix` (a single file's "model.diffusion_model.")."""
    return {name: tensors[prefix + ldm_name(name, config)] for name, _ in parameter_shapes(config)}


def timestep_embedding(t, dim, shift=0):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - shift))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def forward(sd, config, sample, timestep, context, text_embeds=None, time_ids=None):
    channels, down_attention, up_attention, heads, _ = layout(config)
    layers, groups, eps = config["layers_per_block"], config["norm_num_groups"], config.get("norm_eps", 1e-5)
    linear_proj = config.get("use_linear_projection", False)

    def lin(x, name):
        return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))

    def conv(x, name, stride=1):
        w = sd[name + ".weight"]
        return F.conv2d(x, w, sd[name + ".bias"], stride=stride, padding=w.shape[-1] // 2)

    def group_norm(x, name, norm_eps):
        return F.group_norm(x, groups, sd[name + ".weight"], sd[name + ".bias"], norm_eps)

    def resnet(x, p, emb):
        h = conv(F.silu(group_norm(x, p + ".norm1", eps)), p + ".conv1")
        h = h + lin(F.silu(emb), p + ".time_emb_proj")[:, :, None, None]
        h = conv(F.silu(group_norm(h, p + ".norm2", eps)), p + ".conv2")
        shortcut = conv(x, p + ".conv_shortcut") if p + ".conv_shortcut.weight" in sd else x
        return shortcut + h

    def attention(x, kv, p, n_heads):
        q, k, v = lin(x, p + ".to_q"), lin(kv, p + ".to_k"), lin(kv, p + ".to_v")
        b, n, c = q.shape
        split = lambda t: t.reshape(b, t.shape[1], n_heads, c // n_heads).transpose(1, 2)  # noqa: E731
        weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(c // n_heads), dim=-1)
        out = (weights @ split(v)).transpose(1, 2).reshape(b, n, c)
        return lin(out, p + ".to_out.0")

    def layer_norm(x, name):
        return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    def transformer(x, p, n_heads):
        b, c, h, w = x.shape
        t = group_norm(x, p + ".norm", 1e-6)
        if linear_proj:
            t = lin(t.permute(0, 2, 3, 1).reshape(b, h * w, c), p + ".proj_in")
        else:
            t = conv(t, p + ".proj_in").permute(0, 2, 3, 1).reshape(b, h * w, c)
        k = 0
        while f"{p}.transformer_blocks.{k}.norm1.weight" in sd:
            blk = f"{p}.transformer_blocks.{k}"
            n = layer_norm(t, blk + ".norm1")
            t = t + attention(n, n, blk + ".attn1", n_heads)
            t = t + attention(layer_norm(t, blk + ".norm2"), context, blk + ".attn2", n_heads)
            hidden, gate = lin(layer_norm(t, blk + ".norm3"), blk + ".ff.net.0.proj").chunk(2, dim=-1)
            t = t + lin(hidden * F.gelu(gate), blk + ".ff.net.2")
            k += 1
        if linear_proj:
            t = lin(t, p + ".proj_out").reshape(b, h, w, c).permute(0, 3, 1, 2)
        else:
            t = conv(t.reshape(b, h, w, c).permute(0, 3, 1, 2), p + ".proj_out")
        return t + x

    emb = timestep_embedding(timestep, channels[0], config.get("freq_shift", 0))
    emb = lin(F.silu(lin(emb, "time_embedding.linear_1")), "time_embedding.linear_2")
    if has_text_time(config):
        if text_embeds is None or time_ids is None:
            raise ValueError("SDXL's UNet needs text_embeds [b, pooled] and time_ids [b, 6]")
        b = time_ids.shape[0]
        time_embeds = timestep_embedding(time_ids.reshape(-1), config["addition_time_embed_dim"],
                                         config.get("freq_shift", 0)).reshape(b, -1)
        added = torch.cat([text_embeds.to(time_embeds.dtype), time_embeds], dim=-1)
        emb = emb + lin(F.silu(lin(added, "add_embedding.linear_1")), "add_embedding.linear_2")
    x = conv(sample, "conv_in")
    skips = [x]
    for level in range(len(channels)):
        for m in range(layers):
            x = resnet(x, f"down_blocks.{level}.resnets.{m}", emb)
            if down_attention[level]:
                x = transformer(x, f"down_blocks.{level}.attentions.{m}", heads[level])
            skips.append(x)
        if level + 1 < len(channels):
            x = conv(x, f"down_blocks.{level}.downsamplers.0.conv", stride=2)
            skips.append(x)
    x = resnet(x, "mid_block.resnets.0", emb)
    x = transformer(x, "mid_block.attentions.0", heads[-1])
    x = resnet(x, "mid_block.resnets.1", emb)
    for up in range(len(channels)):
        level = len(channels) - 1 - up
        for m in range(layers + 1):
            x = resnet(torch.cat([x, skips.pop()], dim=1), f"up_blocks.{up}.resnets.{m}", emb)
            if up_attention[up]:
                x = transformer(x, f"up_blocks.{up}.attentions.{m}", heads[level])
        if level > 0:
            x = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"), f"up_blocks.{up}.upsamplers.0.conv")
    return conv(F.silu(group_norm(x, "conv_norm_out", eps)), "conv_out")
