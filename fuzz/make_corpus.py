#!/usr/bin/env python3
"""Writes the corpus of the fuzz targets into fuzz/corpus/<target>/.

Standard library only. seed-* files are starting points; crash-* files
reproduce bugs the fuzzers found (each crashed its target before the fix
named beside it), so that `tools/fuzz.sh --replay` keeps them fixed. The
structured targets decode their input in a fixed order (see the comment at
the top of each target); the encoders here follow it, and their tables
(names, dtypes, operations) must match the targets'.
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    """name: "crash-..." for a reproducer, else a seed."""
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name if name.startswith("crash-") else "seed-" + name), "wb") as f:
        f.write(data)


# --- safetensors_header_fuzz: whole files -----------------------------------

def safetensors(header, data=b"", length=None):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def header_seeds():
    valid = safetensors({"__metadata__": {"format": "pt", "config": '{"depth": 2}'},
                         "a.weight": entry("F32", [2, 3], 0, 24),
                         "a.bias": entry("F16", [2], 24, 28),
                         "q.weight": entry("I8", [2, 2], 28, 32),
                         "q.weight_scale": entry("BF16", [2], 32, 36),
                         "empty": entry("U8", [0, 5], 36, 36)}, bytes(range(36)))
    nested = "[" * 3000 + "]" * 3000
    seeds = {
        "valid": valid,
        "valid-padded-header": safetensors(b'{"t":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}      ', b"abcd"),
        "empty-header": safetensors({}),
        "metadata-only": safetensors({"__metadata__": {"k": "v"}}),
        "truncated-data": valid[:-5],
        "truncated-header": valid[:40],
        "too-short": b"\x02\x00\x00\x00\x00",
        "header-length-too-big": safetensors({}, length=1 << 40),
        "header-length-max": safetensors({}, length=(1 << 64) - 1),
        "header-length-past-end": safetensors({}, length=3),
        "header-length-zero": safetensors(b"", b"{}"),
        "not-json": safetensors(b"{abc"),
        "not-an-object": safetensors(b"[1, 2]"),
        "leading-space": safetensors(b' {"t":{}}'),
        "entry-not-object": safetensors({"t": [1, 2]}),
        "nested-shape": safetensors(('{"t":{"dtype":"F32","shape":' + nested + ',"data_offsets":[0,0]}}').encode()),
        "nested-metadata": safetensors(('{"__metadata__":{"k":' + nested + "}}").encode()),
        "duplicate-tensor": safetensors(b'{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                        b'"t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"xy"),
        "duplicate-metadata": safetensors(b'{"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}}'),
        "duplicate-metadata-key": safetensors(b'{"__metadata__":{"a":"1","a":"2"}}'),
        "overlapping-offsets": safetensors({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 2, 6)}, bytes(6)),
        "same-offsets": safetensors({"a": entry("U8", [4], 0, 4), "b": entry("I8", [4], 0, 4)}, bytes(4)),
        "offsets-past-end": safetensors({"a": entry("U8", [4], 0, 4)}, bytes(3)),
        "offsets-reversed": safetensors({"a": entry("U8", [0], 4, 0)}, bytes(4)),
        "offsets-size-mismatch": safetensors({"a": entry("F32", [2], 0, 4)}, bytes(8)),
        "offsets-three": safetensors(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}', b"x"),
        "offsets-negative": safetensors(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}', b"x"),
        "offsets-huge": safetensors({"a": entry("U8", [1], (1 << 64) - 1, (1 << 64) - 1)}, b"x"),
        "unknown-dtype": safetensors({"a": entry("F17", [1], 0, 1)}, b"x"),
        "dtype-not-string": safetensors(b'{"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}', b"x"),
        "negative-dim": safetensors(b'{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'),
        "float-dim": safetensors(b'{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}}'),
        "string-dim": safetensors(b'{"a":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}}', b"x"),
        "shape-overflow": safetensors({"a": entry("F64", [1 << 32, 1 << 32], 0, 0)}),
        "shape-bytes-overflow": safetensors({"a": entry("F64", [1 << 62], 0, 0)}),
        "zero-size-huge-dims": safetensors({"a": entry("F32", [0, (1 << 63) - 1, (1 << 63) - 1], 0, 0)}),
        "dim-past-int64": safetensors({"a": entry("F32", [1 << 63, 0], 0, 0)}),
        "scalar": safetensors({"a": entry("F64", [], 0, 8)}, bytes(8)),
        "empty-name": safetensors({"": entry("U8", [1], 0, 1)}, b"x"),
        "nul-in-name": safetensors({"a\u0000b": entry("U8", [1], 0, 1)}, b"x"),
        "unicode-name": safetensors({"h\u00e9llo.\u2713": entry("U8", [1], 0, 1)}, b"x"),
        "metadata-not-string": safetensors({"__metadata__": {"k": 1}}),
        "metadata-not-object": safetensors({"__metadata__": ["k"]}),
        "gap-between-tensors": safetensors({"a": entry("U8", [1], 0, 1), "b": entry("U8", [1], 3, 4)}, b"abcd"),
        "invalid-utf8": safetensors(b'{"\xff\xfe":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x"),
        # nlohmann's out_of_range escaped open() instead of an Error (fix: parse_header catches it).
        "crash-number-out-of-range": safetensors(b'{"a":{"dtype":"U8","shape":[1e400],"data_offsets":[0,0]}}'),
        # Stack overflow: ordered_json copies nested values recursively when an object grows
        # (fix: parse_header refuses nesting deeper than 16).
        "crash-deep-nesting": safetensors(('{"t":{"dtype":"F32","shape":' + "[" * 8100 + "]" * 8100 +
                                           ',"data_offsets":[0,0]}}').encode()),
        # Accepted, and TensorInfo::numel() overflowed int64 (fix: safetensors_reader.cpp checks every partial product).
        "crash-numel-overflows-int64": safetensors({"t": entry("F32", [1 << 62, 3, 0], 0, 0)}),
    }
    for name, data in seeds.items():
        write("safetensors_header_fuzz", name, data)


# --- quant8s_fuzz: tensor count, then per tensor name, dtype, rank, dims, fill -

Q_NAMES = ["x.weight", "x.weight_scale", "x.bias", "y.weight", "y.weight_scale", "y.bias", "x.bias_scale", "x",
           "x.weight_scale_scale"]
Q_DTYPES = ["I8", "F32", "F16", "BF16", "U8", "I32"]
SMALL, PATTERN, RAW = 0, 1, 2  # fill modes


def q_tensor(name, dtype, shape, fill=SMALL, fill_bytes=b""):
    return bytes([Q_NAMES.index(name), Q_DTYPES.index(dtype), len(shape), *shape, fill]) + fill_bytes


def q_file(*tensors):
    return bytes([len(tensors) - 1]) + b"".join(tensors)


def quant8s_seeds():
    pair = [q_tensor("x.weight", "I8", [4, 8]), q_tensor("x.weight_scale", "F32", [4]), q_tensor("x.bias", "F32", [4])]
    y_pair = [q_tensor("y.weight", "I8", [2, 8]), q_tensor("y.weight_scale", "F16", [2]), q_tensor("y.bias", "BF16", [2])]
    seeds = {
        "valid-pair": q_file(*pair),
        "valid-pair-scale-column": q_file(pair[0], q_tensor("x.weight_scale", "BF16", [4, 1]), pair[2]),
        "valid-rank3-weight": q_file(q_tensor("x.weight", "I8", [4, 2, 3]), pair[1], pair[2]),
        "stacked-pairs": q_file(*pair, *y_pair),
        "stacked-cols-differ": q_file(*pair, q_tensor("y.weight", "I8", [2, 7]), y_pair[1], y_pair[2]),
        "stacked-int8-with-float": q_file(*pair, q_tensor("y.weight", "F32", [2, 8]), y_pair[2]),
        "scale-missing": q_file(pair[0], pair[2]),
        "scale-shape-short": q_file(pair[0], q_tensor("x.weight_scale", "F32", [3]), pair[2]),
        "scale-shape-wide": q_file(pair[0], q_tensor("x.weight_scale", "F32", [4, 2]), pair[2]),
        "scale-scalar": q_file(pair[0], q_tensor("x.weight_scale", "F32", []), pair[2]),
        "scale-dtype-int": q_file(pair[0], q_tensor("x.weight_scale", "I32", [4]), pair[2]),
        "scale-dtype-u8": q_file(pair[0], q_tensor("x.weight_scale", "U8", [4]), pair[2]),
        "scale-dtype-i8": q_file(pair[0], q_tensor("x.weight_scale", "I8", [4]), pair[2]),
        "scale-nan": q_file(pair[0], q_tensor("x.weight_scale", "F32", [4], PATTERN, b"\xff\xff\xff\xff"), pair[2]),
        "scale-inf": q_file(pair[0], q_tensor("x.weight_scale", "F16", [4], PATTERN, b"\x00\x7c"), pair[2]),
        "scale-raw": q_file(pair[0], q_tensor("x.weight_scale", "F32", [4], RAW, bytes(range(0, 64, 4)) * 1), pair[2]),
        "weight-minus-128": q_file(q_tensor("x.weight", "I8", [4, 8], PATTERN, b"\x80"), pair[1], pair[2]),
        "weight-rank1": q_file(q_tensor("x.weight", "I8", [4]), pair[1], pair[2]),
        "weight-scalar": q_file(q_tensor("x.weight", "I8", []), q_tensor("x.weight_scale", "F32", []), pair[2]),
        "weight-zero-rows": q_file(q_tensor("x.weight", "I8", [0, 8]), q_tensor("x.weight_scale", "F32", [0]), pair[2]),
        "weight-zero-cols": q_file(q_tensor("x.weight", "I8", [4, 0]), pair[1], pair[2]),
        "weight-u8": q_file(q_tensor("x.weight", "U8", [4, 8]), pair[1], pair[2]),
        "float-weight": q_file(q_tensor("x.weight", "F32", [4, 8]), pair[2]),
        "float-weight-bf16": q_file(q_tensor("x.weight", "BF16", [64, 64]), q_tensor("x.bias", "F16", [64])),
        "bias-wrong-size": q_file(pair[0], pair[1], q_tensor("x.bias", "F32", [5])),
        "bias-int": q_file(pair[0], pair[1], q_tensor("x.bias", "I32", [4])),
        "bias-missing": q_file(pair[0], pair[1]),
        "bias-with-scale": q_file(*pair, q_tensor("x.bias_scale", "F32", [4])),
        "scale-of-scale": q_file(pair[0], q_tensor("x.weight_scale", "I8", [4, 1]), q_tensor("x.weight_scale_scale", "F32", [4]), pair[2]),
        "bare-name": q_file(q_tensor("x", "I8", [4, 8]), pair[1]),
        # 8-bit S stored as panels (U8, q + 128): valid, stacked, holding -128 (a zero byte), not fitting.
        "panels-valid": q_file(q_tensor("x.weight", "U8", [64, 64], PATTERN, b"\x80\x81\x7f\xff"),
                               q_tensor("x.weight_scale", "F32", [64]), q_tensor("x.bias", "F32", [64])),
        "panels-stacked": q_file(q_tensor("x.weight", "U8", [64, 64], PATTERN, b"\x81"), q_tensor("x.weight_scale", "F32", [64]),
                                 q_tensor("x.bias", "F32", [64]), q_tensor("y.weight", "U8", [64, 64], PATTERN, b"\x7f"),
                                 q_tensor("y.weight_scale", "F16", [64]), q_tensor("y.bias", "F32", [64])),
        "panels-minus-128": q_file(q_tensor("x.weight", "U8", [64, 64], PATTERN, b"\x81\x00"),
                                   q_tensor("x.weight_scale", "F32", [64]), q_tensor("x.bias", "F32", [64])),
        "panels-not-fitting": q_file(q_tensor("x.weight", "U8", [4, 8], PATTERN, b"\x81"), pair[1], pair[2]),
        # Precision::Int8 quantizes a NaN weight at load: the scalar kernel converts NaN to int8, undefined
        # behaviour (seen with TILEDRAW_ISA=scalar; open: WeightStore::linear does not check for finite values).
        "crash-int8-precision-nan-weight": q_file(q_tensor("x.weight", "F32", [2, 2], PATTERN, b"\xff" * 4),
                                                  q_tensor("x.bias", "F32", [2])),
    }
    for name, data in seeds.items():
        write("quant8s_fuzz", name, data)


# --- model_loader_fuzz: kind, base dtype, precision, then operations ---------

KINDS = ["dit", "dit-diffusers", "vae", "mlp"]
BASES = ["f32", "f16", "bf16", "8bit-s"]
PRECISIONS = ["auto", "float", "int8"]
OPS = ["Drop", "Rename", "RenameSuffix", "RenameBlock", "SetDim", "HugeDim", "AddDim", "DropDim", "Scalar", "SetDtype",
       "Quantize", "Poison", "SetConfig", "EraseConfig", "RawConfig", "SetMetadata", "CopyBlock"]
CONFIG_KEYS = ["input_size", "sample_size", "patch_size", "in_channels", "hidden_size", "depth", "num_layers", "num_heads",
               "num_attention_heads", "num_classes", "learn_sigma", "norm_eps", "norm_num_groups", "scaling_factor",
               "block_out_channels", "layers_per_block", "latent_channels", "out_channels"]
# Indices into the target's kConfigValues and kMetadataValues.
CONFIG_ZERO, CONFIG_MINUS_ONE, CONFIG_3, CONFIG_17, CONFIG_HUGE, CONFIG_STRING = 0, 1, 4, 9, 12, 19
METADATA_KEYS = ["input_shape", "class_names", "activation", "config", "format"]


def op(name, tensor=0, *operands):
    return bytes([OPS.index(name)]) + struct.pack("<H", tensor) + bytes(operands)


def model(kind, base="f32", precision="auto", *ops):
    return bytes([KINDS.index(kind), BASES.index(base), PRECISIONS.index(precision)]) + b"".join(ops)


def model_loader_seeds():
    seeds = {}
    for kind in KINDS:
        for base in BASES:
            for precision in PRECISIONS:
                seeds[f"{kind}-{base}-{precision}"] = model(kind, base, precision)
    config = lambda key, value: op("SetConfig", 0, CONFIG_KEYS.index(key), value)
    seeds.update({
        "dit-config-hidden-disagrees": model("dit", "f32", "auto", config("hidden_size", CONFIG_17)),
        "dit-config-heads-zero": model("dit", "f32", "auto", config("num_heads", CONFIG_ZERO)),
        "dit-config-heads-3": model("dit", "8bit-s", "auto", config("num_heads", CONFIG_3)),
        "dit-config-input-huge": model("dit", "f16", "float", config("input_size", CONFIG_HUGE)),
        "dit-config-depth-string": model("dit", "f32", "auto", config("depth", CONFIG_STRING)),
        "dit-no-config": model("dit", "f32", "auto", op("EraseConfig", 0, 0)),
        "dit-config-not-json": model("dit", "f32", "auto", op("RawConfig", 0, 5), b"[1, 2"),
        "dit-config-not-utf8": model("dit", "f32", "auto", op("RawConfig", 0, 5), b"\xa7\xff\x00{\x80"),
        "dit-extra-block": model("dit", "f32", "auto", op("CopyBlock", 8, 0)),
        "dit-drop-qkv-bias": model("dit", "f16", "int8", op("Drop", 9)),
        "dit-qkv-rows": model("dit", "f32", "auto", op("SetDim", 8, 0, 5)),
        "dit-patch-not-square": model("dit", "f32", "auto", op("SetDim", 1, 3, 3)),
        "dit-fc1-int8-no-scale": model("dit", "f32", "auto", op("SetDtype", 12, 4)),
        "dit-fc1-quantized": model("dit", "f32", "float", op("Quantize", 12)),
        "dit-scale-dropped": model("dit", "8bit-s", "auto", op("Drop", 45)),
        "dit-rename-to-diffusers": model("dit", "f32", "auto", op("Rename", 1, 200, 0)),
        "diffusers-extra-block": model("dit-diffusers", "f32", "auto", op("CopyBlock", 3, 0)),
        "diffusers-to-k-rows": model("dit-diffusers", "f32", "auto", op("SetDim", 11, 0, 9)),
        "vae-groups-3": model("vae", "f32", "auto", config("norm_num_groups", CONFIG_3)),
        "vae-no-config": model("vae", "f32", "auto", op("EraseConfig", 0, 0)),
        "vae-extra-up-block": model("vae", "f32", "auto", op("CopyBlock", 40, 0)),
        "vae-conv-in-channels": model("vae", "f16", "auto", op("SetDim", 2, 1, 7)),
        "vae-norm-scalar": model("vae", "f32", "auto", op("Scalar", 4)),
        "mlp-input-shape-flat": model("mlp", "f32", "auto", op("SetMetadata", 0, METADATA_KEYS.index("input_shape"), 1)),
        "mlp-input-shape-zero": model("mlp", "f32", "auto", op("SetMetadata", 0, METADATA_KEYS.index("input_shape"), 2)),
        "mlp-class-names-short": model("mlp", "f32", "auto", op("SetMetadata", 0, METADATA_KEYS.index("class_names"), 16)),
        "mlp-activation-gelu": model("mlp", "f32", "auto", op("SetMetadata", 0, METADATA_KEYS.index("activation"), 12)),
        "mlp-extra-layer": model("mlp", "8bit-s", "int8", op("CopyBlock", 2, 1)),
        "mlp-fc2-huge-empty": model("mlp", "f32", "auto", op("HugeDim", 2, 1, 4, 0)),
        # The class table's shape was never checked against [num_classes + 1, hidden]: reads past it
        # (fix: DitModel::conditioning checks it).
        "crash-dit-class-table-flat": model("dit", "f16", "auto", op("DropDim", 7, 0)),
        "crash-dit-diffusers-class-table-empty": model("dit-diffusers", "f16", "auto", op("SetDim", 25, 0, 0)),
        "crash-dit-diffusers-class-table-one-row": model("dit-diffusers", "f32", "auto", op("DropDim", 25, 0)),
        # NaN class embeddings reach the activation quantizer, whose scalar kernel converts NaN to int8:
        # undefined behaviour (seen with TILEDRAW_ISA=scalar; open).
        "crash-dit-nan-class-table": model("dit", "f32", "int8", op("Poison", 7)),
        # read_config read shape[0] of a scalar (fix: rows() in read_config).
        "crash-dit-fc1-scalar": model("dit", "f32", "auto", op("Scalar", 12)),
        "crash-dit-final-linear-scalar": model("dit", "f32", "auto", op("Scalar", 28)),
        # An empty patch embedding [0, 4, 2^40, 2^40]: patch * patch overflowed (fix: read_config refuses it).
        "crash-dit-empty-patch-huge-dims": model("dit", "f32", "auto", op("HugeDim", 1, 2, 2, 0), op("HugeDim", 1, 3, 2, 0)),
        # Group norm vectors smaller than the channels: read past them (fix: VaeDecoder::norm, group_norm).
        "crash-vae-norm-too-small": model("vae", "f32", "auto", op("SetDim", 4, 0, 4), op("SetDim", 5, 0, 4)),
        "crash-vae-norm-bias-scalar": model("vae", "f16", "auto", op("Scalar", 5)),
        # channels * height * width overflowed (fix: MlpClassifier checks the product).
        "crash-mlp-input-shape-overflow": model("mlp", "f32", "auto", op("SetMetadata", 0, METADATA_KEYS.index("input_shape"), 5)),
    })
    for name, data in seeds.items():
        write("model_loader_fuzz", name, data)


# --- png_metadata_fuzz: width, height, channels, pixels, entries --------------

def png_input(entries, width=2, height=2, channels=1):
    channel_index = {1: 0, 3: 1, 2: 4}[channels]
    pixels = bytes((i * 37) % 256 for i in range(width * height * channels))
    out = bytes([width - 1, height - 1, channel_index]) + pixels + bytes([len(entries)])
    for key, value in entries:
        out += bytes([len(key)]) + key + struct.pack("<H", len(value)) + value
    return out


def png_seeds():
    seeds = {
        "parameters": png_input([(b"parameters", b"tiledraw generate --class 3 --steps 50 --seed 7")]),
        "rgb": png_input([(b"Software", b"tiledraw")], 4, 4, 3),
        "no-text": png_input([]),
        "utf8": png_input([(b"Comment", "caf\u00e9 \u2713 \U0001F600".encode())]),
        "latin1-not-utf8": png_input([(b"Comment", b"caf\xe9")]),
        "overlong-utf8": png_input([(b"Comment", b"\xc0\xaf")]),
        "surrogate-utf8": png_input([(b"Comment", b"\xed\xa0\x80")]),
        "past-unicode-utf8": png_input([(b"Comment", b"\xf4\x90\x80\x80")]),
        "truncated-utf8": png_input([(b"Comment", b"ok \xe2\x9c")]),
        "nul-in-value": png_input([(b"Comment", b"before\x00after")]),
        "control-chars": png_input([(b"Comment", b"line\nline\ttab\x01")]),
        "empty-value": png_input([(b"Title", b"")]),
        "empty-key": png_input([(b"", b"value")]),
        "key-79": png_input([(b"k" * 79, b"value")]),
        "key-80": png_input([(b"k" * 80, b"value")]),
        "key-255": png_input([(b"k" * 255, b"value")]),
        "key-nul": png_input([(b"a\x00b", b"value")]),
        "key-leading-space": png_input([(b" key", b"value")]),
        "key-trailing-space": png_input([(b"key ", b"value")]),
        "key-double-space": png_input([(b"a  b", b"value")]),
        "key-newline": png_input([(b"a\nb", b"value")]),
        "key-latin1": png_input([(b"caf\xe9", b"value")]),
        "key-nbsp": png_input([(b"a\xa0b", b"value")]),
        "long-value": png_input([(b"parameters", b"x" * 4000)]),
        "long-utf8-value": png_input([(b"parameters", "\u00e9".encode() * 2000)]),
        "three-entries": png_input([(b"a", b"1"), (b"b", "\u00e9".encode()), (b"c", b"")]),
        "two-channels": png_input([(b"a", b"1")], 2, 2, 2),
        # Written as the key "?": libpng takes a C string (fix: write_png refuses keys libpng would change).
        "crash-key-with-nul": png_input([(b"?\x00\x05\x01", b"")], 1, 1, 1),
    }
    for name, data in seeds.items():
        write("png_metadata_fuzz", name, data)


# --- tokenizer_fuzz: the prompt, as bytes -----------------------------------

def tokenizer_seeds():
    long_prompt = ", ".join(["a cat"] * 40) + " BREAK " + " ".join(["dog"] * 80)
    seeds = {
        "plain": b"a photo of a cat",
        "weights": b"a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        "unbalanced": b"((a [b) c] d:1.2) e) (f",
        "escapes": b"\\(x\\) \\[y\\] \\\\ \\z",
        "break": b"a BREAK b BREAK BREAK (c BREAK d) BREAKfast",
        "long-commas": long_prompt.encode(),
        "html": b"&amp;amp; &#65; &#x1F600; &lt &ampx &#0; &#xD800; &#99999999999;",
        "specials": b"<|startoftext|>a<|endoftext|>b<|ENDOFTEXT|>",
        "unicode": "Caf\u00e9 \u00c9COLE \u03a3\u039f\u03a3 \u0130 \ufb01 \uff21 \u201cq\u201d \u6771\u4eac \u0661.\u0665".encode(),
        "contractions": b"it's I'LL we'VE they're 'd 'm 't",
        "digits-punctuation": b"2024!!! ... ?!? 3.14159 ----",
        "not-utf8": b"a\xff\xfe b\xe2\x9c c\xed\xa0\x80 d\xf4\x90\x80\x80",
        "controls": b"a\x00b\x07c\x1bd\x7f\xc2\x85e",
        "huge-weight": b"(a:99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
                       b"9999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
                       b"9999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999"
                       b"99999999999999999999999999999999999999999) (b:..) (c:-1.5)",
        "long-word": b"a" * 2000,
        "empty": b"",
        "lora-tags": b"a cat <lora:style:0.8> <lyco:b:te=0:unet=1.5> <lora:c:0.5:1e308> <hypernet:x> <lora:> <lora:d",
    }
    for name, data in seeds.items():
        write("tokenizer_fuzz", name, data)


# --- a1111_request_fuzz: a flags byte (bit 0: img2img), then the body --------

def tiny_png():
    """A 2 x 1 gray PNG, built here with zlib."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 2, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x10\xf0"))
            + chunk(b"IEND", b""))


