#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the real-scale case files of cases/real/ (one per synthetic checkpoint): token ids
drawn with an integer hash (the same on every machine), images from golden/real/images/.

    python3 cases/real/make_cases.py

The checkpoint hashes are what `logitcheck synth --preset P --seed 1` prints; README.md in this
folder describes the keys and where the bounds come from.
"""
import json
import math
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
IMG = "golden/real/images/"
VOCAB_TEXT = 248044  # ids below the first special token (248044 = bos/eos)

SHA = {
    "qwen3.5-0.8b": "c822383adbcfc8c6348274a0acfac9e577cc2355a7f015246e932dfaafafb4cc",
    "qwen3.5-4b-l4": "87ff4099c03f0396b9243ef24ae8c8ff6aa880e86d05d156e8903362304f6a38",
    "qwen3.5-35b-a3b-l2": "c595636516aff6fbf76f9280ceeacb09bbbb11cb5f2f472429621670b35108b8",
}

# Per-case bounds from measured floors (README.md, "Measured"): FLOORS holds, per build, the
# worst max_abs of the case over every comparison against the golden, between schedules and of
# the states (logitcheck run on the 2-core machine, reference engine). The bound is 4x the
# floor, rounded up to 2 significant digits; in the float build a top-1 flip counts only where
# the golden's top-2 gap is above twice the bound (top1_agree_margin). A case not measured in a
# build keeps the catalog's class bounds there (CLASS, cases/README.md).
CLASS = {"f32": {"max_abs": 5e-4, "top1_agree": 1.0}, "f64": {"max_abs": 1e-9, "top1_agree": 1.0}}
FLOORS = {
    "real08.golden.image_odd": {"f32": 4.23e-4, "f64": 1.67e-12},
    "real08.golden.image_tiny": {"f32": 2.54e-4, "f64": 1.43e-12},
    "real08.golden.image_half": {"f32": 3.31e-4, "f64": 1.73e-12},
    "real08.multi_image.adjacent": {"f32": 2.80e-4, "f64": 1.50e-12},
    "real08.batch.left_pad": {"f32": 3.30e-4, "f64": 1.60e-12},
    "real08.golden.image_hd": {"f32": 3.62e-4, "f64": 2.02e-12},
    "real08.batch.pad_one": {"f32": 2.87e-4, "f64": 1.13e-12},
    "real4b.golden.text_577": {"f32": 1.02e-4, "f64": 6.87e-13},  # f64 on the device CPU
    "real4b.golden.image_odd": {"f32": 1.09e-4, "f64": 7.32e-13},
    # measured on the 16-core device CPU (OpenBLAS SkylakeX kernels), not the 2-core machine
    "real08.golden.text_2048": {"f32": 4.16e-4, "f64": 1.69e-12},
    "real08.golden.text_8192": {"f32": 3.97e-4, "f64": 1.90e-12},
    "real08.golden.text_1089": {"f32": 3.93e-4, "f64": 1.36e-12},
    "real35.golden.text_577": {"f32": 6.31e-5, "f64": 5.97e-13},  # f32: the routing near-tie left out
    "real35.golden.image_half": {"f32": 6.71e-5, "f64": 5.90e-13},
}
FACTOR = 4


def up2(x):
    """x rounded up to 2 significant digits."""
    e = math.floor(math.log10(x)) - 1
    return float(f"{math.ceil(x / 10 ** e - 1e-9) * 10 ** e:.2g}") if x > 0 else 0.0


def bounds(name):
    out = {}
    for prec in ("f32", "f64"):
        floor = FLOORS.get(name, {}).get(prec)
        if floor is None:
            out[prec] = CLASS[prec]
        elif prec == "f32":
            b = up2(FACTOR * floor)
            out[prec] = {"max_abs": b, "top1_agree_margin": 1.0, "top1_margin": up2(2 * b)}
        else:
            out[prec] = {"max_abs": up2(FACTOR * floor), "top1_agree": 1.0}
    return out

# The final hidden state's comparisons (hidden_bounds, README.md "What the runner compares"):
# HIDDEN_FLOORS holds, per case and build, the worst (max_abs, nmse) of each comparison over
# every schedule and batch row (hidden_rms: engine rms / golden rms against 1; hidden_sketch:
# the sketch / (golden rms * sqrt(H)); hidden_sample: the sampled rows / golden rms), measured
# as FLOORS are. The bound is FACTOR times the floor, per metric. A case not measured in a
# build (the 4B and 35B-A3B checkpoints, not synthesized on the measuring machine, and the
# slow cases) takes HIDDEN_UNMEASURED_FACTOR times the largest bound of the measured cases of
# that build: the metrics are relative to the row, so the width of the checkpoint changes
# them little, and the factor leaves room for longer prompts and other widths until measured.
HIDDEN_FLOORS = {
    "real08.golden.image_odd": {
        "f32": {"rms": (1.003e-07, 8.454e-16), "sketch": (3.337e-05, 6.281e-11), "sample": (4.244e-05, 6.066e-11)},
        "f64": {"rms": (1.998e-15, 4.161e-31), "sketch": (1.747e-13, 1.586e-27), "sample": (2.367e-13, 1.300e-27)}},
    "real08.golden.image_tiny": {
        "f32": {"rms": (8.192e-08, 7.627e-16), "sketch": (3.480e-05, 7.026e-11), "sample": (2.910e-05, 4.982e-11)},
        "f64": {"rms": (1.554e-15, 3.988e-31), "sketch": (1.634e-13, 1.454e-27), "sample": (1.596e-13, 9.571e-28)}},
    "real08.golden.image_half": {
        "f32": {"rms": (7.991e-08, 7.246e-16), "sketch": (2.702e-05, 5.990e-11), "sample": (2.820e-05, 4.245e-11)},
        "f64": {"rms": (2.220e-15, 4.937e-31), "sketch": (1.497e-13, 1.485e-27), "sample": (1.626e-13, 1.077e-27)}},
    "real08.multi_image.adjacent": {
        "f32": {"rms": (8.817e-08, 7.826e-16), "sketch": (3.366e-05, 5.972e-11), "sample": (3.789e-05, 5.092e-11)},
        "f64": {"rms": (1.998e-15, 4.333e-31), "sketch": (1.538e-13, 1.332e-27), "sample": (1.633e-13, 1.184e-27)}},
    "real08.batch.left_pad": {
        "f32": {"rms": (9.951e-08, 7.064e-16), "sketch": (3.129e-05, 5.653e-11), "sample": (3.847e-05, 5.171e-11)},
        "f64": {"rms": (1.998e-15, 3.345e-31), "sketch": (1.361e-13, 1.433e-27), "sample": (1.663e-13, 1.292e-27)}},
    "real08.golden.image_hd": {
        "f32": {"rms": (1.225e-07, 7.208e-16), "sketch": (3.232e-05, 6.496e-11), "sample": (3.789e-05, 5.961e-11)},
        "f64": {"rms": (2.442e-15, 3.935e-31), "sketch": (2.285e-13, 2.374e-27), "sample": (2.449e-13, 2.045e-27)}},
    "real08.batch.pad_one": {
        "f32": {"rms": (6.136e-08, 5.244e-16), "sketch": (2.157e-05, 4.481e-11), "sample": (2.900e-05, 3.829e-11)},
        "f64": {"rms": (1.554e-15, 4.068e-31), "sketch": (8.454e-14, 7.584e-28), "sample": (1.046e-13, 4.983e-28)}},
    "real4b.golden.text_577": {
        "f32": {"rms": (2.31e-08, 2.34e-17), "sketch": (9.73e-06, 4.28e-12), "sample": (1.55e-05, 4.12e-12)},
        "f64": {"rms": (3.331e-15, 1.061e-30), "sketch": (5.645e-14, 1.454e-28), "sample": (7.527e-14, 1.594e-28)}},
    # measured on the 16-core device CPU (OpenBLAS SkylakeX kernels)
    "real08.golden.text_8192": {
        "f64": {"rms": (2.442e-15, 3.741e-31), "sketch": (3.099e-13, 9.485e-28), "sample": (2.915e-13, 1.105e-27)}},
    "real35.golden.text_577": {
        "f32": {"rms": (1.747e-08, 1.357e-17), "sketch": (7.328e-06, 1.666e-12), "sample": (8.541e-06, 1.747e-12)}},
    "real35.golden.image_half": {
        "f32": {"rms": (1.650e-08, 2.162e-17), "sketch": (5.914e-06, 2.728e-12), "sample": (1.015e-05, 2.979e-12)}},
    "real4b.golden.image_odd": {
        "f32": {"rms": (1.52e-08, 3.15e-17), "sketch": (1.09e-05, 5.95e-12), "sample": (1.35e-05, 6.60e-12)},
        "f64": {"rms": (3.55e-15, 8.47e-31), "sketch": (6.62e-14, 2.22e-28), "sample": (7.86e-14, 2.17e-28)}},
}
# A second float32 engine: transformers 5.17 on CUDA in float32 (TF32 off) through the adapter,
# the worst of each comparison over real08.golden.image_hd, image_tiny, batch.left_pad and
# batch.pad_one (cases/real/README.md, "The final hidden state"). Its floors are 2 to 4 times
# the reference float build's (a different order of accumulation, the same float32 rounding), so
# a float32 case's floor is the larger of the two: the bounds admit either correct engine and
# still fail the planted tenfold final-norm epsilon (nmse 1.0e-13, 3.6x the rms bound).
HIDDEN_F32_PEER = {"rms": (3.06e-07, 7.26e-15), "sketch": (1.13e-04, 4.74e-10), "sample": (1.05e-04, 4.18e-10)}
HIDDEN_UNMEASURED_FACTOR = 4
HIDDEN_KEYS = ("rms", "sketch", "sample")


def hidden_bounds(name):
    out = {k: {} for k in HIDDEN_KEYS}
    for prec in ("f32", "f64"):
        for k in HIDDEN_KEYS:
            floor = HIDDEN_FLOORS.get(name, {}).get(prec, {}).get(k)
            if floor is not None and prec == "f32":
                floor = tuple(max(a, b) for a, b in zip(floor, HIDDEN_F32_PEER[k]))
            if floor is not None:
                out[k][prec] = {"max_abs": up2(FACTOR * floor[0]), "nmse": up2(FACTOR * floor[1])}
            else:
                measured = [f[prec][k] for f in HIDDEN_FLOORS.values() if prec in f]
                if prec == "f32":
                    measured.append(HIDDEN_F32_PEER[k])
                out[k][prec] = {"max_abs": up2(HIDDEN_UNMEASURED_FACTOR * up2(FACTOR * max(m[0] for m in measured))),
                                "nmse": up2(HIDDEN_UNMEASURED_FACTOR * up2(FACTOR * max(m[1] for m in measured)))}
    return out


SWEEP = [64, 128, 512, 63, 65, 127, 129, 511, 513]


def mix(z):
    z &= (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return z ^ (z >> 31)


def ids(stream, n):
    """n token ids of stream `stream` (an integer), uniform over the text vocabulary."""
    return [mix((stream << 32) + i) % VOCAB_TEXT for i in range(n)]


def case(preset, name, kind, description, labels, **kw):
    c = {"name": name, "kind": kind, "checkpoint": f"real-checkpoints/{preset}-s1",
         "golden": f"golden/real/{preset}.h5", "labels": ["real"] + labels, "description": description}
    c.update(kw)
    c["bounds"] = bounds(name)
    c["checkpoint_synth"] = {"preset": preset, "seed": 1, "sha256": SHA[preset]}
    c["golden_layout"] = "sparse-v1"
    c["hidden_bounds"] = hidden_bounds(name)
    return c


def cases_08():
    p = "qwen3.5-0.8b"
    return [
        case(p, "real08.golden.text_2048", "golden",
             "2048-token prompt and 8 decode steps after it: GDN chunk boundaries (32 chunks of 64), the "
             "head-dim-256 attention kernel and the 248320-row lm_head at real scale.",
             ["long", "decode"], prompt=[{"ids": ids(1, 2048)}], decode={"greedy": 8}, chunk_sweep=SWEEP),
        case(p, "real08.golden.text_8192", "golden",
             "8192-token prompt: state carried through 128 GDN chunks and across 2176-token cache blocks; "
             "positions far beyond every fixture.",
             ["long", "slow"], prompt=[{"ids": ids(2, 8192)}], decode={"greedy": 2}, chunk_sweep=[64, 512, 513]),
        case(p, "real08.golden.text_1089", "golden",
             "A prompt of 1089 = 17*64 + 1 tokens: the last GDN chunk holds one token.",
             ["long"], prompt=[{"ids": ids(3, 1089)}], decode={"greedy": 4}, chunk_sweep=[64, 65, 63]),
        case(p, "real08.golden.image_odd", "golden",
             "A 500x375 image (neither side a multiple of 32) after 40 text tokens: resize rounding, the "
             "12-block 768-wide vision tower, and GDN chunks of 64 ending inside the image.",
             ["image", "chunk_in_image"],
             prompt=[{"ids": ids(4, 40)}, {"image": IMG + "odd_500x375.png"}, {"ids": ids(5, 24)}],
             decode={"greedy": 4}, chunk_sweep=[64, 65, 128]),
        case(p, "real08.golden.image_hd", "golden",
             "A 1920x1080 image under a max_pixels bound of 1003520: smart_resize's floor branch scales it "
             "to 736x1312 (943 image tokens).",
             ["image", "max_pixels"],
             prompt=[{"ids": ids(6, 12)}, {"image": IMG + "hd_1920x1080.png"}, {"ids": ids(7, 12)}],
             decode={"greedy": 2}, image_max_pixels=1003520),
        case(p, "real08.golden.image_tiny", "golden",
             "A 20x20 image below min_pixels (65536): smart_resize's ceil branch scales it up.",
             ["image", "min_pixels"],
             prompt=[{"ids": ids(8, 9)}, {"image": IMG + "tiny_20x20.png"}, {"ids": ids(9, 9)}],
             decode={"greedy": 3}),
        case(p, "real08.golden.image_half", "golden",
             "A 464x304 image: 14.5 and 9.5 patch-merge blocks, so round-half-even (14 down, 10 up) decides "
             "the grid; round-half-up gives another token count.",
             ["image", "rounding"],
             prompt=[{"ids": ids(10, 17)}, {"image": IMG + "half_464x304.png"}, {"ids": ids(11, 15)}],
             decode={"greedy": 3}),
        case(p, "real08.multi_image.adjacent", "multi_image",
             "Two images with no text between them (vision_end then vision_start): the second image's "
             "positions start right after the first's.",
             ["image", "adjacent"],
             prompt=[{"ids": ids(12, 11)}, {"image": IMG + "adj_a_256x256.png"},
                     {"image": IMG + "adj_b_448x192.png"}, {"ids": ids(13, 13)}],
             decode={"greedy": 3}),
        case(p, "real08.batch.left_pad", "batch",
             "A left-padded batch of three rows of 148, 138 and 125 tokens (0, 10 and 23 pads), images in "
             "two rows: pads must leave GDN state and positions untouched, each row's rope delta is its own.",
             ["batch", "image", "pads"], pad_id=248044,
             rows=[[{"ids": ids(14, 50)}, {"image": IMG + "adj_b_448x192.png"}, {"ids": ids(15, 12)}],
                   [{"ids": ids(16, 64)}, {"image": IMG + "adj_a_256x256.png"}, {"ids": ids(17, 8)}],
                   [{"ids": ids(18, 125)}]],
             decode={"greedy": 3}),
        case(p, "real08.batch.pad_one", "batch",
             "A batch of one row with 5 left pads: the single-row path with a mask.",
             ["batch", "pads"], pad_id=248044, rows=[[{"ids": ids(19, 70)}]], pad_to=75, decode={"greedy": 3}),
    ]


def cases_4b():
    p = "qwen3.5-4b-l4"
    return [
        case(p, "real4b.golden.text_577", "golden",
             "577 = 9*64 + 1 tokens through 32 GDN value heads reading 16 key heads (value head j reads "
             "key head j/2), hidden 2560, 16/4 attention heads.",
             ["long", "gqa_gdn"], prompt=[{"ids": ids(21, 577)}], decode={"greedy": 4}, chunk_sweep=[64, 65, 128]),
        case(p, "real4b.golden.image_odd", "golden",
             "The 500x375 image through the 1024-wide, 16-head vision tower (head dim 64) merged to 2560.",
             ["image"], prompt=[{"ids": ids(22, 20)}, {"image": IMG + "odd_500x375.png"}, {"ids": ids(23, 10)}],
             decode={"greedy": 2}),
    ]


def cases_35b():
    p = "qwen3.5-35b-a3b-l2"
    return [
        case(p, "real35.golden.text_577", "golden",
             "577 tokens through 256 experts (top 8, width 512) and a gated shared expert, GDN 16/32 heads, "
             "untied lm_head.",
             ["long", "moe"], prompt=[{"ids": ids(31, 577)}], decode={"greedy": 4}, chunk_sweep=[64, 65]),
        case(p, "real35.golden.image_half", "golden",
             "The 464x304 image through the 1152-wide vision tower (16 heads of 72) merged to 2048, then "
             "the MoE decoder.",
             ["image", "moe"], prompt=[{"ids": ids(32, 8)}, {"image": IMG + "half_464x304.png"},
                                       {"ids": ids(33, 8)}], decode={"greedy": 2}),
    ]


def main():
    for preset, items in (("qwen3.5-0.8b", cases_08()), ("qwen3.5-4b-l4", cases_4b()),
                          ("qwen3.5-35b-a3b-l2", cases_35b())):
        path = os.path.join(HERE, f"{preset}.json")
        text = json.dumps({"cases": items}, indent=1)
        # number lists on one line each
        text = re.sub(r"\[\s*([-0-9., \n]+?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
        with open(path, "w") as f:
            f.write(text + "\n")
        print(f"{path}: {len(items)} cases, {len(text)} bytes")


if __name__ == "__main__":
    main()
