#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the committed malformed inputs under tests/corpus/<input type>/ (standard library
only; run from anywhere: python3 tests/corpus/make_corpus.py). Each file breaks one rule a
reader must enforce; tests/corpus/corpus.cmake runs the command that reads it and asserts
exit code 2, one line on stderr naming the file, no leak and an untouched earlier output.
Files too big to commit (sparse, special) and the HDF5 inputs (tests/corpus/h5_mutate.c)
are made at test time."""
import json, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def out(kind, name, data):
    d = os.path.join(HERE, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


dense = open(os.path.join(ROOT, "golden/tiny-dense/config.json")).read()
text_cfg = json.loads(dense)["text_config"]


def text_only(**over):
    c = dict(text_cfg)
    c.update(over)
    return json.dumps(c, indent=1)


# ---------------------------------------------------------------- config.json
out("config", "duplicate_key.json", dense.replace('"hidden_size": 64,', '"hidden_size": 64, "hidden_size": 32,', 1))
out("config", "duplicate_top_key.json", dense.replace('"image_token_id": 1000,', '"image_token_id": 1000, "image_token_id": 7,', 1))
out("config", "nul_escape.json", dense.replace('"qwen3_5_text"', '"qwen3_5_text\\u0000x"', 1))
out("config", "control_byte.json", dense.replace('"qwen3_5_text"', '"qwen3_5\x01_text"', 1))
out("config", "trailing_garbage.json", dense + "\n{}")
out("config", "deep_nesting.json", '{"a": ' + "[" * 3000 + "]" * 3000 + "}")
out("config", "empty.json", "")
# sizes that fit the machine but imply more weights than the safetensors files hold: refused
# before the weight block is allocated from them (the old path allocated 12 GB first)
out("config", "sizes_past_files.json", dense.replace('"intermediate_size": 128,', '"intermediate_size": 4000000,', 1))
out("config", "heads_wrap.json", text_only(num_attention_heads=2147483646))
out("config", "state_wrap.json", text_only(linear_value_head_dim=2000000000))
# vocab x hidden x 4 bytes wraps 2^64 (cfg_count_wrap): the weight block size
out("config", "count_wrap.json", text_only(vocab_size=2147483647, hidden_size=2147483647, head_dim=64))
out("config", "layers_times_heads.json", text_only(num_hidden_layers=512, layer_types=None,
                                                   linear_num_value_heads=65536, linear_num_key_heads=65536,
                                                   linear_key_head_dim=32768, linear_value_head_dim=1))

# ---------------------------------------------------------------- preprocessor_config.json
out("preprocessor", "min_pixels_huge.json", '{"min_pixels": 9000000000000000, "max_pixels": 9000000000000000}')
out("preprocessor", "max_pixels_huge.json", '{"size": {"shortest_edge": 1024, "longest_edge": 1000000000000}}')
out("preprocessor", "duplicate_key.json", '{"patch_size": 16, "merge_size": 2, "merge_size": 4}')
out("preprocessor", "nul_escape.json", '{"image_processor_type": "Qwen2VL\\u0000"}')


# ---------------------------------------------------------------- safetensors
def st(header, data=b""):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h)) + h + data


T1 = '"t": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}'
out("safetensors", "header_past_end.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
out("safetensors", "length_cut.safetensors", b"\x05\x00\x00\x00\x00")
out("safetensors", "header_nul.safetensors", st(b'{"t\x00": {}}'))
out("safetensors", "entry_duplicate_key.safetensors",
    st('{"t": {"dtype": "F32", "dtype": "F16", "shape": [2, 2], "data_offsets": [0, 16]}}', bytes(16)))
out("safetensors", "tensor_duplicate.safetensors", st("{" + T1 + ", " + T1 + "}", bytes(16)))
out("safetensors", "offsets_huge.safetensors",
    st('{"t": {"dtype": "F32", "shape": [4], "data_offsets": [9007199254740000, 9007199254740016]}}', bytes(16)))
out("safetensors", "shape_wrap.safetensors",
    st('{"t": {"dtype": "F32", "shape": [1099511627776, 1099511627776, 1099511627776], "data_offsets": [0, 16]}}',
       bytes(16)))
out("safetensors", "header_not_object.safetensors", st("[1, 2, 3]"))

# ---------------------------------------------------------------- model.safetensors.index.json
out("index", "dotdot.json", '{"weight_map": {"t": "../tiny-dense/model.safetensors"}}')
out("index", "absolute.json", '{"weight_map": {"t": "/etc/hostname"}}')
out("index", "duplicate_key.json", '{"weight_map": {"t": "a.safetensors", "t": "b.safetensors"}}')
out("index", "nul_escape.json", '{"weight_map": {"t": "a\\u0000.safetensors"}}')


# ---------------------------------------------------------------- PNG
def chunk(kind, data, length=None):
    n = len(data) if length is None else length
    return struct.pack(">I", n) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)


SIG = b"\x89PNG\r\n\x1a\n"


def ihdr(w, h):
    return chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))


def idat_rgb(w, h):
    raw = b"".join(b"\x00" + bytes((3 * x + y) & 255 for x in range(3 * w)) for y in range(h))
    return chunk(b"IDAT", zlib.compress(raw))


# ancillary chunks that declare about 2 GB and stop: nothing may be allocated for them
out("png", "text_chunk_2gb.png", SIG + ihdr(32, 32) + struct.pack(">I", 0x7ffffff0) + b"tEXt" + b"Title\x00abc")
out("png", "splt_chunk_2gb.png", SIG + ihdr(32, 32) + struct.pack(">I", 0x7ffffff0) + b"sPLT" + b"pal\x00\x08")
out("png", "unknown_chunk_2gb.png", SIG + ihdr(32, 32) + struct.pack(">I", 0x7ffffff0) + b"zzZz" + b"\x00" * 16)
out("png", "zero_width.png", SIG + ihdr(0, 32) + idat_rgb(1, 1) + chunk(b"IEND", b""))
# 300 x 1 pixels: a valid PNG whose aspect ratio exceeds the processor's limit of 200
out("png", "aspect_300x1.png", SIG + ihdr(300, 1) + idat_rgb(300, 1) + chunk(b"IEND", b""))

# ---------------------------------------------------------------- results JSON (--base)
out("results", "duplicate_key.json", '{"format": "logitcheck-results", "version": 1, "version": 2, "cases": []}')
out("results", "trailing_garbage.json", '{"format": "logitcheck-results", "version": 1, "cases": []} trailing')
out("results", "nul_escape.json", '{"format": "logitcheck-results\\u0000", "version": 1, "cases": []}')
out("results", "control_byte.json", '{"format": "logitcheck-results", "version": 1, "engine": "f\x0232", "cases": []}')
