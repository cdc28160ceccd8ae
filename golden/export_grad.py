#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes golden/gradients.h5: float64 autograd gradients of transformers' own Qwen3.5 functions.

Every golden here is torch autograd (reverse mode, float64, with transformers' float32 islands
lifted to float64 exactly as export_hf.py lifts them) through the transformers function named in
the group's `function` attribute, on fixed seeded inputs and a fixed seeded output gradient. The
loss whose gradient is stored is sum(out * d_out) (+ sum(final_state * d_state) where a state
comes out), so `grad_*` are vector-Jacobian products with the stored output gradients.

Groups (layout in golden/README.md):
  /gdn/<case>      torch_chunk_gated_delta_rule and torch_recurrent_gated_delta_rule
  /conv            causal_conv1d_fn over (carried state | inputs)
  /l2norm          l2norm, with zero (padded) rows
  /rmsnorm_gated   Qwen3_5RMSNormGated
  /rmsnorm         Qwen3_5RMSNorm (1 + w)
  /mrope           Qwen3_5TextRotaryEmbedding (3-axis positions) + apply_rotary_pos_emb
  /layers/<case>   whole decoder layers of the tiny checkpoints (GDN and gated attention)

    python3 golden/export_grad.py --out golden/gradients.h5
"""
import argparse
import datetime
import importlib
import importlib.util
import inspect
import json
import os
import sys
import traceback

import h5py
import numpy as np


def log(msg):
    print(f"export_grad: {msg}", flush=True)


def import_export_hf(root):
    """The lift and model loading of golden/export_hf.py (same directory, or ROOT/golden)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (here, os.path.join(root, "golden")):
        p = os.path.join(d, "export_hf.py")
        if os.path.exists(p):
            spec = importlib.util.spec_from_file_location("export_hf", p)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    raise SystemExit("export_grad: error: golden/export_hf.py not found")


def wds(g, name, data, dtype=np.float64):
    arr = np.asarray(data, dtype=dtype)
    if arr.ndim == 0 or arr.size == 0:
        g.create_dataset(name, data=arr)
    else:
        g.create_dataset(name, data=arr, chunks=True, compression="gzip", compression_opts=4, shuffle=True)


class Ctx:
    def __init__(self, torch, Lift):
        self.torch, self.Lift = torch, Lift
        self.low = 0
        self.casts = 0

    def run(self, fn):
        """fn() under the float64 lift, with gradients on; counts float32 leftovers."""
        mode = self.Lift()
        with self.torch.enable_grad(), mode:
            out = fn()
        self.low += sum(mode.low_outputs.values())
        self.casts += sum(mode.casts.values())
        return out


def leaf(torch, a):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64, requires_grad=True)


def grad_of(torch, outs, douts, leaves):
    loss = sum((o * d).sum() for o, d in zip(outs, douts))
    gs = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [np.zeros(tuple(l.shape)) if g is None else g.detach().numpy() for g, l in zip(gs, leaves)]


def unit_rows(rng, shape):
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------- gated delta rule


