#!/usr/bin/python3
"""Trains tiledraw's default model and its judge on Fashion-MNIST (Debian's
dataset-fashion-mnist), with Debian's python3-torch on the CPU.

  /usr/bin/python3 tools/train_default.py --out DIR [--steps N] [--threads N] [--init CKPT]

writes DIR/fashion-dit-f32.safetensors (a class-conditional DiT in the original
repository's layout: pixel space, 1 channel, 32x32, 10 classes, EMA weights)
and DIR/fashion-judge-f32.safetensors (an MLP classifier made of ops tiledraw
runs). Both carry the class names in their metadata. `tiledraw convert` turns
them into the 8-bit S files under models/. Seeds are fixed."""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import dit  # noqa: E402
import st_io  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
DIT_CONFIG = dict(input_size=32, patch_size=4, in_channels=1, hidden_size=192, depth=6, num_heads=6, mlp_ratio=4.0,
                  num_classes=10, learn_sigma=False)
TIMESTEPS = 1000


def load_split(kind):
    """Images as floats in [-1, 1], padded from 28x28 to 32x32 with the background, and labels."""
    with gzip.open(f"{DATA}/{kind}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(f"{DATA}/{kind}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
    return F.pad(x, (2, 2, 2, 2), value=-1.0)[:, None], torch.from_numpy(labels.astype(np.int64))


def init_like_dit(model):
    """DiT's initialisation: Xavier linears, small embeddings, and the
    adaLN-Zero layers and the output layer at zero."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    w = model.x_embedder.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.normal_(model.y_embedder.embedding_table.weight, std=0.02)
    for layer in (model.t_embedder.mlp[0], model.t_embedder.mlp[2]):
        nn.init.normal_(layer.weight, std=0.02)
    for block in model.blocks:
        nn.init.zeros_(block.adaLN_modulation[1].weight)
        nn.init.zeros_(block.adaLN_modulation[1].bias)
    for layer in (model.final_layer.adaLN_modulation[1], model.final_layer.linear):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def train_dit(args, images, labels):
    torch.manual_seed(args.seed)
    model = dit.DiT(**DIT_CONFIG)
    history = []
    if args.init:  # continue from a checkpoint: its (EMA) weights, a fresh optimizer
        tensors, metadata = st_io.load(args.init)
        model.load_state_dict(tensors)
        history = json.loads(metadata.get("training", "[]"))
        history = history if isinstance(history, list) else [history]
    else:
        init_like_dit(model)
    ema = dit.DiT(**DIT_CONFIG)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    betas = torch.linspace(1e-4, 0.02, TIMESTEPS, dtype=torch.float64)
    alpha_bar = torch.cumprod(1.0 - betas, 0).float()
    null_class = DIT_CONFIG["num_classes"]
    generator = torch.Generator().manual_seed(args.seed)
    start, running = time.time(), None
    path = os.path.join(args.out, "fashion-dit-f32.safetensors")
    for step in range(1, args.steps + 1):
        index = torch.randint(0, images.shape[0], (args.batch,), generator=generator)
        x0 = images[index]
        if torch.rand((), generator=generator) < 0.5:
            x0 = x0.flip(3)  # mirror images are still the same class
        y = labels[index].clone()
        y[torch.rand(args.batch, generator=generator) < 0.1] = null_class  # guidance needs the unconditional model
        t = torch.randint(0, TIMESTEPS, (args.batch,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        ab = alpha_bar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        loss = F.mse_loss(model(xt, t, y), noise)
        lr = args.lr * min(1.0, step / 200)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.mul_(decay).add_(p, alpha=1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == args.steps:
            elapsed = time.time() - start
            print(f"dit step {step}/{args.steps} loss {running:.4f} {elapsed / 60:.1f} min", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            info = {"steps": step, "batch": args.batch, "lr": args.lr, "ema": args.ema, "seed": args.seed,
                    "loss": round(running, 5), "minutes": round((time.time() - start) / 60, 1),
                    "threads": torch.get_num_threads(), "init": os.path.basename(args.init) if args.init else None}
            save_dit(ema, path, history + [info])
    return path


def save_dit(model, path, history):
    tensors = dit.state_dict(model)
    st_io.save(path + ".tmp", tensors, {
        "architecture": "dit", "config": json.dumps(DIT_CONFIG), "class_names": json.dumps(CLASS_NAMES),
        "data_range": "[-1, 1], background -1", "training": json.dumps(history),
        "description": "class-conditional DiT trained on Fashion-MNIST (28x28 padded to 32x32) by tools/train_default.py"})
    os.replace(path + ".tmp", path)


class Judge(nn.Module):
    """An MLP on the 32x32 image: Linear-GELU-Linear-GELU-Linear."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(1024, 512), nn.Linear(512, 256), nn.Linear(256, 10)

    def forward(self, x):
        h = F.gelu(self.fc1(x.flatten(1)), approximate="tanh")
        return self.fc3(F.gelu(self.fc2(h), approximate="tanh"))


def train_judge(args, images, labels, test_images, test_labels):
    torch.manual_seed(args.seed + 1)
    judge = Judge()
    optimizer = torch.optim.AdamW(judge.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(args.seed + 1)
    epochs = 12
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        order = torch.randperm(images.shape[0], generator=generator)
        for i in range(0, images.shape[0], 128):
            index = order[i:i + 128]
            x = images[index]
            if torch.rand((), generator=generator) < 0.5:
                x = x.flip(3)
            loss = F.cross_entropy(judge(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy = (judge(test_images).argmax(1) == test_labels).float().mean().item()
        print(f"judge epoch {epoch + 1}/{epochs} loss {loss.item():.3f} test accuracy {accuracy:.4f}", flush=True)
    path = os.path.join(args.out, "fashion-judge-f32.safetensors")
    st_io.save(path, judge.state_dict(), {
        "architecture": "mlp-classifier", "input_shape": "[1, 32, 32]", "input_range": "[-1, 1]", "activation": "gelu_tanh",
        "class_names": json.dumps(CLASS_NAMES), "test_accuracy": f"{accuracy:.4f}",
        "description": "Fashion-MNIST classifier (judge of generated images) trained by tools/train_default.py"})
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--what", choices=["all", "dit", "judge"], default="all")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--init", help="continue training from this DiT checkpoint (its weights; a fresh optimizer)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    images, labels = load_split("train")
    start = time.time()
    if args.what in ("all", "judge"):
        test_images, test_labels = load_split("t10k")
        print("wrote", train_judge(args, images, labels, test_images, test_labels), flush=True)
    if args.what in ("all", "dit"):
        print("wrote", train_dit(args, images, labels), flush=True)
    print(f"trained in {(time.time() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