def request_seeds():
    import base64
    png = base64.b64encode(tiny_png()).decode()
    bodies = {
        "txt2img-full": (0, {"prompt": "a (cat:1.2)", "negative_prompt": "blurry", "seed": -1, "sampler_name": "DPM++ 2M Karras",
                             "scheduler": "automatic", "steps": 20, "cfg_scale": 7, "width": 64, "height": 64,
                             "batch_size": 2, "n_iter": 2, "send_images": True, "save_images": False,
                             "override_settings": {"sd_model_checkpoint": "x.safetensors", "CLIP_stop_at_last_layers": 2,
                                                   "sd_vae": "y"},
                             "override_settings_restore_afterwards": True, "restore_faces": False, "enable_hr": False}),
        "txt2img-nulls": (0, {"prompt": None, "seed": None, "sampler_name": None, "sampler_index": "Euler a", "steps": 20.0}),
        "txt2img-wrong-types": (0, {"prompt": 1, "steps": "20", "width": [64], "override_settings": "x"}),
        "txt2img-limits": (0, {"steps": 51, "width": 257, "batch_size": 5, "n_iter": 2, "seed": 4294967296}),
        "img2img": (1, {"prompt": "a dog", "init_images": ["data:image/png;base64," + png], "denoising_strength": 0.5}),
        "img2img-bad-base64": (1, {"init_images": ["iVBOR%%%"]}),
        "img2img-truncated": (1, {"init_images": [png[:20]]}),
    }
    for name, (flags, body) in bodies.items():
        write("a1111_request_fuzz", name, bytes([flags]) + json.dumps(body).encode())
    write("a1111_request_fuzz", "not-json", b"\x00{\"prompt\": ")
    write("a1111_request_fuzz", "array", b"\x00[1, 2, 3]")
    # nlohmann's number overflow escaped as out_of_range, not an ApiError (a 500 from the server).
    write("a1111_request_fuzz", "crash-number-overflow", b'\x00{"steps": 1e400}')


def main():
    request_seeds()
    header_seeds()
    quant8s_seeds()
    model_loader_seeds()
    png_seeds()
    tokenizer_seeds()
    total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(os.path.join(HERE, "corpus"))
                for f in files)
    print(f"fuzz/corpus: {total / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
