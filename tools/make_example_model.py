#!/usr/bin/env python3
"""Writes examples/tiny-dit-f16.safetensors: a DiT-shaped checkpoint with random
F16 weights and the original DiT repository's key names (depth 2, hidden 64,
4 heads, patch 2, 4 latent channels on an 8x8 latent, 10 classes, learned sigma).
Standard library only, fixed seed: running it again gives the same file."""
import json
import random
import struct
import sys

DEPTH, HIDDEN, PATCH, CHANNELS, LATENT, CLASSES = 2, 64, 2, 4, 8, 10
FREQUENCY_DIM = 256


def shapes():
    h, out = HIDDEN, CHANNELS * 2  # learned sigma doubles the output channels
    yield "pos_embed", [1, (LATENT // PATCH) ** 2, h]
    yield "x_embedder.proj.weight", [h, CHANNELS, PATCH, PATCH]
    yield "x_embedder.proj.bias", [h]
    yield "t_embedder.mlp.0.weight", [h, FREQUENCY_DIM]
    yield "t_embedder.mlp.0.bias", [h]
    yield "t_embedder.mlp.2.weight", [h, h]
    yield "t_embedder.mlp.2.bias", [h]
    yield "y_embedder.embedding_table.weight", [CLASSES + 1, h]
    for i in range(DEPTH):
        for name, shape in [("attn.qkv", [3 * h, h]), ("attn.proj", [h, h]), ("mlp.fc1", [4 * h, h]),
                            ("mlp.fc2", [h, 4 * h]), ("adaLN_modulation.1", [6 * h, h])]:
            yield f"blocks.{i}.{name}.weight", shape
            yield f"blocks.{i}.{name}.bias", shape[:1]
    yield "final_layer.linear.weight", [PATCH * PATCH * out, h]
    yield "final_layer.linear.bias", [PATCH * PATCH * out]
    yield "final_layer.adaLN_modulation.1.weight", [2 * h, h]
    yield "final_layer.adaLN_modulation.1.bias", [2 * h]


def main(path):
    rng = random.Random(2026)
    header, blobs, offset = {}, [], 0
    for name, shape in shapes():
        count = 1
        for d in shape:
            count *= d
        fan_in = count // shape[0] if len(shape) > 1 else 1
        values = [rng.gauss(0.0, fan_in ** -0.5) for _ in range(count)]
        blob = struct.pack(f"<{count}e", *values)
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    config = {"input_size": LATENT, "patch_size": PATCH, "in_channels": CHANNELS, "hidden_size": HIDDEN,
              "depth": DEPTH, "num_heads": 4, "mlp_ratio": 4.0, "num_classes": CLASSES, "learn_sigma": True}
    header["__metadata__"] = {"architecture": "dit", "config": json.dumps(config),
                              "note": "random weights, for demos and tests only"}
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/tiny-dit-f16.safetensors")
