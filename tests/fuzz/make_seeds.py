#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed inputs of the fuzz targets that are not committed fixtures already
(tests/fuzz/seeds/<target>/). Standard library only: python3 tests/fuzz/make_seeds.py."""
import os, random, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def out(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def st(header, data):
    h = header.encode()
    return struct.pack("<Q", len(h)) + h + data


# a valid two-tensor file, F32 and BF16, with metadata
out("safetensors", "valid.safetensors",
    st('{"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
       '"b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [8, 16]}}', struct.pack("<ff", 1.5, -2.0) + bytes(8)))
out("safetensors", "f16_f64.safetensors",
    st('{"h": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}, "d": {"dtype": "F64", "shape": [1], '
       '"data_offsets": [8, 16]}}', bytes(16)))
out("index", "valid.json", '{"metadata": {"total_size": 16}, "weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}')
# config target: first byte even = config.json, odd = preprocessor_config.json
for name in ("tiny-dense", "tiny-moe"):
    out("config", name + ".config", b"\x00" + open(os.path.join(ROOT, "golden", name, "config.json"), "rb").read())
    out("config", name + ".preproc",
        b"\x01" + open(os.path.join(ROOT, "golden", name, "preprocessor_config.json"), "rb").read())
# HDF5 recipes (see fuzz_h5.c): a few fixed byte strings
rng = random.Random(16)
for i in range(6):
    out("h5", "recipe-%d" % i, bytes([1 if i % 2 else 2, 1]) + bytes(rng.randrange(256) for _ in range(200)))
