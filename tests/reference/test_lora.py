#!/usr/bin/python3
"""Reference tier: LoRA adapters beside a model's layers, against PyTorch
with the adapters merged into float weights.

  /usr/bin/python3 tests/reference/test_lora.py TILEDRAW_BINARY [CLIP_DATA_DIR]

Tiny random SD 1.x-like (CLIP in Hugging Face's names, 1x1-convolution
projections) and SD 2.x-like (OpenCLIP's names with the fused in_proj,
linear projections) checkpoints, and random adapters (every value non-zero)
on every attention projection, feed-forward layer and spatial-transformer
projection of the UNet and on every layer of the text encoder, in
kohya-ss's format (lora_unet_*, lora_te_* with lora_down, lora_up, alpha:
diffusers names for the UNet, as kohya writes SD 1.x/2.x) and in
PEFT's (unet.*.lora_A.weight, text_encoder.*.lora_B.weight, no alpha: a
scale of 1). Checked with `tiledraw forward --lora FILE:STRENGTH`:

- the UNet and the text encoder with one adapter (at a light 0.1 and at
  0.8), and with two at once at other strengths, and a 4-step guided
  txt2img (`generate --lora`), against PyTorch's forward of W + strength x
  alpha / rank x up @ down (merged in float64, then float32): float (merged
  into a copy of the weights) within 1e-4 of the largest output; with the
  base weights as 8-bit S (the branch beside them: the down factor 8-bit S
  on the layer's quantized input, the up factor f32) within the UNet's
  8-bit S bound; and, for the record, how that compares with merging the
  adapter into the weights before rounding them to 8 bits, on the whole
  output and on the adapters' effect (with - without);
- on SD 2.x's OpenCLIP layout, adapters on q, k and v land on their rows of
  the fused in_proj;
- kohya-ss's SDXL adapter (the UNet in the original layout's names, LoCon
  included; lora_te1_ and lora_te2_) on the single file (OpenCLIP's fused
  in_proj) and on a diffusers folder (diffusers' UNet names): both text
  encoders, the pooled text and the UNet;
- `convert --lora` bakes the adapters into a checkpoint: the SD 1.x/2.x
  files kept in float (--keep '*', within 1e-4) and as 8-bit S (within its
  bound), the SDXL folder in float;
- LyCORIS's LoHa on the UNet's transformer layers and convolutions, in
  float and beside 8-bit S weights;
- refused, naming the file and key: an adapter for another family (SDXL's
  lora_te2_ keys), a NaN, factors whose ranks differ, a LoKr file, and
  `convert --lora` onto weights already 8-bit S."""
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
import st_io  # noqa: E402
from judge import judge  # noqa: E402
from sd_model import RandomSd  # noqa: E402
from sdxl_model import EOS, RandomSdxl, pad_after_eos  # noqa: E402
import unet  # noqa: E402
from test_sdxl import INT8_BOUND as SDXL_INT8_BOUND  # noqa: E402
from test_sd import (CLIP_DATA, FLOAT_BOUND, INT8_BOUND, LOOP_BOUND, PROMPT, TILEDRAW, fixed_noise, forward, generate,  # noqa: E402
                     prompts, reference_loop, tokenize)

RANK, ALPHA = 4, 2.0
failures = []


def unet_targets(model):
    """The UNet layers kohya-ss's default LoRA trains: every linear (and 1x1
    projection) of the spatial transformers; {diffusers name: weight shape}."""
    return {name[:-len(".weight")]: tuple(w.shape) for name, w in model.unet.items()
            if ".attentions." in name and name.endswith(".weight") and w.dim() >= 2
            and any(part in name for part in (".to_q.", ".to_k.", ".to_v.", ".to_out.0.", ".ff.net.", ".proj_in.",
                                                 ".proj_out."))}


def locon_targets(model):
    """The convolutions (and time projections) LoCon adds: every resnet's
    conv1, conv2, conv_shortcut and time_emb_proj, and the samplers' convs."""
    return {name[:-len(".weight")]: tuple(w.shape) for name, w in model.unet.items()
            if name.endswith(".weight") and w.dim() >= 2 and (
                (".resnets." in name and any(part in name for part in (".conv1.", ".conv2.", ".conv_shortcut.",
                                                                         ".time_emb_proj.")))
                or ".downsamplers.0.conv." in name or ".upsamplers.0.conv." in name)}


