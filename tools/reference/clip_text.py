"""CLIP's text transformer (OpenAI CLIP as Hugging Face's CLIPTextModel names
it, and OpenCLIP) in plain torch ops, written from the public architecture
description: token plus position embeddings, pre-norm blocks (layer norm,
causal multi-head self-attention, residual; layer norm, fc1, activation, fc2,
residual), a final layer norm. Reference for tiledraw's text encoder."""
import math

import torch
import torch.nn.functional as F

ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,  # erf
}


def random_state_dict(width=64, layers=3, mlp=256, vocabulary=1000, positions=77, projection=0, seed=0):
    """A tiny CLIPTextModel in Hugging Face's names, every parameter non-zero:
    norms near 1, biases small, matrices with 1/sqrt(fan-in) scale. With
    `projection`, CLIPTextModelWithProjection's text_projection.weight too."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return scale * torch.randn(shape, generator=g)

    def linear(sd, name, rows, cols):
        sd[name + ".weight"] = randn(rows, cols, scale=1 / math.sqrt(cols))
        sd[name + ".bias"] = randn(rows, scale=0.1)

    def norm(sd, name):
        sd[name + ".weight"] = 1 + randn(width, scale=0.1)
        sd[name + ".bias"] = randn(width, scale=0.1)

    sd = {
        "text_model.embeddings.token_embedding.weight": randn(vocabulary, width),
        "text_model.embeddings.position_embedding.weight": randn(positions, width, scale=0.5),
    }
    for i in range(layers):
        p = f"text_model.encoder.layers.{i}."
        norm(sd, p + "layer_norm1")
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(sd, p + "self_attn." + name, width, width)
        norm(sd, p + "layer_norm2")
        linear(sd, p + "mlp.fc1", mlp, width)
        linear(sd, p + "mlp.fc2", width, mlp)
    norm(sd, "text_model.final_layer_norm")
    if projection:
        sd["text_projection.weight"] = randn(projection, width, scale=1 / math.sqrt(width))
    return sd


def to_openclip(sd):
    """The same weights in OpenCLIP's names (SD 2.x single files, under
    cond_stage_model.model.): q, k, v stacked into in_proj, the position table
    a bare tensor, text_projection [width, projection] used as x @ P."""
    out = {
        "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        "ln_final.bias": sd["text_model.final_layer_norm.bias"],
    }
    for i in range(layer_count(sd)):
        p, q = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[q + "attn.in_proj_" + part] = torch.cat([sd[p + f"self_attn.{n}_proj.{part}"] for n in "qkv"])
            for hf, oc in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"),
                           ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[q + oc + "." + part] = sd[p + hf + "." + part]
    if "text_projection.weight" in sd:
        out["text_projection"] = sd["text_projection.weight"].t().contiguous()
    return out


def layer_count(sd):
    return sum(1 for name in sd if name.endswith("mlp.fc1.weight"))


def forward(sd, ids, heads, activation, layers=None, eps=1e-5, final_norm=True):
    """Hidden states [batch, tokens, width] after the first `layers` layers
    (all by default) and the final layer norm, from Hugging Face's names.
    With final_norm False, the hidden state as the layer left it (Hugging
    Face's hidden_states[layers], OpenCLIP's residual stream): what SDXL's
    UNet reads from both its encoders, their penultimate layer's output."""
    act = ACTIVATIONS[activation]
    batch, tokens = ids.shape
    x = sd["text_model.embeddings.token_embedding.weight"][ids] + sd["text_model.embeddings.position_embedding.weight"][:tokens]
    width = x.shape[-1]
    head = width // heads
    causal = torch.full((tokens, tokens), float("-inf")).triu(1)

    def lin(v, name):
        return F.linear(v, sd[name + ".weight"], sd[name + ".bias"])

    def norm(v, name):
        return F.layer_norm(v, (width,), sd[name + ".weight"], sd[name + ".bias"], eps)

    for i in range(layer_count(sd) if layers is None else layers):
        p = f"text_model.encoder.layers.{i}."
        h = norm(x, p + "layer_norm1")
        q, k, v = (lin(h, p + f"self_attn.{n}_proj").reshape(batch, tokens, heads, head).transpose(1, 2) for n in "qkv")
        scores = q @ k.transpose(-2, -1) / math.sqrt(head) + causal
        a = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, width)
        x = x + lin(a, p + "self_attn.out_proj")
        x = x + lin(act(lin(norm(x, p + "layer_norm2"), p + "mlp.fc1")), p + "mlp.fc2")
    return norm(x, "text_model.final_layer_norm") if final_norm else x


def pooled(sd, ids, hidden_states):
    """The full-depth hidden state at each row's EOS (its largest id, CLIP's
    argmax), projected when the model has a text projection."""
    out = hidden_states[torch.arange(ids.shape[0]), ids.argmax(dim=-1)]
    return out @ sd["text_projection.weight"].t() if "text_projection.weight" in sd else out


def from_openclip(sd):
    """Hugging Face's names for weights in OpenCLIP's (the inverse of to_openclip)."""
    out = {
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
    }
    layers = sum(1 for name in sd if name.endswith("mlp.c_fc.weight"))
    for i in range(layers):
        p, q = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            for n, t in zip("qkv", sd[q + "attn.in_proj_" + part].chunk(3)):
                out[p + f"self_attn.{n}_proj.{part}"] = t
            for hf, oc in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"),
                           ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[p + hf + "." + part] = sd[q + oc + "." + part]
    if "text_projection" in sd:
        out["text_projection.weight"] = sd["text_projection"].t().contiguous()
    return out