def export_gdn(h5, ctx, M, name, n, Hk, Hv, Dk, Dv, chunk, seed):
    torch = ctx.torch
    rng = np.random.RandomState(seed)
    q = unit_rows(rng, (n, Hk, Dk))
    k = unit_rows(rng, (n, Hk, Dk))
    v = rng.standard_normal((n, Hv, Dv))
    g = -rng.uniform(0.005, 0.4, (n, Hv))
    g[rng.uniform(size=(n, Hv)) < 0.1] *= 8.0                 # a few strong decays
    beta = rng.uniform(0.05, 0.95, (n, Hv))
    s0 = 0.3 * rng.standard_normal((Hv, Dk, Dv))
    d_out = rng.standard_normal((n, Hv, Dv))
    d_state = rng.standard_normal((Hv, Dk, Dv))
    rep = Hv // Hk
    res = {}
    for kind in ("chunked", "recurrent"):
        L = [leaf(torch, a) for a in (q, k, v, g, beta, s0)]

        def fwd():
            qq = L[0][None].repeat_interleave(rep, dim=2)
            kk = L[1][None].repeat_interleave(rep, dim=2)
            args = (qq, kk, L[2][None], L[3][None], L[4][None])
            if kind == "chunked":
                o, s = M.torch_chunk_gated_delta_rule(*args, chunk_size=chunk, initial_state=L[5][None],
                                                      output_final_state=True, use_qk_l2norm_in_kernel=False)
            else:
                o, s = M.torch_recurrent_gated_delta_rule(*args, initial_state=L[5][None],
                                                          output_final_state=True, use_qk_l2norm_in_kernel=False)
            o, s = o[0], s[0]
            return o, s, grad_of(torch, (o, s), (torch.from_numpy(d_out), torch.from_numpy(d_state)), L)

        o, s, gr = ctx.run(fwd)
        res[kind] = (o.detach().numpy(), s.detach().numpy(), gr)
    grp = h5.create_group(f"gdn/{name}")
    grp.attrs["function"] = "torch_chunk_gated_delta_rule (chunk_size), torch_recurrent_gated_delta_rule"
    grp.attrs["note"] = ("q, k are the kernels' inputs (unit rows, use_qk_l2norm_in_kernel=False): the functions "
                         "scale q by Dk^-0.5 themselves; value head h reads key head h // (Hv/Hk)")
    for a, val in (("n", n), ("Hk", Hk), ("Hv", Hv), ("Dk", Dk), ("Dv", Dv), ("chunk", chunk), ("seed", seed)):
        grp.attrs[a] = val
    for nm, a in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta), ("state0", s0), ("d_out", d_out),
                  ("d_state", d_state)):
        wds(grp, nm, a)
    worst = 0.0
    for kind in ("chunked", "recurrent"):
        o, s, gr = res[kind]
        sub = grp.create_group(kind)
        wds(sub, "out", o)
        wds(sub, "state", s)
        for nm, a in zip(("grad_q", "grad_k", "grad_v", "grad_g", "grad_beta", "grad_state0"), gr):
            wds(sub, nm, a)
    for a, b in zip(res["chunked"][2], res["recurrent"][2]):
        worst = max(worst, float(np.max(np.abs(a - b) / (1 + np.abs(b)))))
    grp.attrs["check_chunked_vs_recurrent_grad_rel"] = worst
    log(f"gdn/{name}: n={n} chunk={chunk}; chunked vs recurrent autograd gradients agree to {worst:.3g}")
    return worst


# ---------------------------------------------------------------- small functions


def export_conv(h5, ctx, M, n=70, C=24, K=4, seed=11):
    torch = ctx.torch
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((n, C))
    s0 = rng.standard_normal((K - 1, C))
    w = 0.5 * rng.standard_normal((C, K))
    d_out = rng.standard_normal((n, C))
    d_state = rng.standard_normal((K - 1, C))
    L = [leaf(torch, a) for a in (x, w, s0)]

    def fwd():
        full = torch.cat([L[2], L[0]], dim=0).T[None]         # (1, C, K-1+n)
        y = M.causal_conv1d_fn(full, L[1], None, activation="silu")[0].T[-n:]
        st = full[0].T[-(K - 1):]
        return y, st, grad_of(torch, (y, st), (torch.from_numpy(d_out), torch.from_numpy(d_state)), L)

    y, st, gr = ctx.run(fwd)
    grp = h5.create_group("conv")
    grp.attrs["function"] = "causal_conv1d_fn(cat(state, x)), last n outputs; final state = last K-1 inputs"
    grp.attrs["activation"] = "silu"
    for nm, a in (("x", x), ("state0", s0), ("w", w), ("d_out", d_out), ("d_state", d_state),
                  ("out", y.detach().numpy()), ("state", st.detach().numpy()),
                  ("grad_x", gr[0]), ("grad_w", gr[1]), ("grad_state0", gr[2])):
        wds(grp, nm, a)
    log(f"conv: n={n} C={C} K={K}")


def export_l2norm(h5, ctx, M, seed=12):
    torch = ctx.torch
    rng = np.random.RandomState(seed)
    n, Hk, Dk = 12, 2, 16
    x = rng.standard_normal((n, Hk, Dk))
    x[:3] = 0.0                                               # padded positions: zero rows
    x[5, 1] = 0.0
    x[7, 0] *= 1e-4                                           # a row far below 1 but above sqrt(eps)
    d_y = rng.standard_normal((n, Hk, Dk))
    L = [leaf(torch, x)]

    def fwd():
        y = M.l2norm(L[0], dim=-1, eps=1e-6)
        return y, grad_of(torch, (y,), (torch.from_numpy(d_y),), L)

    y, gr = ctx.run(fwd)
    grp = h5.create_group("l2norm")
    grp.attrs["function"] = "l2norm(x, dim=-1, eps=1e-6)"
    grp.attrs["eps"] = 1e-6
    for nm, a in (("x", x), ("d_out", d_y), ("out", y.detach().numpy()), ("grad_x", gr[0])):
        wds(grp, nm, a)
    log("l2norm: zero rows at positions 0-2 and (5, 1)")