def text_targets(state):
    """Every linear of a CLIP text encoder's layers (Hugging Face's names)."""
    return {name[:-len(".weight")]: tuple(w.shape) for name, w in state.items()
            if ".encoder.layers." in name and name.endswith(".weight") and w.dim() == 2}


def random_adapter(targets, seed, dtype, scale=0.2):
    """{module: (down [r, in, ...], up [out, r, ...])}, the values as a file
    of `dtype` holds them: a convolution's down factor [r, in, kh, kw] and
    its up factor [out, r, 1, 1], as kohya-ss writes them."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for module, shape in sorted(targets.items()):
        convolution = len(shape) == 4
        down = (torch.randn((RANK, *shape[1:]), generator=g) * scale).to(dtype).float()
        up = (torch.randn((shape[0], RANK, *((1, 1) if convolution else ())), generator=g) * scale).to(dtype).float()
        out[module] = (down, up)
    return out


def write_kohya(path, unet_factors, text_factors, alpha=ALPHA):
    tensors = {}
    for prefix, factors in (("lora_unet_", unet_factors), ("lora_te_", text_factors)):
        for module, (down, up) in factors.items():
            key = prefix + module.replace(".", "_")
            tensors[key + ".lora_down.weight"] = down.half()
            tensors[key + ".lora_up.weight"] = up.half()
            tensors[key + ".alpha"] = torch.tensor(alpha).half()
    st_io.save(path, tensors, {"ss_network_dim": str(RANK), "ss_network_alpha": str(alpha)})


def write_peft(path, unet_factors, text_factors):
    tensors = {}
    for prefix, factors in (("unet.", unet_factors), ("text_encoder.", text_factors)):
        for module, (down, up) in factors.items():
            tensors[f"{prefix}{module}.lora_A.weight"] = down.flatten(1)
            tensors[f"{prefix}{module}.lora_B.weight"] = up.flatten(1)
    st_io.save(path, tensors)


def merged(state, factors, scale):
    """The state dict with each adapter layer's update, scale x up @ down,
    merged in float64."""
    out = dict(state)
    for module, (down, up) in factors.items():
        weight = out[module + ".weight"]
        delta = up.double().flatten(1) @ down.double().flatten(1)
        out[module + ".weight"] = (weight.double() + scale * delta.reshape(weight.shape)).float()
    return out


def with_weights(model, unet_state, text_state):
    clone = RandomSd.__new__(RandomSd)
    clone.__dict__.update(model.__dict__)
    clone.unet, clone.text = unet_state, text_state
    return clone


def compare(label, got, expected, bound, metric="max"):
    judge(failures, label, got, expected, bound, metric)


def refused(tmp, label, model_path, lora_path, expected):
    result = subprocess.run([TILEDRAW, "forward", "-m", model_path, "--component", "unet", "--inputs",
                             f"{tmp}/unet-in.safetensors", "-o", f"{tmp}/never.safetensors", "--lora", lora_path],
                            capture_output=True, text=True)
    message = result.stderr.strip()
    ok = result.returncode == 2 and expected in message and not os.path.exists(f"{tmp}/never.safetensors")
    print(f"{'ok' if ok else 'FAIL':4} {label}: {message}", flush=True)
    if not ok:
        failures.append(label)


def check(tmp, label, model, path):
    # The kohya-ss adapter is a LoCon one: the resnets' and samplers' convolutions too.
    unet_a = random_adapter({**unet_targets(model), **locon_targets(model)}, 1, torch.half)
    text_a = random_adapter(text_targets(model.text), 2, torch.half)
    unet_b, text_b = random_adapter(unet_targets(model), 3, torch.float), random_adapter(text_targets(model.text), 4, torch.float)
    write_kohya(f"{tmp}/kohya.safetensors", unet_a, text_a)
    write_peft(f"{tmp}/peft.safetensors", unet_b, text_b)

    g = torch.Generator().manual_seed(5)
    sample = torch.randn((2, 4, 8, 8), generator=g)
    t = torch.tensor([999.0, 250.0])
    ctx = torch.randn((2, 77, model.text_width), generator=g)
    st_io.save(f"{tmp}/unet-in.safetensors", {"sample": sample, "timestep": t, "encoder_hidden_states": ctx})
    ids = torch.tensor([c[0] for c in tokenize(path, "a (red:1.2) cube")]).reshape(1, -1).to(torch.int64)

    kohya_scale = 0.8 * ALPHA / RANK
    one = with_weights(model, merged(model.unet, unet_a, kohya_scale), merged(model.text, text_a, kohya_scale))
    two = with_weights(model, merged(one.unet, unet_b, 0.5), merged(one.text, text_b, 0.5))
    light = with_weights(model, merged(model.unet, unet_a, 0.1 * ALPHA / RANK), merged(model.text, text_a, 0.1 * ALPHA / RANK))
    for name, loras, reference in (("kohya LoCon at 0.1", [f"{tmp}/kohya.safetensors:0.1"], light),
                                   ("kohya LoCon at 0.8", [f"{tmp}/kohya.safetensors:0.8"], one),
                                   ("kohya LoCon at 0.8 + PEFT at 0.5", [f"{tmp}/kohya.safetensors:0.8",
                                                                   f"{tmp}/peft.safetensors:0.5"], two)):
        flags = [x for lora in loras for x in ("--lora", lora)]
        expected = reference.unet_forward(sample, t, ctx)
        got = st_io.load(run_forward(tmp, path, "unet", f"{tmp}/unet-in.safetensors", "float", flags))[0]["out"]
        compare(f"{label} unet, {name}", got, expected, FLOAT_BOUND)
        got = st_io.load(run_forward(tmp, path, "unet", f"{tmp}/unet-in.safetensors", "8bit-s", flags))[0]["out"]
        compare(f"{label} unet, {name}, 8-bit S base", got, expected, INT8_BOUND, "rms")
        # For the record, against merging the adapters into the float weights
        # and rounding them all to 8 bits: the whole output's error (the base's
        # own rounding dominates it on these tiny layers), and the error of the
        # adapters' effect, (with - without) against PyTorch's.
        reference.write_single_file(f"{tmp}/merged.safetensors")
        requantized = st_io.load(run_forward(tmp, f"{tmp}/merged.safetensors", "unet", f"{tmp}/unet-in.safetensors",
                                             "8bit-s", []))[0]["out"]
        base = st_io.load(run_forward(tmp, path, "unet", f"{tmp}/unet-in.safetensors", "8bit-s", []))[0]["out"]
        effect = expected - model.unet_forward(sample, t, ctx)
        branch_error, merge_error = (relative_rms((y - base) - effect, effect) for y in (got, requantized))
        print(f"     ({label} unet, {name}, 8-bit S: merged and re-rounded: rms "
              f"{relative_rms(requantized - expected, expected):.2e}; the adapters' effect: branch {branch_error:.2e}, "
              f"merged and re-rounded {merge_error:.2e})", flush=True)
        st_io.save(f"{tmp}/text-in.safetensors", {"input_ids": ids})
        got = st_io.load(run_forward(tmp, path, "text_encoder", f"{tmp}/text-in.safetensors", "float", flags))[0]
        compare(f"{label} text_encoder, {name}", got["hidden_states"], reference.encode_text(ids), FLOAT_BOUND)
    # Baked into a checkpoint by `convert --lora`: kept in float, and rounded to 8-bit S.
    for precision, keep, bound, metric in (("float", ["--keep", "*"], FLOAT_BOUND, "max"), ("8bit-s", [], INT8_BOUND, "rms")):
        baked = f"{tmp}/baked-{precision}.safetensors"
        subprocess.run([TILEDRAW, "convert", "-q", path, baked, *keep, "--lora", f"{tmp}/kohya.safetensors:0.8"],
                       check=True, capture_output=True)
        got = st_io.load(run_forward(tmp, baked, "unet", f"{tmp}/unet-in.safetensors", precision, []))[0]["out"]
        compare(f"{label} convert --lora kohya:0.8 ({precision}): unet", got, one.unet_forward(sample, t, ctx), bound, metric)
        if precision == "float":
            got = st_io.load(run_forward(tmp, baked, "text_encoder", f"{tmp}/text-in.safetensors", "float", []))[0]
            compare(f"{label} convert --lora kohya:0.8 (float): text_encoder", got["hidden_states"], one.encode_text(ids),
                    FLOAT_BOUND)
    # A guided txt2img: the adapters on both the text encoder and the UNet.
    initial, noise_path = fixed_noise(tmp, torch.Generator().manual_seed(6))
    got = generate(tmp, path, "euler", "normal", PROMPT, noise_path,
                   ("--lora", f"{tmp}/kohya.safetensors:0.8", "--lora", f"{tmp}/peft.safetensors:0.5"))
    compare(f"{label} 4-step txt2img, kohya at 0.8 + PEFT at 0.5", got,
            reference_loop(two, "euler", "normal", prompts(path, PROMPT), initial.numpy()), LOOP_BOUND)
    # Without an adapter the model is its own again (nothing was merged).
    compare(f"{label} unet without adapters", forward(tmp, path, "unet", {"sample": sample, "timestep": t,
                                                                         "encoder_hidden_states": ctx}, "out"),
            model.unet_forward(sample, t, ctx), FLOAT_BOUND)


def check_sdxl(tmp):
    """kohya-ss's SDXL adapters: the UNet named in the original (LDM) layout,
    the encoders as lora_te1_ / lora_te2_ in Hugging Face's names; on the
    single file (OpenCLIP's fused in_proj for the second encoder) and on a
    diffusers folder (whose UNet names are diffusers')."""
    model = RandomSdxl(900)
    model.write_single_file(f"{tmp}/xl.safetensors")
    model.write_folder(f"{tmp}/xl-diffusers", os.path.join(CLIP_DATA, "hf"))
    unet_a = random_adapter({**unet_targets(model), **locon_targets(model)}, 11, torch.half)
    te1_a, te2_a = random_adapter(text_targets(model.te1), 12, torch.half), random_adapter(text_targets(model.te2), 13, torch.half)
    tensors = {}
    for prefix, factors in (("lora_unet_", unet_a), ("lora_te1_", te1_a), ("lora_te2_", te2_a)):
        for module, (down, up) in factors.items():
            if prefix == "lora_unet_":
                module = unet.ldm_name(module + ".weight", model.unet_config)[:-len(".weight")]
            key = prefix + module.replace(".", "_")
            tensors.update({key + ".lora_down.weight": down.half(), key + ".lora_up.weight": up.half(),
                            key + ".alpha": torch.tensor(ALPHA).half()})
    st_io.save(f"{tmp}/xl-lora.safetensors", tensors, {"ss_base_model_version": "sdxl_base_v1-0"})
    scale = 0.7 * ALPHA / RANK
    reference = RandomSdxl.__new__(RandomSdxl)
    reference.__dict__.update(model.__dict__)
    reference.unet, reference.te1, reference.te2 = (merged(state, factors, scale) for state, factors in
                                                    ((model.unet, unet_a), (model.te1, te1_a), (model.te2, te2_a)))

    g = torch.Generator().manual_seed(12)
    sample, t = torch.randn((2, 4, 8, 8), generator=g), torch.tensor([999.0, 250.0])
    ctx, pooled = torch.randn((2, 77, model.text_width), generator=g), torch.randn((2, model.pooled_width), generator=g)
    time_ids = torch.tensor([[1024.0, 768.0, 0.0, 0.0, 1024.0, 768.0]] * 2)
    st_io.save(f"{tmp}/xl-unet-in.safetensors", {"sample": sample, "timestep": t, "encoder_hidden_states": ctx,
                                                 "text_embeds": pooled, "time_ids": time_ids})
    ids = torch.tensor([c[0] for c in tokenize(f"{tmp}/xl-diffusers", "a (red:1.2) cube")]).reshape(1, -1)
    ids, ids2 = pad_after_eos(ids, EOS), pad_after_eos(ids, 0)  # each encoder's padding
    st_io.save(f"{tmp}/xl-text-in.safetensors", {"input_ids": ids, "input_ids_2": ids2})
    flags = ["--lora", f"{tmp}/xl-lora.safetensors:0.7"]
    expected = reference.unet_forward(sample, t, ctx, pooled, time_ids)
    hidden, pooled_out = reference.encode(ids, ids2)
    for label, path in (("sdxl file", f"{tmp}/xl.safetensors"), ("sdxl folder", f"{tmp}/xl-diffusers")):
        got = st_io.load(run_forward(tmp, path, "unet", f"{tmp}/xl-unet-in.safetensors", "float", flags))[0]["out"]
        compare(f"{label} unet, kohya SDXL LoCon (original names) at 0.7", got, expected, FLOAT_BOUND)
        got = st_io.load(run_forward(tmp, path, "unet", f"{tmp}/xl-unet-in.safetensors", "8bit-s", flags))[0]["out"]
        compare(f"{label} unet, kohya SDXL LoCon at 0.7, 8-bit S base", got, expected, SDXL_INT8_BOUND, "rms")
        got = st_io.load(run_forward(tmp, path, "text_encoder", f"{tmp}/xl-text-in.safetensors", "float", flags))[0]
        compare(f"{label} both text encoders, kohya SDXL at 0.7", got["hidden_states"], hidden, FLOAT_BOUND)
        compare(f"{label} pooled text, kohya SDXL at 0.7", got["pooled"], pooled_out, FLOAT_BOUND)
    # Baked into a new diffusers folder, kept in float.
    subprocess.run([TILEDRAW, "convert", "-q", f"{tmp}/xl-diffusers", f"{tmp}/xl-baked", "--keep", "*", "--lora",
                    f"{tmp}/xl-lora.safetensors:0.7"], check=True, capture_output=True)
    got = st_io.load(run_forward(tmp, f"{tmp}/xl-baked", "unet", f"{tmp}/xl-unet-in.safetensors", "float", []))[0]["out"]
    compare("sdxl folder convert --lora (float): unet", got, expected, FLOAT_BOUND)
    got = st_io.load(run_forward(tmp, f"{tmp}/xl-baked", "text_encoder", f"{tmp}/xl-text-in.safetensors", "float", []))[0]
    compare("sdxl folder convert --lora (float): both text encoders", got["hidden_states"], hidden, FLOAT_BOUND)


def check_loha(tmp, label, model, path):
    """LyCORIS's LoHa on the UNet's transformer layers and convolutions:
    dW = (w1_a @ w1_b) * (w2_a @ w2_b) x alpha / dim, dims 2 and 3, the
    convolutions' w1_b and w2_b flattened [dim, in x kh x kw]."""
    g = torch.Generator().manual_seed(14)
    tensors, state = {}, dict(model.unet)
    alpha, dim1, dim2, strength = 1.5, 2, 3, 0.6
    for module, shape in sorted({**unet_targets(model), **locon_targets(model)}.items()):
        inputs = int(torch.tensor(shape[1:]).prod())
        w1a, w1b = torch.randn((shape[0], dim1), generator=g) * 0.3, torch.randn((dim1, inputs), generator=g) * 0.3
        w2a, w2b = torch.randn((shape[0], dim2), generator=g) * 0.3, torch.randn((dim2, inputs), generator=g) * 0.3
        key = "lora_unet_" + module.replace(".", "_")
        tensors.update({key + ".hada_w1_a": w1a.half(), key + ".hada_w1_b": w1b.half(), key + ".hada_w2_a": w2a.half(),
                        key + ".hada_w2_b": w2b.half(), key + ".alpha": torch.tensor(alpha).half()})
        w1a, w1b, w2a, w2b = (w.half().double() for w in (w1a, w1b, w2a, w2b))
        weight = state[module + ".weight"]
        delta = ((w1a @ w1b) * (w2a @ w2b)).reshape(weight.shape) * alpha / dim1 * strength
        state[module + ".weight"] = (weight.double() + delta).float()
    st_io.save(f"{tmp}/loha.safetensors", tensors, {"ss_network_module": "lycoris.kohya"})
    reference = with_weights(model, state, model.text)
    g = torch.Generator().manual_seed(15)
    sample, t = torch.randn((2, 4, 8, 8), generator=g), torch.tensor([999.0, 250.0])
    ctx = torch.randn((2, 77, model.text_width), generator=g)
    st_io.save(f"{tmp}/loha-in.safetensors", {"sample": sample, "timestep": t, "encoder_hidden_states": ctx})
    expected = reference.unet_forward(sample, t, ctx)
    flags = ["--lora", f"{tmp}/loha.safetensors:{strength}"]
    for precision, bound, metric in (("float", FLOAT_BOUND, "max"), ("8bit-s", INT8_BOUND, "rms")):
        got = st_io.load(run_forward(tmp, path, "unet", f"{tmp}/loha-in.safetensors", precision, flags))[0]["out"]
        compare(f"{label} unet, LoHa (dims 2 and 3) at {strength}, {precision}", got, expected, bound, metric)


def relative_rms(error, reference):
    return (error.pow(2).mean().sqrt() / reference.pow(2).mean().sqrt()).item()


def run_forward(tmp, path, component, inputs, precision, flags):
    out = f"{tmp}/out.safetensors"
    result = subprocess.run([TILEDRAW, "forward", "-m", path, "--component", component, "--inputs", inputs, "-o", out,
                             "--precision", precision, *flags], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"tiledraw forward {component} {' '.join(flags)} failed: {result.stderr.strip()}")
    return out


def check_refusals(tmp, model, path):
    targets = unet_targets(model)
    module, (down, up) = next(iter(random_adapter(targets, 9, torch.float).items()))
    key = "lora_unet_" + module.replace(".", "_")
    st_io.save(f"{tmp}/xl.safetensors", {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight":
                                         torch.ones(RANK, 1280), "lora_te2_text_model_encoder_layers_0_self_attn_q_proj"
                                         ".lora_up.weight": torch.ones(1280, RANK)})
    refused(tmp, "an adapter for another family", path, f"{tmp}/xl.safetensors",
            "1 of 1 LoRA layers match no layer of")
    bad = down.clone()
    bad[0, 0] = float("nan")
    st_io.save(f"{tmp}/nan.safetensors", {key + ".lora_down.weight": bad, key + ".lora_up.weight": up})
    refused(tmp, "a NaN", path, f"{tmp}/nan.safetensors", f"'{key}.lora_down.weight' holds a value that is not finite")
    st_io.save(f"{tmp}/rank.safetensors", {key + ".lora_down.weight": down, key + ".lora_up.weight": up[:, :RANK - 1]})
    refused(tmp, "ranks that differ", path, f"{tmp}/rank.safetensors", f"'{key}.lora_up.weight'")
    st_io.save(f"{tmp}/lokr.safetensors", {key + ".lokr_w1": up.flatten(1), key + ".lokr_w2": down.flatten(1)})
    refused(tmp, "a LoKr file", path, f"{tmp}/lokr.safetensors", "is part of a LoKr adapter")
    # Baking into weights that are 8-bit S already would round them twice.
    st_io.save(f"{tmp}/one.safetensors", {key + ".lora_down.weight": down, key + ".lora_up.weight": up})
    subprocess.run([TILEDRAW, "convert", "-q", path, f"{tmp}/rounded.safetensors", "--min-elements", "0"], check=True,
                   capture_output=True)
    result = subprocess.run([TILEDRAW, "convert", "-q", f"{tmp}/rounded.safetensors", f"{tmp}/never.safetensors",
                             "--lora", f"{tmp}/one.safetensors"], capture_output=True, text=True)
    message = result.stderr.strip()
    ok = (result.returncode != 0 and "is 8-bit S already; bake adapters into the float weights" in message
          and not os.path.exists(f"{tmp}/never.safetensors"))
    print(f"{'ok' if ok else 'FAIL':4} convert --lora onto 8-bit S weights: {message}", flush=True)
    if not ok:
        failures.append("convert --lora onto 8-bit S weights")


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        sd1 = RandomSd("sd1", 700)
        sd1.write_single_file(f"{tmp}/sd1.safetensors")
        sd2 = RandomSd("sd2", 800)
        sd2.write_single_file(f"{tmp}/sd2.safetensors")
        check(tmp, "sd1 file", sd1, f"{tmp}/sd1.safetensors")
        check(tmp, "sd2 file (OpenCLIP's fused in_proj)", sd2, f"{tmp}/sd2.safetensors")
        check_loha(tmp, "sd1 file", sd1, f"{tmp}/sd1.safetensors")
        check_refusals(tmp, sd1, f"{tmp}/sd1.safetensors")
        check_sdxl(tmp)
    if failures:
        print("failed:", *failures, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
