#!/usr/bin/python3
"""Trains tiledraw's bundled text-to-image model from scratch on Fashion-MNIST
(Debian's dataset-fashion-mnist) with Debian's python3-torch on the CPU: a
Stable Diffusion 1.x in miniature, written as the single file SD 1.x
checkpoints are (model.diffusion_model.*, cond_stage_model.transformer.*,
first_stage_model.*), so that tiledraw runs it through exactly the path of a
downloaded checkpoint.

  /usr/bin/python3 tools/train_text_to_image.py --out DIR [--stage vae|diffusion|export|all]
      [--vae-steps N] [--steps N] [--threads N]

Stages, each resumable (DIR keeps their state):
  vocabulary  captions for every training image, from its class and what its
              pixels show (brightness, size, a printed pattern or plain), and a
              byte-pair vocabulary learnt from them with CLIP's algorithm,
              written as a Hugging Face CLIP tokenizer (DIR/tokenizer/)
  vae         a small KL autoencoder (3-channel 32 x 32 <-> 4 x 8 x 8), and
              the scaling factor that gives its latents unit variance
  diffusion   a CLIP-style text encoder and a UNet2DConditionModel with
              cross-attention trained together on the captions (10% dropped
              for classifier-free guidance), epsilon prediction on SD's
              scaled-linear schedule; EMA weights
  export      DIR/fashion-sd-f32.safetensors, the configs in its metadata

Then `tiledraw convert DIR/fashion-sd-f32.safetensors models/fashion-sd-8bit-s.safetensors
--tokenizer DIR/tokenizer` embeds the vocabulary and stores 8-bit S weights.
Seeds are fixed; captions.py (beside this script) holds the caption rules,
which the judged tests share."""
import argparse
import collections
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.path.insert(0, HERE)
import captions  # noqa: E402
import clip_text  # noqa: E402
import st_io  # noqa: E402
import unet  # noqa: E402
import vae  # noqa: E402
from train_default import load_split  # noqa: E402

TEXT = dict(width=128, layers=3, heads=2, positions=77)
UNET_CONFIG = {"in_channels": 4, "out_channels": 4, "block_out_channels": [64, 128], "layers_per_block": 1,
               "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
               "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
               "attention_head_dim": 4, "cross_attention_dim": TEXT["width"], "use_linear_projection": False,
               "norm_num_groups": 32, "norm_eps": 1e-5, "flip_sin_to_cos": True, "freq_shift": 0,
               "sample_size": 8, "prediction_type": "epsilon"}
# Four pixels per latent (32 x 32 -> 4 x 8 x 8): at 16 x 16 latents the UNet's
# training steps took 4.7x as long.
VAE_SHAPE = dict(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8)
TIMESTEPS = 1000
MAX_MERGES = 2000
DROP_CAPTION = 0.1


def alphas_cumprod():
    """Stable Diffusion's scaled-linear schedule (betas 0.00085 to 0.012)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, TIMESTEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def rgb(images):
    """Fashion-MNIST's grey images as the 3-channel images an SD VAE reads."""
    return images.expand(-1, 3, -1, -1)


def measure(images, labels):
    """Each image's caption bins, from its pixels ([N, 1, H, W] in [-1, 1]): the
    garment is what is brighter than the background; its mean brightness and
    its area are split in thirds within its class (dark / grey / light, small /
    - / large), and the mean absolute Laplacian inside it, relative to its
    brightness, marks the top quarter 'patterned' and the bottom 40% 'plain'."""
    x = (images[:, 0] + 1) * 127.5
    mask = x > 25
    area = mask.sum((1, 2)).float().clamp(min=1)
    brightness = (x * mask).sum((1, 2)) / area
    lap = (4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]).abs()
    inner = mask[:, 1:-1, 1:-1]
    texture = (lap * inner).sum((1, 2)) / inner.sum((1, 2)).clamp(min=1) / brightness.clamp(min=1)
    out = [None] * images.shape[0]
    for c in range(10):
        index = (labels == c).nonzero().flatten()

        def bins(values, cuts, names):
            q = torch.quantile(values[index], torch.tensor(cuts))
            return [names[int((v > q).sum())] for v in values[index].tolist()]

        b = bins(brightness, [1 / 3, 2 / 3], ["dark", "grey", "light"])
        s = bins(area, [1 / 3, 2 / 3], ["small", None, "large"])
        p = bins(texture, [0.4, 0.75], ["plain", None, "patterned"])
        for j, i in enumerate(index.tolist()):
            out[i] = {"brightness": b[j], "size": s[j], "pattern": p[j]}
    return out


