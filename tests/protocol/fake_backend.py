#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The transformers adapter's protocol layer (harness/adapters/transformers_engine.py: Wire,
Server, Seq) over a toy numpy model instead of transformers, so its framing, handle tables,
snapshot copies and batch bookkeeping are testable where torch is not installed.

    python3 fake_backend.py            an engine on stdin/stdout (the toy model)
    python3 fake_backend.py --test     drives that engine through a pipe and checks the replies

The toy model: V = 32, H = 8, 2 layers; logits are a function of a running hash of the
sequence's tokens (the same as tests/protocol/bad_engine.c), so chunked == one-shot,
restored snapshots continue like the original, and batch rows equal single runs exactly.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "harness", "adapters"))
import transformers_engine as te  # noqa: E402

V, H, L, R = 32, 8, 2, 4


def step(h, tok):
    return (h * 2654435761 + tok + 1) & 0xFFFFFFFF


def logits_of(h, pos):
    v = np.arange(V)
    return np.sin((h % 100003) * 0.001 + v * 0.37 + pos * 0.01) * 3.0


class FakeCache:
    def __init__(self):
        self.h = 0


class FakeBackend:
    loaded = False

    def describe(self):
        return {"name": "fake-transformers", "version": "0", "precision": "f64", "detail": "toy numpy model",
                "capabilities": ["positions", "snapshot", "batch", "state", "hidden", "rope", "vjp", "pad_to"]}

    def load(self, ckpt):
        self.loaded = True
        return {"model_type": "qwen3_5", "vocab_size": V, "hidden_size": H, "num_layers": L, "has_vision": False,
                "image_token_id": -1, "video_token_id": -1, "vision_start_token_id": -1,
                "vision_end_token_id": -1, "rotary_dim": R, "rope_theta": 10000.0, "mrope_section": [2, 0, 0],
                "mrope_interleaved": True}

    def prompt_open(self, segs, vision_from, pixel_limits=(0, 0)):
        ids = []
        for s in segs:
            if "image" in s:
                raise te.Unsupported("the toy model has no vision tower")
            ids += s["ids"]
        p = te.Prompt()
        p.n, p.ids, p.grids, p.delta = len(ids), ids, [], 0
        p.ids_np = np.array(ids, dtype=np.int32)
        p.pos_np = np.tile(np.arange(len(ids), dtype=np.int64), (3, 1))
        return p

    def prefill(self, s, p, a, b, sel, hidden):
        if s.cache is None:
            s.cache = FakeCache()
        rows = []
        for t in range(a, b):
            s.cache.h = step(s.cache.h, p.ids[t])
            rows.append(logits_of(s.cache.h, t))
        s.length = b
        lg = np.stack(rows)
        hid = np.cos(np.arange((L + 1) * (b - a) * H).reshape(L + 1, b - a, H) * 0.1) if hidden else None
        return (lg if sel == "all" else lg[-1]), hid

    def decode(self, s, token):
        if s.cache is None:
            s.cache = FakeCache()
        s.cache.h = step(s.cache.h, token)
        s.length += 1
        return logits_of(s.cache.h, s.length - 1)

    def batch_group(self, prompts, handles):
        g = te.Group()
        g.B, g.M, g.done, g.prompt_handles = len(prompts), te.layout_len(prompts), 0, list(handles)
        g.prompts, g.h = prompts, [0] * len(prompts)
        return g

    def batch_prefill(self, g, a, b):
        out = np.zeros((g.B, b - a, V))
        for r, p in enumerate(g.prompts):
            pad = g.M - p.n
            for c in range(a, b):
                if c >= pad:
                    g.h[r] = step(g.h[r], p.ids[c - pad])
                    out[r, c - a] = logits_of(g.h[r], c - pad)
        g.done = b
        return out

    def batch_decode(self, g, seqs, toks):
        out = np.zeros((g.B, V))
        for r, (s, t) in enumerate(zip(seqs, toks)):
            g.h[r] = step(g.h[r], t)
            out[r] = logits_of(g.h[r], s.length)
        return out

    def vision(self, p):
        return np.zeros((0, H))

    def state(self, s):
        return np.array([float(s.length), float(s.cache.h if s.cache else 0)])

    def state_row(self, g, r):
        return np.array([float(g.done - (g.M - g.prompts[r].n)), float(g.h[r])])

    def vjp(self, fn, params, ins, grads, want):
        """The toy differentiates the decoder RMSNorm only, in closed form (float64)."""
        if fn != "rmsnorm":
            raise te.InputError(f"vjp: the toy model differentiates rmsnorm only, not '{fn}'")
        x, w, dy = ins["x"], ins["w"], grads["d_out"]
        eps = params.get("eps", 1e-6)
        r = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
        xh = x * r
        g = dy * (1.0 + w)
        res = {"grad_x": r * (g - xh * (g * xh).mean(-1, keepdims=True)), "grad_w": (dy * xh).sum(0),
               "out": xh * (1.0 + w)}
        return {k: v for k, v in res.items() if k in want}

    def rope(self, positions):
        t = np.array(positions[0], dtype=np.float64)[:, None]
        ang = t * 10000.0 ** (-2.0 * np.arange(R // 2) / R)
        return np.concatenate([np.cos(ang), np.sin(ang)], axis=1)


# ---------------------------------------------------------------- the self-test


class Client:
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        self.id = 0

    def call(self, op, payload=b"", **fields):
        req = dict(id=self.id, op=op, **fields)
        self.id += 1
        self.p.stdin.write(json.dumps(req).encode() + b"\n" + payload)
        self.p.stdin.flush()
        hdr = json.loads(self.p.stdout.readline())
        assert hdr["id"] == req["id"], hdr
        out = {}
        for t in hdr.get("tensors", []):
            b = self.p.stdout.read(t["bytes"])
            assert len(b) == t["bytes"], (t, len(b))
            fmt = {"f64": "<f8", "f32": "<f4", "i32": "<i4", "i64": "<i8"}[t["dtype"]]
            out[t["name"]] = np.frombuffer(b, dtype=fmt).reshape(t["shape"])
        return hdr, out


def self_test():
    c = Client()
    h, _ = c.call("hello", protocol=1)
    assert h["ok"] and h["protocol"] == 1 and "snapshot" in h["capabilities"], h
    h, _ = c.call("hello", protocol=2)
    assert not h["ok"] and h["kind"] == "input" and "protocol version 1" in h["error"], h
    h, _ = c.call("load", dir="toy")
    assert h["model"]["vocab_size"] == V, h
    h, t = c.call("prompt_open", segments=[{"ids": list(range(1, 11))}], vision_from=0)
    pa = h["prompt"]
    assert h["n"] == 10 and list(t["ids"]) == list(range(1, 11)) and t["positions"].shape == (3, 10), (h, t)
    h, t = c.call("prompt_open", segments=[{"ids": [11, 12, 13]}], vision_from=0)
    pb = h["prompt"]
    s1 = c.call("seq_open")[0]["seq"]
    s2 = c.call("seq_open")[0]["seq"]
    h, one = c.call("prefill", seq=s1, prompt=pa, **{"from": 0, "to": 10}, logits="all", hidden=True)
    assert one["logits"].shape == (10, V) and one["hidden"].shape == (L + 1, 10, H), one
    h, _ = c.call("prefill", seq=s2, prompt=pa, **{"from": 0, "to": 4}, logits="none", hidden=False)
    assert h["ok"] and "tensors" not in h, h
    h, _ = c.call("prefill", seq=s2, prompt=pa, **{"from": 5, "to": 10}, logits="last", hidden=False)
    assert not h["ok"] and h["kind"] == "input" and "holds 4 tokens" in h["error"], h
    h, last = c.call("prefill", seq=s2, prompt=pa, **{"from": 4, "to": 10}, logits="last", hidden=False)
    assert np.array_equal(last["logits"], one["logits"][9]), "chunked != one-shot"
    snap = c.call("snapshot", seq=s1)[0]["snap"]
    _, d1 = c.call("decode", seq=s1, token=3, logits=True)
    s3 = c.call("restore", snap=snap)[0]["seq"]
    _, d2 = c.call("decode", seq=s3, token=3, logits=True)
    assert np.array_equal(d1["logits"], d2["logits"]), "restored snapshot decodes differently"
    _, d3 = c.call("decode", seq=s1, token=3, logits=True)
    s4 = c.call("restore", snap=snap)[0]["seq"]
    _, d4 = c.call("decode", seq=s4, token=3, logits=True)
    assert np.array_equal(d4["logits"], d1["logits"]) and not np.array_equal(d3["logits"], d1["logits"]), \
        "a snapshot changed after its sequence went on"
    b1, b2 = c.call("seq_open")[0]["seq"], c.call("seq_open")[0]["seq"]
    h, bl = c.call("batch_prefill", seqs=[b1, b2], prompts=[pa, pb], **{"from": 0, "to": 6}, logits=True)
    assert bl["logits"].shape == (2, 6, V), bl
    h, _ = c.call("decode", seq=b1, token=1, logits=True)
    assert not h["ok"] and h["kind"] == "unsupported", h
    h, bl2 = c.call("batch_prefill", seqs=[b1, b2], prompts=[pa, pb], **{"from": 6, "to": 10}, logits=True)
    full = np.concatenate([bl["logits"], bl2["logits"]], axis=1)
    assert np.array_equal(full[0], one["logits"]), "batch row 0 != single run"
    h, bd = c.call("batch_decode", seqs=[b1, b2], tokens=[5, 6], logits=True)
    assert bd["logits"].shape == (2, V), bd
    # pad_to: a batch of one row padded to 13 columns (3 pads); its real columns and the decode
    # after it equal the row alone; pad_to below the prompt is bad input; pixel bounds are a
    # capability the toy does not declare: refused, never ignored
    h, _ = c.call("prompt_open", segments=[{"ids": list(range(1, 11))}], vision_from=0, pad_to=13)
    assert h["ok"] and h["n"] == 10, h
    pp = h["prompt"]
    b3 = c.call("seq_open")[0]["seq"]
    h, pl = c.call("batch_prefill", seqs=[b3], prompts=[pp], **{"from": 0, "to": 13}, logits=True)
    assert h["ok"] and pl["logits"].shape == (1, 13, V), h
    assert np.array_equal(pl["logits"][0, 3:], one["logits"]), "padded batch of one != single run"
    h, _ = c.call("batch_prefill", seqs=[b3], prompts=[pp], **{"from": 13, "to": 14}, logits=True)
    assert not h["ok"] and h["kind"] == "input" and "13 columns" in h["error"], h
    h, _ = c.call("state", seq=b3)
    assert h["ok"] and h["len"] == 10, h
    for bad, kind, text in (({"pad_to": 9}, "input", "pad_to 9 is below the prompt's 10"),
                            ({"pad_to": -1}, "input", '"pad_to" is not a non-negative integer'),
                            ({"image_max_pixels": 4096}, "unsupported", "needs capability pixel_limits")):
        h, _ = c.call("prompt_open", segments=[{"ids": list(range(1, 11))}], vision_from=0, **bad)
        assert not h["ok"] and h["kind"] == kind and text in h["error"], (bad, h)
    h, r = c.call("rope", positions=[[0, 7], [0, 7], [0, 7]])
    assert r["rope"].shape == (2, R) and abs(r["rope"][1, 0] - np.cos(7.0)) < 1e-15, r
    h, st = c.call("state", seq=s1)
    assert h["ok"] and h["len"] == 12 and st["state"].shape == (2,), (h, st)
    h, sb = c.call("state", seq=b1)
    assert h["ok"] and h["len"] == 11 and sb["state"].shape == (2,), h
    # a restored sequence continues with another prompt that extends the first (second turn)
    h, t = c.call("prompt_open", segments=[{"ids": list(range(1, 11)) + [3, 9, 9]}], vision_from=0)
    s5 = c.call("restore", snap=snap)[0]["seq"]
    h, cont = c.call("prefill", seq=s5, prompt=h["prompt"], **{"from": 10, "to": 13}, logits="last", hidden=False)
    assert h["ok"] and cont["logits"].shape == (V,), h
    # vjp: payloads after the request line; results as asked, one not computed left out
    rng = np.random.RandomState(3)
    x, w, dy = rng.standard_normal((5, 8)), rng.standard_normal(8), rng.standard_normal((5, 8))
    desc = lambda n, a: {"name": n, "dtype": "f64", "shape": list(a.shape), "bytes": a.size * 8}
    pay = x.astype("<f8").tobytes() + w.astype("<f8").tobytes() + dy.astype("<f8").tobytes()
    want = [{"name": "grad_x", "shape": [5, 8]}, {"name": "grad_w", "shape": [8]}, {"name": "grad_nothing", "shape": [1]}]
    h, g = c.call("vjp", payload=pay, fn="rmsnorm", params={"eps": 1e-6}, inputs=[desc("x", x), desc("w", w)],
                  grads=[desc("d_out", dy)], want=want)
    assert h["ok"] and sorted(g) == ["grad_w", "grad_x"], (h, list(g))

    def loss(xx):
        return float((xx / np.sqrt((xx * xx).mean(-1, keepdims=True) + 1e-6) * (1 + w) * dy).sum())
    e = np.zeros_like(x)
    e[2, 3] = 1e-6
    fd = (loss(x + e) - loss(x - e)) / 2e-6
    assert abs(fd - g["grad_x"][2, 3]) < 1e-7, (fd, g["grad_x"][2, 3])
    h, _ = c.call("vjp", payload=pay, fn="gdn_fused", params={}, inputs=[desc("x", x), desc("w", w)],
                  grads=[desc("d_out", dy)], want=want)
    assert not h["ok"] and h["kind"] == "input" and "gdn_fused" in h["error"], h
    h, _ = c.call("seq_open")
    assert h["ok"], "a refused vjp left the stream out of step"
    h, _ = c.call("no_such_op")
    assert not h["ok"] and h["kind"] == "unsupported", h
    c.p.stdin.write(b"this is not json\n")
    c.p.stdin.flush()
    h = json.loads(c.p.stdout.readline())
    assert not h["ok"] and h["id"] is None, h
    h, _ = c.call("reset")
    h, _ = c.call("decode", seq=s1, token=1, logits=True)
    assert not h["ok"] and "no sequence" in h["error"], h
    h, _ = c.call("shutdown")
    assert h["ok"]
    assert c.p.wait(timeout=10) == 0
    print("fake_backend: adapter protocol layer: all checks passed")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--test"]:
        sys.exit(self_test())
    wire = te.Wire(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout = sys.stderr
    te.Server(FakeBackend(), wire).serve()
