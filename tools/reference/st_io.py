"""Reads and writes safetensors with torch tensors (Debian's python3-torch 1.13
has no safetensors package). Used only by the reference tests, the training
script and the benchmarks, never by tiledraw itself."""
import json
import struct

import numpy as np
import torch

_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def load(path):
    """Returns (tensors, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    metadata = header.pop("__metadata__", {})
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        blob = bytearray(raw[base + begin:base + end])
        flat = torch.frombuffer(blob, dtype=dtype) if blob else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"]).clone()
    return tensors, metadata


def load_header(path):
    """Returns ({name: {"dtype", "shape", "data_offsets"}}, metadata) without
    reading the tensors (a full-size checkpoint is gigabytes)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    metadata = header.pop("__metadata__", {})
    return header, metadata


def save(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, tensor in tensors.items():
        t = tensor.detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            blob = t.view(torch.int16).numpy().tobytes()
        else:
            blob = t.numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def panels_to_rows(t):
    """The int8 rows q[N, K] of an 8-bit S weight stored as U8 panels
    (docs/FORMAT.md): byte ((p * K/4 + g) * 64 + c) * 4 + i holds
    q[64 p + c, 4 g + i] + 128."""
    rows = t.shape[0]
    cols = t.numel() // rows
    panels = t.reshape(rows // 64, cols // 4, 64, 4).to(torch.int16) - 128
    return panels.permute(0, 2, 1, 3).reshape(rows, cols).to(torch.int8)


def dequantize_8bit_s(tensors):
    """Float weights from a file's 8-bit S pairs (int8 rows or U8 panels times
    their scale, named "<name>_scale": also OpenCLIP's attn.in_proj_weight)."""
    out = {}
    for name, t in tensors.items():
        if name.endswith("weight_scale"):
            continue
        scale = tensors.get(name + "_scale") if name.endswith("weight") else None
        if t.dtype in (torch.int8, torch.uint8) and scale is not None:
            rows = t.shape[0]
            q = panels_to_rows(t) if t.dtype == torch.uint8 else t.reshape(rows, -1)
            out[name] = (q.float() * scale.float().reshape(rows, 1)).reshape(t.shape)
        else:
            out[name] = t
    return out


def to_numpy(t):
    return t.detach().float().cpu().numpy().astype(np.float32)