# --- the vocabulary: CLIP's byte-pair encoding, learnt from the captions ---

def bytes_to_unicode():
    """OpenAI CLIP's map of the 256 bytes to printable symbols."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_SYMBOLS = bytes_to_unicode()


def words_of(text):
    """CLIP's clean-up and pre-tokenization, for the ASCII captions here."""
    return captions.WORD.findall(" ".join(text.lower().split()))


def symbols_of(word):
    chars = [BYTE_SYMBOLS[b] for b in word.encode()]
    return tuple(chars[:-1]) + (chars[-1] + "</w>",)


def learn_merges(texts, max_merges):
    """Merges in rank order: each time the most frequent adjacent pair over all
    words (weighted by how often each word occurs), until no pair occurs twice."""
    words = collections.Counter(symbols_of(w) for t in texts for w in words_of(t))
    merges = []
    while len(merges) < max_merges:
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        (best, count), = pairs.most_common(1)
        if count < 2:
            break
        merges.append(best)
        merged = collections.Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


class Tokenizer:
    """CLIP's tokenizer on a vocabulary: ids of byte symbols, the same with
    </w>, one per merge, then <|startoftext|> and <|endoftext|>."""

    def __init__(self, merges):
        symbols = list(BYTE_SYMBOLS.values())
        tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
        tokens += ["<|startoftext|>", "<|endoftext|>"]
        self.merges = merges
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.start, self.end = self.vocab["<|startoftext|>"], self.vocab["<|endoftext|>"]
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(symbols_of(word))
        while len(parts) > 1:
            pairs = [(self.ranks.get(p, math.inf), i) for i, p in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == math.inf:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        self.cache[word] = [self.vocab[p] for p in parts]
        return self.cache[word]

    def ids(self, text, length=TEXT["positions"]):
        """<|startoftext|>, the text's tokens, <|endoftext|>, padded with
        <|endoftext|> as SD 1.x was trained (longer texts are cut)."""
        body = [i for w in words_of(text) for i in self.bpe(w)][:length - 2]
        return [self.start] + body + [self.end] * (length - 1 - len(body))

    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, ensure_ascii=False)
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2 (learnt by tools/train_text_to_image.py from Fashion-MNIST captions)\n")
            f.writelines(f"{a} {b}\n" for a, b in self.merges)


def vocabulary_stage(args, images, labels):
    path = os.path.join(args.out, "vocabulary.json")
    if os.path.exists(path):
        with open(path) as f:
            return Tokenizer([tuple(m) for m in json.load(f)["merges"]])
    rng = random.Random(args.seed)
    attributes = measure(images, labels)
    texts = [captions.caption(int(c), a, rng) for c, a in zip(labels.tolist(), attributes)]
    # Every phrasing the captions can take, so that each word is learnt whole.
    texts += captions.every_phrase()
    tokenizer = Tokenizer(learn_merges(texts, MAX_MERGES))
    tokenizer.save(os.path.join(args.out, "tokenizer"))
    with open(path, "w") as f:
        json.dump({"merges": tokenizer.merges, "vocabulary_size": len(tokenizer.vocab)}, f)
    print(f"vocabulary: {len(tokenizer.merges)} merges, {len(tokenizer.vocab)} tokens", flush=True)
    return tokenizer


# --- the autoencoder ---

