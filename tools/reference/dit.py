"""DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers") in
PyTorch, written from the paper's description: the reference that tiledraw's
forward pass is tested against, and the model the default checkpoint is trained
with. Parameter names follow the original repository's state_dict;
`to_diffusers` renames a state_dict to diffusers' DiTTransformer2DModel layout,
and `diffusers_forward` is that layout's forward (its own timestep frequencies
and norm epsilon)."""
import math

import torch
from torch import nn
import torch.nn.functional as F

FREQUENCY_DIM = 256


def timestep_frequencies(t, dim=FREQUENCY_DIM, shift=0):
    """[cos(t w), sin(t w)] with w_i = 10000^(-i / (half - shift))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - shift))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def position_embedding(width, rows, cols, base_rows=None, base_cols=None):
    """2-D sin-cos table [rows*cols, width]: first half encodes the column, the
    second the row, each as [sin(p w), cos(p w)], w_i = 10000^(-i/(width/4)).
    Positions are scaled to the base grid when one is given (diffusers)."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    r = torch.arange(rows, dtype=torch.float64) * ((base_rows or rows) / rows)
    c = torch.arange(cols, dtype=torch.float64) * ((base_cols or cols) / cols)

    def encode(p):
        a = p[:, None] * omega[None]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)

    ec, er = encode(c), encode(r)
    table = torch.cat([ec[None, :, :].expand(rows, cols, 2 * quarter), er[:, None, :].expand(rows, cols, 2 * quarter)], dim=2)
    return table.reshape(rows * cols, 4 * quarter).float()


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        w = torch.softmax((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1), dim=-1)
        return self.proj((w @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width, heads, mlp_hidden):
        super().__init__()
        self.attn = Attention(width, heads)
        self.mlp = Mlp(width, mlp_hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x, c, mlp_eps=1e-6):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=1)
        width = x.shape[-1]
        x = x + gate1[:, None] * self.attn(modulate(F.layer_norm(x, (width,), eps=1e-6), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(F.layer_norm(x, (width,), eps=mlp_eps), shift2, scale2))


class PatchEmbed(nn.Module):
    def __init__(self, channels, width, patch):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_DIM, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t, shift=0):
        return self.mlp(timestep_frequencies(t, FREQUENCY_DIM, shift))


class LabelEmbedder(nn.Module):
    def __init__(self, classes, width):
        super().__init__()
        self.embedding_table = nn.Embedding(classes + 1, width)  # the last row is the "null" class

    def forward(self, y):
        return self.embedding_table(y)


class FinalLayer(nn.Module):
    def __init__(self, width, patch, out_channels):
        super().__init__()
        self.linear = nn.Linear(width, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(F.layer_norm(x, (x.shape[-1],), eps=1e-6), shift, scale))


class DiT(nn.Module):
    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, num_classes=1000, learn_sigma=True):
        super().__init__()
        self.config = dict(input_size=input_size, patch_size=patch_size, in_channels=in_channels,
                           hidden_size=hidden_size, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                           num_classes=num_classes, learn_sigma=learn_sigma)
        self.patch, self.in_channels = patch_size, in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        grid = input_size // patch_size
        self.register_buffer("pos_embed", position_embedding(hidden_size, grid, grid)[None])
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, int(hidden_size * mlp_ratio)) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

    def unpatchify(self, x, height, width):
        p, c = self.patch, self.out_channels
        x = x.reshape(x.shape[0], height // p, width // p, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, height, width)

    def forward(self, x, t, y):
        height, width = x.shape[-2:]
        rows, cols = height // self.patch, width // self.patch
        if rows * cols == self.pos_embed.shape[1] and rows == cols:
            pos = self.pos_embed
        else:
            base = int(round(self.pos_embed.shape[1] ** 0.5))
            pos = position_embedding(self.pos_embed.shape[2], rows, cols, base, base)[None]
        h = self.x_embedder(x) + pos
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final_layer(h, c), height, width)


def randomize(model, seed, scale=1.0):
    """Every parameter non-zero random, scaled by 1/sqrt(fan-in), so that no
    zero-initialised path (adaLN-Zero) hides a bug."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * scale / math.sqrt(fan_in))
    return model


def state_dict(model):
    return {k: v for k, v in model.state_dict().items()}


def to_diffusers(sd, depth):
    """Renames an original-layout state_dict to DiTTransformer2DModel's keys.
    diffusers repeats the timestep and class embedders in every block."""
    out = {"pos_embed.proj.weight": sd["x_embedder.proj.weight"], "pos_embed.proj.bias": sd["x_embedder.proj.bias"]}
    for i in range(depth):
        p, q = f"transformer_blocks.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            out[p + "norm1.emb.timestep_embedder.linear_1." + kind] = sd["t_embedder.mlp.0." + kind]
            out[p + "norm1.emb.timestep_embedder.linear_2." + kind] = sd["t_embedder.mlp.2." + kind]
            out[p + "norm1.linear." + kind] = sd[q + "adaLN_modulation.1." + kind]
            for j, name in enumerate(("to_q", "to_k", "to_v")):
                out[p + f"attn1.{name}." + kind] = sd[q + "attn.qkv." + kind].chunk(3, dim=0)[j].clone()
            out[p + "attn1.to_out.0." + kind] = sd[q + "attn.proj." + kind]
            out[p + "ff.net.0.proj." + kind] = sd[q + "mlp.fc1." + kind]
            out[p + "ff.net.2." + kind] = sd[q + "mlp.fc2." + kind]
        out[p + "norm1.emb.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
    for kind in ("weight", "bias"):
        out["proj_out_1." + kind] = sd["final_layer.adaLN_modulation.1." + kind]
        out["proj_out_2." + kind] = sd["final_layer.linear." + kind]
    return out


def diffusers_forward(model, x, t, y, norm_eps=1e-5):
    """DiTTransformer2DModel's forward for `model`'s weights: timestep
    frequencies with shift 1, epsilon `norm_eps` on the MLP's layer norm, and
    positions scaled to the trained grid at other sizes."""
    height, width = x.shape[-2:]
    rows, cols = height // model.patch, width // model.patch
    base = int(round(model.pos_embed.shape[1] ** 0.5))
    h = model.x_embedder(x) + position_embedding(model.pos_embed.shape[2], rows, cols, base, base)[None]
    c = model.t_embedder(t, shift=1) + model.y_embedder(y)
    for block in model.blocks:
        h = block(h, c, mlp_eps=norm_eps)
    return model.unpatchify(model.final_layer(h, c), height, width)
