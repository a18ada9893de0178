#!/usr/bin/env python3
"""Checks tiledraw's safetensors reader, writer and 8-bit S converter against an
independent implementation written here from the format's specification, with
the Python standard library only (no numpy, no torch)."""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I8": 1}


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bf16_bits(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def encode(dtype, values):
    if dtype == "F32":
        return struct.pack(f"<{len(values)}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    if dtype == "BF16":
        return struct.pack(f"<{len(values)}H", *[bf16_bits(v) for v in values])
    if dtype == "I64":
        return struct.pack(f"<{len(values)}q", *values)
    raise ValueError(dtype)


def decode(dtype, raw):
    n = len(raw) // SIZES[dtype]
    if dtype == "F32":
        return list(struct.unpack(f"<{n}f", raw))
    if dtype == "F16":
        return list(struct.unpack(f"<{n}e", raw))
    if dtype == "BF16":
        return [struct.unpack("<f", struct.pack("<I", b << 16))[0] for b in struct.unpack(f"<{n}H", raw)]
    if dtype == "I8":
        return list(struct.unpack(f"<{n}b", raw))
    if dtype == "I64":
        return list(struct.unpack(f"<{n}q", raw))
    raise ValueError(dtype)


def write_file(path, tensors, metadata):
    """tensors: name -> (dtype, shape, values). Data in reverse name order, header in name order."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors, reverse=True):
        dtype, shape, values = tensors[name]
        blob = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(dict(sorted(header.items()))).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_file(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n :]
    spans = sorted((e["data_offsets"][0], e["data_offsets"][1], k) for k, e in header.items())
    expect = 0
    for begin, end, name in spans:  # the reference implementation wants no holes and no overlaps
        assert begin == expect, f"{name}: data starts at {begin}, expected {expect}"
        expect = end
    assert expect == len(data), "data section has trailing bytes"
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        assert end - begin == math.prod(e["shape"]) * SIZES[e["dtype"]], name
        tensors[name] = (e["dtype"], e["shape"], decode(e["dtype"], data[begin:end]))
    return tensors, metadata


def quantize_row(row):
    """The 8-bit S definition from docs/FORMAT.md, in float32 arithmetic."""
    absmax = max(abs(v) for v in row)
    scale = max(f32(absmax / 127.0), 2.0**-126)
    return [max(-127, min(127, round(f32(v / scale)))) for v in row], scale


def main():
    binary = sys.argv[1]
    rows, cols = 40, 70
    weight = [0.1 * math.sin(0.37 * i) + 0.01 * math.cos(1.3 * i) for i in range(rows * cols)]
    tensors = {
        "layer.weight": ("F16", [rows, cols], weight),
        "conv.weight": ("BF16", [16, 16, 4, 4], [math.sin(0.11 * i) for i in range(4096)]),
        "layer.bias": ("F32", [rows], [float(i) / 3 for i in range(rows)]),
        "counter": ("I64", [2], [7, -(2**40)]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        write_file(src, tensors, {"architecture": "test", "note": "written by the independent writer"})

        listing = json.loads(subprocess.check_output([binary, "inspect", "--json", src]))
        assert listing["metadata"]["note"] == "written by the independent writer"
        seen = {t["name"]: (t["dtype"], t["shape"], t["bytes"]) for t in listing["tensors"]}
        for name, (dtype, shape, values) in tensors.items():
            assert seen[name] == (dtype, shape, len(encode(dtype, values))), (name, seen[name])

        subprocess.check_call([binary, "convert", "-q", "--min-elements", "1000", src, dst], stdout=subprocess.DEVNULL)
        out, metadata = read_file(dst)
        assert metadata["format"] == "8bit-s" and metadata["architecture"] == "test", metadata
        assert set(out) == set(tensors) | {"layer.weight_scale", "conv.weight_scale"}, sorted(out)
        for name in ("layer.bias", "counter"):
            dtype, shape, values = tensors[name]
            assert out[name] == (dtype, shape, decode(dtype, encode(dtype, values))), name
        checked = 0
        for name in ("layer.weight", "conv.weight"):
            dtype, shape, values = out[name]
            assert dtype == "I8" and shape == tensors[name][1], (name, dtype, shape)
            n = shape[0]
            k = len(values) // n
            source = decode(tensors[name][0], encode(tensors[name][0], tensors[name][2]))
            scale_dtype, scale_shape, scales = out[name + "_scale"]
            assert scale_dtype == "F32" and scale_shape == [n]
            for r in range(n):
                q, scale = quantize_row(source[r * k : (r + 1) * k])
                assert scales[r] == scale, f"{name} row {r}: scale {scales[r]} != {scale}"
                assert values[r * k : (r + 1) * k] == q, f"{name} row {r}: quantized values differ"
                checked += k
    print(f"independent reader/writer agree with tiledraw; {checked} quantized values match bit for bit")


if __name__ == "__main__":
    main()