def vae_stage(args, images):
    path = os.path.join(args.out, "vae.pt")
    if os.path.exists(path):
        return torch.load(path)
    torch.manual_seed(args.seed + 1)
    encoder = vae.VaeEncoder(in_channels=3, latent_channels=4, **VAE_SHAPE)
    decoder = vae.VaeDecoder(latent_channels=4, out_channels=3, **VAE_SHAPE)
    parameters = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed + 2)
    start = time.time()
    for step in range(args.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / args.vae_steps))
        x = rgb(images[torch.randint(0, images.shape[0], (args.batch,), generator=generator)])
        moments = encoder.quant_conv(encoder.encoder(x))
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        reconstruction = decoder(z)
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()
        loss = F.mse_loss(reconstruction, x) + 1e-4 * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 200 == 0 or step == args.vae_steps - 1:
            print(f"vae step {step}/{args.vae_steps} loss {loss.item():.4f} kl {kl.item():.3f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    with torch.no_grad():
        latents = torch.cat([encoder(rgb(images[i:i + 1000])) for i in range(0, 10000, 1000)])
    # SD multiplies latents by a scaling factor: here the one that gives them unit variance.
    scaling = 1.0 / latents.std().item()
    state = {"encoder": encoder.state_dict(), "decoder": decoder.state_dict(), "scaling_factor": scaling}
    torch.save(state, path)
    print(f"vae: scaling factor {scaling:.5f}", flush=True)
    return state


def encode_all(state, images):
    encoder = vae.VaeEncoder(in_channels=3, latent_channels=4, **VAE_SHAPE)
    encoder.load_state_dict(state["encoder"])
    with torch.no_grad():
        return torch.cat([encoder(rgb(images[i:i + 1000])) for i in range(0, images.shape[0], 1000)]) * state["scaling_factor"]


# --- the text encoder and the UNet, trained together ---

def diffusion_stage(args, images, labels, tokenizer, vae_state):
    path = os.path.join(args.out, "diffusion.pt")
    generator = torch.Generator().manual_seed(args.seed + 3)
    if os.path.exists(path):
        state = torch.load(path)
    else:
        text = clip_text.random_state_dict(width=TEXT["width"], layers=TEXT["layers"], mlp=4 * TEXT["width"],
                                           vocabulary=len(tokenizer.vocab), positions=TEXT["positions"], seed=args.seed + 4)
        text["text_model.embeddings.token_embedding.weight"] *= 0.02  # CLIP's initial scale
        text["text_model.embeddings.position_embedding.weight"] *= 0.02
        weights = unet.random_state_dict(UNET_CONFIG, args.seed + 5)
        weights["conv_out.weight"].zero_()  # start by predicting no noise at all
        weights["conv_out.bias"].zero_()
        params = {**{"text." + k: v for k, v in text.items()}, **{"unet." + k: v for k, v in weights.items()}}
        state = {"params": params, "ema": {k: v.clone() for k, v in params.items()}, "optimizer": None, "step": 0}
    params = {k: v.clone().requires_grad_(True) for k, v in state["params"].items()}
    ema = state["ema"]
    optimizer = torch.optim.AdamW(params.values(), lr=args.lr, weight_decay=0.0)
    if state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    latents, mirrored = encode_all(vae_state, images), encode_all(vae_state, images.flip(3))
    attributes = measure(images, labels)
    rng = random.Random(args.seed + 6)
    alphas = alphas_cumprod()
    start, first = time.time(), state["step"]

    def save(step):
        torch.save({"params": {k: v.detach() for k, v in params.items()}, "ema": ema,
                    "optimizer": optimizer.state_dict(), "step": step}, path + ".tmp")
        os.replace(path + ".tmp", path)

    for step in range(first, args.steps):
        lr = args.lr * min(1.0, (step + 1) / 500)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.randint(0, images.shape[0], (args.batch,), generator=generator)
        texts = [captions.caption(int(labels[i]), attributes[i], rng) if rng.random() >= DROP_CAPTION else ""
                 for i in index.tolist()]
        ids = torch.tensor([tokenizer.ids(t) for t in texts])
        x0 = torch.where(torch.rand(args.batch, 1, 1, 1, generator=generator) < 0.5, mirrored[index], latents[index])
        t = torch.randint(0, TIMESTEPS, (args.batch,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        text_params = {k[5:]: v for k, v in params.items() if k.startswith("text.")}
        unet_params = {k[5:]: v for k, v in params.items() if k.startswith("unet.")}
        context = clip_text.forward(text_params, ids, TEXT["heads"], "quick_gelu")
        loss = F.mse_loss(unet.forward(unet_params, UNET_CONFIG, xt, t, context), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for k, v in params.items():
                ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
        if step % 100 == 0 or step == args.steps - 1:
            rate = (step + 1 - first) / max(1e-9, time.time() - start)
            print(f"diffusion step {step}/{args.steps} loss {loss.item():.4f} lr {lr:.2e} ({rate:.2f} steps/s)", flush=True)
        if (step + 1) % args.save_every == 0:
            save(step + 1)
    save(args.steps)
    return torch.load(path)


# --- the single file ---

def export_stage(args, tokenizer, vae_state, diffusion_state):
    ema = diffusion_state["ema"]
    text = {k[5:]: v for k, v in ema.items() if k.startswith("text.")}
    weights = {k[5:]: v for k, v in ema.items() if k.startswith("unet.")}
    tensors = {f"model.diffusion_model.{k}": v for k, v in unet.to_ldm(weights, UNET_CONFIG).items()}
    tensors.update({f"cond_stage_model.transformer.{k}": v for k, v in text.items()})
    decoder = vae.decoder_to_original_layout(vae_state["decoder"], len(VAE_SHAPE["block_out_channels"]))
    encoder = vae.encoder_to_original_layout(vae_state["encoder"])
    tensors.update({f"first_stage_model.{k}": v for k, v in {**decoder, **encoder}.items()})
    vae_config = dict(block_out_channels=list(VAE_SHAPE["block_out_channels"]), layers_per_block=VAE_SHAPE["layers_per_block"],
                      norm_num_groups=VAE_SHAPE["norm_num_groups"], latent_channels=4, in_channels=3, out_channels=3,
                      sample_size=32, scaling_factor=vae_state["scaling_factor"])
    text_config = {"hidden_size": TEXT["width"], "num_hidden_layers": TEXT["layers"], "num_attention_heads": TEXT["heads"],
                   "intermediate_size": 4 * TEXT["width"], "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                   "max_position_embeddings": TEXT["positions"], "vocab_size": len(tokenizer.vocab)}
    path = os.path.join(args.out, "fashion-sd-f32.safetensors")
    st_io.save(path, tensors, {
        "config": json.dumps({"unet": UNET_CONFIG, "vae": vae_config, "text_encoder": text_config}),
        "description": "Fashion-MNIST text-to-image in Stable Diffusion 1.x's architecture, trained by "
                       "tools/train_text_to_image.py",
        "training": json.dumps({"steps": diffusion_state["step"], "batch": args.batch, "lr": args.lr, "ema": args.ema,
                                "seed": args.seed, "vae_steps": args.vae_steps})})
    print("wrote", path, flush=True)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stage", choices=["vocabulary", "vae", "diffusion", "export", "all"], default="all")
    parser.add_argument("--vae-steps", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=8000, help="diffusion training steps (resumes where DIR stopped)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--save-every", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    images, labels = load_split("train")
    start = time.time()
    tokenizer = vocabulary_stage(args, images, labels)
    if args.stage == "vocabulary":
        return
    vae_state = vae_stage(args, images)
    if args.stage == "vae":
        return
    if args.stage in ("diffusion", "all"):
        diffusion_stage(args, images, labels, tokenizer, vae_state)
    if args.stage in ("export", "all"):
        export_stage(args, tokenizer, vae_state, torch.load(os.path.join(args.out, "diffusion.pt")))
    print(f"done in {(time.time() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