def export_rmsnorm_gated(h5, ctx, M, eps, seed=13):
    torch = ctx.torch
    rng = np.random.RandomState(seed)
    m, D = 20, 32
    x = rng.standard_normal((m, D))
    x[4] = 0.0                                                # a zero row (padded position)
    z = 2 * rng.standard_normal((m, D))
    w = 1 + 0.3 * rng.standard_normal(D)
    d_o = rng.standard_normal((m, D))
    mod = M.Qwen3_5RMSNormGated(D, eps=eps).to(torch.float64)
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(w))
    L = [leaf(torch, x), leaf(torch, z)]

    def fwd():
        o = mod(L[0], L[1])
        return o, grad_of(torch, (o,), (torch.from_numpy(d_o),), L + [mod.weight])

    o, gr = ctx.run(fwd)
    grp = h5.create_group("rmsnorm_gated")
    grp.attrs["function"] = "Qwen3_5RMSNormGated: x / sqrt(mean(x^2) + eps) * w * silu(z)"
    grp.attrs["eps"] = eps
    for nm, a in (("x", x), ("z", z), ("w", w), ("d_out", d_o), ("out", o.detach().numpy()),
                  ("grad_x", gr[0]), ("grad_z", gr[1]), ("grad_w", gr[2])):
        wds(grp, nm, a)
    log("rmsnorm_gated")


def export_rmsnorm(h5, ctx, M, eps, seed=14):
    torch = ctx.torch
    rng = np.random.RandomState(seed)
    m, D = 20, 64
    x = 3 * rng.standard_normal((m, D))
    w = 0.3 * rng.standard_normal(D)
    d_o = rng.standard_normal((m, D))
    mod = M.Qwen3_5RMSNorm(D, eps=eps).to(torch.float64)
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(w))
    L = [leaf(torch, x)]

    def fwd():
        o = mod(L[0])
        return o, grad_of(torch, (o,), (torch.from_numpy(d_o),), L + [mod.weight])

    o, gr = ctx.run(fwd)
    grp = h5.create_group("rmsnorm")
    grp.attrs["function"] = "Qwen3_5RMSNorm: x / sqrt(mean(x^2) + eps) * (1 + w)"
    grp.attrs["eps"] = eps
    for nm, a in (("x", x), ("w", w), ("d_out", d_o), ("out", o.detach().numpy()), ("grad_x", gr[0]),
                  ("grad_w", gr[1])):
        wds(grp, nm, a)
    log("rmsnorm")


def mm_positions(n_text0, grid_h, grid_w, n_text1):
    """(3, n) T/H/W positions: text, one image block of grid_h x grid_w merged tokens, text."""
    t, h, w = [], [], []
    for i in range(n_text0):
        t.append(i), h.append(i), w.append(i)
    s = n_text0
    for r in range(grid_h):
        for c in range(grid_w):
            t.append(s), h.append(s + r), w.append(s + c)
    nxt = s + max(grid_h, grid_w)
    for i in range(n_text1):
        t.append(nxt + i), h.append(nxt + i), w.append(nxt + i)
    return np.array([t, h, w], dtype=np.int64)


def export_mrope(h5, ctx, M, lm, text_cfg, seed=15):
    torch = ctx.torch
    rng = np.random.RandomState(seed)
    pos = mm_positions(5, 4, 6, 7) + 3                       # 36 tokens, a few offset positions
    n = pos.shape[1]
    Hq, Hkv, D = text_cfg.num_attention_heads, text_cfg.num_key_value_heads, text_cfg.head_dim
    q = rng.standard_normal((n, Hq, D))
    k = rng.standard_normal((n, Hkv, D))
    d_q = rng.standard_normal((n, Hq, D))
    d_k = rng.standard_normal((n, Hkv, D))
    L = [leaf(torch, q), leaf(torch, k)]

    def fwd():
        pid = torch.from_numpy(pos)[:, None, :]               # (3, 1, n)
        cos, sin = lm.rotary_emb(L[0], pid)
        qo, ko = M.apply_rotary_pos_emb(L[0].transpose(0, 1)[None], L[1].transpose(0, 1)[None], cos, sin)
        qo, ko = qo[0].transpose(0, 1), ko[0].transpose(0, 1)
        return qo, ko, cos[0], sin[0], grad_of(torch, (qo, ko), (torch.from_numpy(d_q), torch.from_numpy(d_k)), L)

    qo, ko, cos, sin, gr = ctx.run(fwd)
    rp = text_cfg.rope_parameters
    grp = h5.create_group("mrope")
    grp.attrs["function"] = "Qwen3_5TextRotaryEmbedding(position_ids (3, 1, n)) + apply_rotary_pos_emb"
    grp.attrs["rotary_dim"] = int(cos.shape[-1])
    grp.attrs["rope_theta"] = float(rp["rope_theta"])
    grp.attrs["mrope_section"] = np.asarray(rp["mrope_section"], dtype=np.int64)
    grp.attrs["mrope_interleaved"] = int(bool(rp.get("mrope_interleaved", False)))
    wds(grp, "position_ids", pos, np.int64)
    for nm, a in (("q", q), ("k", k), ("d_q", d_q), ("d_k", d_k), ("q_out", qo.detach().numpy()),
                  ("k_out", ko.detach().numpy()), ("cos", cos.detach().numpy()), ("sin", sin.detach().numpy()),
                  ("grad_q", gr[0]), ("grad_k", gr[1])):
        wds(grp, nm, a)
    log(f"mrope: n={n}, rotary dims {cos.shape[-1]} of {D}")


