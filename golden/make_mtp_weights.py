#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the MTP head (mtp.* tensors) of a tiny checkpoint as CKPT/mtp.safetensors.

The tiny checkpoints were written by transformers, which has no MTP module and drops mtp.* on
load; their goldens record the SHA-256 of model.safetensors alone (export_hf.py's
checkpoint_hash). The head therefore lives in a file of its own that transformers never opens
and that no existing hash covers; the reference engine loads it beside model.safetensors
(reference/mtp.c). Names and shapes are those of published Qwen3.5 checkpoints
(mtp_num_hidden_layers 1): mtp.fc.weight (H, 2H), mtp.pre_fc_norm_embedding.weight,
mtp.pre_fc_norm_hidden.weight, mtp.norm.weight (H), and mtp.layers.0.* a full-attention
decoder layer (dense MLP, or MoE with fused experts gate_up_proj (E, 2I, H) / down_proj (E, H, I)).

Values: deterministic, from Python's random.Random(seed) (Mersenne Twister, gauss):
Linear weights N(0, 1/in_features), norm weights (zero-centred, used as 1 + w) N(0, 0.2^2).
Pure Python (no numpy), little-endian float32.

    python3 golden/make_mtp_weights.py golden/tiny-dense [--seed 11] [--per-expert]

--per-expert writes the same values with the MoE experts split per expert
(mtp.layers.0.mlp.experts.E.{gate,up,down}_proj.weight, the published checkpoints' layout):
gate_proj = rows [0, I) of expert E's gate_up_proj, up_proj = rows [I, 2I).
"""

import argparse
import json
import math
import os
import random
import struct
import sys


def head_tensors(cfg):
    """(name, shape, kind) of every MTP tensor the text config implies; kind is 'linear'
    (fan-in = last dim) or 'norm'."""
    H, Hq, Hkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or H // Hq
    out = [("mtp.fc.weight", (H, 2 * H), "linear"),
           ("mtp.pre_fc_norm_embedding.weight", (H,), "norm"),
           ("mtp.pre_fc_norm_hidden.weight", (H,), "norm"),
           ("mtp.norm.weight", (H,), "norm")]
    p = "mtp.layers.0."
    out += [(p + "input_layernorm.weight", (H,), "norm"),
            (p + "post_attention_layernorm.weight", (H,), "norm"),
            (p + "self_attn.q_proj.weight", (Hq * D * 2, H), "linear"),
            (p + "self_attn.k_proj.weight", (Hkv * D, H), "linear"),
            (p + "self_attn.v_proj.weight", (Hkv * D, H), "linear"),
            (p + "self_attn.o_proj.weight", (H, Hq * D), "linear"),
            (p + "self_attn.q_norm.weight", (D,), "norm"),
            (p + "self_attn.k_norm.weight", (D,), "norm")]
    if "num_experts" in cfg and cfg.get("num_experts"):
        E, I = cfg["num_experts"], cfg["moe_intermediate_size"]
        Is = cfg["shared_expert_intermediate_size"]
        out += [(p + "mlp.gate.weight", (E, H), "linear"),
                (p + "mlp.experts.gate_up_proj", (E, 2 * I, H), "linear"),
                (p + "mlp.experts.down_proj", (E, H, I), "linear"),
                (p + "mlp.shared_expert.gate_proj.weight", (Is, H), "linear"),
                (p + "mlp.shared_expert.up_proj.weight", (Is, H), "linear"),
                (p + "mlp.shared_expert.down_proj.weight", (H, Is), "linear"),
                (p + "mlp.shared_expert_gate.weight", (1, H), "linear")]
    else:
        F = cfg["intermediate_size"]
        out += [(p + "mlp.gate_proj.weight", (F, H), "linear"),
                (p + "mlp.up_proj.weight", (F, H), "linear"),
                (p + "mlp.down_proj.weight", (H, F), "linear")]
    return out


def split_experts(tensors):
    """The fused experts.gate_up_proj (E, 2I, H) / experts.down_proj (E, H, I) as per-expert
    (I, H) gate and up and (H, I) down tensors, same values."""
    out = []
    p = "mtp.layers.0.mlp.experts."
    for name, shape, values in tensors:
        if name == p + "gate_up_proj":
            E, I2, H = shape
            I = I2 // 2
            for e in range(E):
                slab = values[e * I2 * H:(e + 1) * I2 * H]
                out.append((f"{p}{e}.gate_proj.weight", (I, H), slab[:I * H]))
                out.append((f"{p}{e}.up_proj.weight", (I, H), slab[I * H:]))
        elif name == p + "down_proj":
            E, H, I = shape
            for e in range(E):
                out.append((f"{p}{e}.down_proj.weight", (H, I), values[e * H * I:(e + 1) * H * I]))
        else:
            out.append((name, shape, values))
    return out


def write_safetensors(path, tensors):
    """tensors: list of (name, shape, list of floats); float32, offsets in list order."""
    header, blobs, at = {}, [], 0
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    header["__metadata__"] = {"format": "pt", "generator": "golden/make_mtp_weights.py"}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--per-expert", action="store_true", help="MoE experts as per-expert tensors")
    args = ap.parse_args(argv)
    with open(os.path.join(args.checkpoint, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    text = cfg.get("text_config", cfg)
    rng = random.Random(args.seed)
    tensors = []
    for name, shape, kind in head_tensors(text):
        n = math.prod(shape)
        sd = 0.2 if kind == "norm" else 1.0 / math.sqrt(shape[-1])
        tensors.append((name, shape, [rng.gauss(0.0, sd) for _ in range(n)]))
    if args.per_expert:
        tensors = split_experts(tensors)
    out = os.path.join(args.checkpoint, "mtp.safetensors")
    write_safetensors(out, tensors)
    print(f"wrote {out} ({len(tensors)} tensors, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