# ---------------------------------------------------------------- whole decoder layers


def export_layer(h5, ctx, name, ckpt_rel, model, layer_idx, n, n_pad, seed, pos=None):
    torch = ctx.torch
    lm = model.model.language_model
    layer = lm.layers[layer_idx]
    H = lm.config.hidden_size
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((n, H))
    d_o = rng.standard_normal((n, H))
    mask = np.ones(n, dtype=np.int64)
    mask[:n_pad] = 0
    params = [(nm, p) for nm, p in layer.named_parameters()]
    xl = leaf(torch, x)
    is_gdn = hasattr(layer, "linear_attn")
    if pos is None:
        pos = np.tile(np.arange(n, dtype=np.int64), (3, 1))

    def fwd():
        pid = torch.from_numpy(pos)[:, None, :]
        if is_gdn:
            m2 = torch.from_numpy(mask)[None]
            out = layer(xl[None], position_embeddings=None, attention_mask=m2)
        else:
            pe = lm.rotary_emb(xl[None], pid)
            neg = torch.finfo(torch.float64).min
            m4 = torch.full((n, n), neg, dtype=torch.float64).triu(1)[None, None]
            out = layer(xl[None], position_embeddings=pe, attention_mask=m4, position_ids=pid)
        out = out[0] if isinstance(out, tuple) else out
        out = out[0]
        return out, grad_of(torch, (out,), (torch.from_numpy(d_o),), [xl] + [p for _, p in params])

    out, gr = ctx.run(fwd)
    grp = h5.create_group(f"layers/{name}")
    grp.attrs["function"] = f"{type(layer).__name__}.forward ({'linear_attention' if is_gdn else 'full_attention'})"
    grp.attrs["checkpoint"] = ckpt_rel
    grp.attrs["layer"] = layer_idx
    grp.attrs["layer_type"] = "linear_attention" if is_gdn else "full_attention"
    grp.attrs["n"] = n
    grp.attrs["param_names"] = json.dumps([nm for nm, _ in params])
    grp.attrs["note"] = ("GDN layers get the 2-D attention mask (pads zeroed after input_layernorm, as transformers "
                         "does), no cache (zero conv and recurrent state); attention layers a causal additive mask")
    wds(grp, "x", x)
    wds(grp, "mask", mask, np.int64)
    wds(grp, "position_ids", pos, np.int64)
    wds(grp, "d_out", d_o)
    wds(grp, "out", out.detach().numpy())
    wds(grp, "grad_x", gr[0])
    gw = grp.create_group("grad_w")
    for (nm, _), a in zip(params, gr[1:]):
        wds(gw, nm, a)
    log(f"layers/{name}: {ckpt_rel} layer {layer_idx} ({grp.attrs['layer_type']}), n={n}, pads={n_pad}, "
        f"{len(params)} weights")


# ---------------------------------------------------------------- driver


def dump_sources(path):
    with open(path, "w") as f:
        for name in ("transformers.models.qwen3_5.modeling_qwen3_5", "transformers.models.qwen3_5_moe.modeling_qwen3_5_moe"):
            f.write(f"# ==== {name}\n")
            f.write(inspect.getsource(importlib.import_module(name)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output HDF5 file (written to a temporary name, then renamed)")
    ap.add_argument("--root", default=os.getcwd(), help="repository root (default: the current directory)")
    ap.add_argument("--dump-source", metavar="FILE", help="also write transformers' qwen3_5 modeling source here")
    args = ap.parse_args(argv)

    import torch
    import transformers
    ehf = import_export_hf(args.root)
    torch.set_default_dtype(torch.float64)
    Lift = ehf.make_lift(torch)
    ehf.lift_selftest(torch, Lift)
    M = importlib.import_module("transformers.models.qwen3_5.modeling_qwen3_5")
    if args.dump_source:
        dump_sources(args.dump_source)
    ctx = Ctx(torch, Lift)

    models = {}
    for rel in ("golden/tiny-dense", "golden/tiny-moe"):
        model, config = ehf.load_model(torch, transformers, os.path.join(args.root, rel))
        worst, cnt = ehf.rebuild_inv_freq(torch, model, config)
        models[rel] = (model, config)
        log(f"{rel}: loaded; {cnt} inv_freq rebuilt in float64 ({worst:.2g})")
    dense, dcfg = models["golden/tiny-dense"]
    tcfg = dcfg.get_text_config()

    tmp = args.out + f".tmp-{os.getpid()}"
    with h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = "logitcheck-gradients"
        h5.attrs["format_version"] = 1
        h5.attrs["generator"] = ehf.versions(torch, transformers)
        h5.attrs["dtype"] = "float64"
        h5.attrs["device"] = "cpu"
        h5.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        h5.attrs["loss"] = "sum(out * d_out) (+ sum(state * d_state)); grad_* = d loss / d input"
        h5.attrs["float64_lift"] = ("float32 requests turned into float64 by a torch function mode; rotary inv_freq "
                                    "rebuilt in float64 (as export_hf.py)")
        for rel in models:
            h5.attrs["checkpoint_sha256_" + os.path.basename(rel).replace("-", "_")] = ehf.checkpoint_hash(
                os.path.join(args.root, rel))
        failed = []

        def step(what, fn, *a, **kw):
            try:
                return fn(*a, **kw)
            except Exception:
                failed.append(what)
                log(f"{what}: FAILED\n{traceback.format_exc()}")
                return 0.0

        w1 = step("gdn/n70_chunk64", export_gdn, h5, ctx, M, "n70_chunk64", 70, 2, 4, 16, 32, 64, seed=1)
        w2 = step("gdn/n9_chunk4", export_gdn, h5, ctx, M, "n9_chunk4", 9, 2, 4, 16, 32, 4, seed=2)
        step("conv", export_conv, h5, ctx, M)
        step("l2norm", export_l2norm, h5, ctx, M)
        step("rmsnorm_gated", export_rmsnorm_gated, h5, ctx, M, tcfg.rms_norm_eps)
        step("rmsnorm", export_rmsnorm, h5, ctx, M, tcfg.rms_norm_eps)
        step("mrope", export_mrope, h5, ctx, M, dense.model.language_model, tcfg)
        apos = mm_positions(10, 4, 6, 36)                     # 70 tokens, an image block inside
        for tag, rel in (("dense", "golden/tiny-dense"), ("moe", "golden/tiny-moe")):
            model, config = models[rel]
            types = list(config.get_text_config().layer_types)
            lg, la = types.index("linear_attention"), types.index("full_attention")
            step(f"{tag}_gdn", export_layer, h5, ctx, f"{tag}_gdn", rel, model, lg, 70, 0, seed=21)
            step(f"{tag}_gdn_padded", export_layer, h5, ctx, f"{tag}_gdn_padded", rel, model, lg, 20, 4, seed=22)
            step(f"{tag}_attn", export_layer, h5, ctx, f"{tag}_attn", rel, model, la, 70, 0, seed=23, pos=apos)
        if failed:
            h5.attrs["incomplete"] = json.dumps(failed)
        h5.attrs["check_low_precision_tensors"] = ctx.low
        h5.attrs["check_lift_rewrites"] = ctx.casts
        h5.attrs["check_chunked_vs_recurrent_grad_rel"] = max(w1, w2)
    if failed:
        os.replace(tmp, args.out + ".incomplete")
        raise SystemExit(f"export_grad: error: {len(failed)} group(s) failed: {failed}")
    if ctx.low:
        os.remove(tmp)
        raise SystemExit(f"export_grad: error: {ctx.low} float32/float16/bfloat16 tensors came out under the lift")
    if max(w1, w2) > 1e-11:
        os.remove(tmp)
        raise SystemExit(f"export_grad: error: chunked and recurrent autograd gradients differ by {max(w1, w2):.3g}")
    os.replace(tmp, args.out)
    log(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB); lift rewrites {ctx.casts}, "
        f"low-precision tensors {ctx.low}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
