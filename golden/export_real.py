#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Export float64 transformers goldens for the real-scale cases (cases/real/*.json), whose
checkpoints are synthesized with `logitcheck synth` (published Qwen3.5 shapes, vocabulary
248320) and never committed.

    python3 golden/export_real.py --cases cases/real --out golden/real [--device cuda]
                                  [--checkpoint-root DIR] [--case GLOB] [--engine-check DIR]

Needs torch, transformers (5.17), numpy and h5py. The model runs in float64 with every
operation in float64: the float64 lift of golden/export_hf.py (a torch function mode that turns
float32 requests into float64, float64 default dtype, rotary inv_freq rebuilt in float64) is
imported from there and proven the same way on every case (one-shot against prefill + cached
decode, batch rows against the row alone, no low-precision tensor produced).

A real-vocabulary logit row is 248320 float64 values (1.9 MB), so a golden cannot hold every
row. Per case it stores (layout "sparse-v1", golden/real/README.md):
  at every position     logsumexp of the logit row, the top-k ids and values, the RMS of the
                        final hidden state and an 8-value signed-sum sketch of it (float64)
  at sampled positions  the final hidden state itself (float64); its logit row is that vector
                        times the checkpoint's lm_head (checked against transformers' own row
                        at every sampled position, the largest difference is stored)
  once per file         one verbatim float64 logit row (the last prompt position of the first
                        case), so the lm_head expansion is itself checked
plus ids, positions, rope deltas, decode tokens, image grids and the processor's resized image
bytes (pixel_values are (bytes / 255 - mean) / std of them, repeated over the temporal patch).

--engine-check DIR also writes, per checkpoint, a short text prompt's full float64 logits in the
layout `logitcheck infer` writes (DIR/<preset>.h5, DIR/<preset>.ids, DIR/<preset>.feed), for
`logitcheck compare` against the engine.
"""

import argparse
import datetime
import fnmatch
import glob
import hashlib
import json
import math
import os
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export_hf as hf  # noqa: E402  (the lift, the hooks, the tiny exporter's per-case runs)

FORMAT = "logitcheck-golden-real"
FORMAT_VERSION = 1
LAYOUT = "sparse-v1"
TOPK = 8
SKETCH = 8
SKETCH_MULT = 0x9E3779B97F4A7C15
OFF_SIZES = (63, 65, 127, 129, 511, 513)
ONESHOT_TOL = 1e-11
BATCH_TOL = 1e-11
HEAD_TOL = 1e-10
SAMPLE_RULE = ("positions p of the prompt with p % 64 in {0, 63}; for c in 63, 65, 127, 129, 511, 513 the "
               "positions c*k - 1 and c*k for k = 1, 2, 3 and the largest k with c*k < T; the first and last "
               "prompt position; the first and last position of every image (vision_start+1 .. vision_end-1); "
               "every decode step (index T + i)")
SKETCH_RULE = ("hidden_sketch[p, j] = sum_i s_j(i) * h[p, i], s_j(i) = 1 - 2 * (((i * 0x9E3779B97F4A7C15) mod "
               "2^64) >> (63 - j) & 1), j = 0..7, i = 0..H-1; h = the final hidden state (output of the final "
               "RMSNorm, input of lm_head)")


class ExportError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- checkpoint hash


def checkpoint_sha256(ckpt):
    """SHA-256 of the sha256sum listing of the directory's regular files (names not starting
    with '.') in bytewise name order: the definition in harness/synth/synth.h."""
    lines = []
    for name in sorted(os.listdir(ckpt), key=lambda n: n.encode()):
        path = os.path.join(ckpt, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        lines.append(f"{h.hexdigest()}  {name}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


# ---------------------------------------------------------------- positions and sketches


def sample_positions(T, n_decode, image_spans):
    """Sorted indices into 0 .. T + n_decode - 1 (SAMPLE_RULE)."""
    s = {p for p in range(T) if p % 64 in (0, 63)}
    for c in OFF_SIZES:
        ks = [k for k in (1, 2, 3) if c * k < T]
        if T - 1 >= c:
            ks.append((T - 1) // c)
        for k in ks:
            s.update(p for p in (c * k - 1, c * k) if 0 <= p < T)
    s.update((0, T - 1))
    for a, b in image_spans:
        s.update((a, b))
    s.update(range(T, T + n_decode))
    return sorted(s)


def image_spans(ids, image_token):
    spans, start = [], None
    for i, t in enumerate(ids):
        if t == image_token and start is None:
            start = i
        if t != image_token and start is not None:
            spans.append((start, i - 1))
            start = None
    if start is not None:
        spans.append((start, len(ids) - 1))
    return spans


def sketch_signs(H):
    i = np.arange(H, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = i * np.uint64(SKETCH_MULT)
    rows = [1.0 - 2.0 * ((z >> np.uint64(63 - j)) & np.uint64(1)).astype(np.float64) for j in range(SKETCH)]
    return np.stack(rows)  # (SKETCH, H)


def summaries(torch, rows, hidden, signs):
    """rows (P, V), hidden (P, H) float64 on the device -> per-position numpy summaries."""
    top = rows.topk(TOPK, dim=-1)
    return dict(lse=hf.t2np(torch.logsumexp(rows, dim=-1)),
                topk_ids=hf.t2np(top.indices).astype(np.int32), topk_values=hf.t2np(top.values),
                hidden_rms=hf.t2np(hidden.pow(2).mean(dim=-1).sqrt()),
                hidden_sketch=hf.t2np(hidden @ signs.T))


# ---------------------------------------------------------------- the session


class RealSession(hf.Session):
    """hf.Session on a device, with per-case image processors (max_pixels) and the resized
    bytes of every image kept."""

    def __init__(self, torch, transformers, root, ckpt_rel, ckpt_abs, device):
        self.torch, self.root, self.ckpt_rel, self.ckpt, self.device = torch, root, ckpt_rel, ckpt_abs, device
        config = transformers.AutoConfig.from_pretrained(ckpt_abs)
        kwargs = dict(dtype=torch.float64, attn_implementation="eager", device_map=device)
        if "moe" in config.model_type:
            kwargs["experts_implementation"] = "eager"
        cls = {"qwen3_5": "Qwen3_5ForConditionalGeneration",
               "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"}[config.model_type]
        self.model = getattr(transformers, cls).from_pretrained(ckpt_abs, **kwargs).eval()
        self.config = self.model.config
        for name, p in list(self.model.named_parameters()) + list(self.model.named_buffers()):
            if p.is_floating_point() and p.dtype != torch.float64 and not name.endswith("inv_freq"):
                raise ExportError(f"{ckpt_abs}: {name} is {p.dtype} after loading in float64")
        self.transformers = transformers
        with open(os.path.join(ckpt_abs, "preprocessor_config.json"), encoding="utf-8") as f:
            pp = json.load(f)["size"]
        self.min_pixels, self.max_pixels_default = int(pp["shortest_edge"]), int(pp["longest_edge"])
        self.procs = {None: transformers.AutoImageProcessor.from_pretrained(ckpt_abs)}
        self.proc = self.procs[None]
        self.max_pixels = None
        self.image_token = self.config.image_token_id
        self.vision_start = self.config.vision_start_token_id
        self.vision_end = self.config.vision_end_token_id
        self.merge = self.config.vision_config.spatial_merge_size
        self.specials = {self.vision_start, self.vision_end, self.image_token, self.config.video_token_id}
        self.images, self.raw = {}, {}
        self.frozen = False

    def processor(self, max_pixels):
        if max_pixels not in self.procs:
            self.procs[max_pixels] = self.transformers.AutoImageProcessor.from_pretrained(
                self.ckpt, size={"shortest_edge": self.min_pixels, "longest_edge": int(max_pixels)})
        return self.procs[max_pixels]

    def key(self, rel):
        base = os.path.basename(rel)
        return base if self.max_pixels is None else f"{base}@max_pixels={self.max_pixels}"

    def image(self, rel):
        """(pixel values float64, grid, original (h, w), float64-vs-stock difference) of rel under
        the current max_pixels; the processor's resized bytes go to self.raw."""
        key = self.key(rel)
        if key in self.images:
            return self.images[key]
        if self.frozen:
            raise ExportError(f"{key}: image not preprocessed before the float64 lift was switched on")
        from PIL import Image
        torch = self.torch
        proc = self.processor(self.max_pixels)
        with Image.open(os.path.join(self.root, rel)) as im:
            im.load()
            size = (im.height, im.width)
            stock = proc(images=[im], return_tensors="pt")
            raw = proc(images=[im], do_rescale=False, do_normalize=False, return_tensors="pt")
        if raw["pixel_values"].dtype != torch.uint8:
            raise ExportError(f"{rel}: unnormalised patches are {raw['pixel_values'].dtype}, not uint8")
        grid = stock["image_grid_thw"][0].to(torch.int64)
        if not torch.equal(grid, raw["image_grid_thw"][0].to(torch.int64)):
            raise ExportError(f"{rel}: grids differ between the two processor runs")
        x = raw["pixel_values"].to(torch.float64)
        per_channel = x.shape[1] // 3
        mean = torch.tensor(proc.image_mean, dtype=torch.float64).repeat_interleave(per_channel)
        std = torch.tensor(proc.image_std, dtype=torch.float64).repeat_interleave(per_channel)
        pv = (x / 255.0 - mean) / std
        diff = float((pv - stock["pixel_values"].to(torch.float64)).abs().max())
        if diff > hf.PIXEL_F32_TOL:
            raise ExportError(f"{rel}: float64 pixel values differ from the processor's by {diff:.3g}")
        tp = self.config.vision_config.temporal_patch_size
        P = self.config.vision_config.patch_size
        u8 = raw["pixel_values"].reshape(x.shape[0], 3, tp, P, P)
        if not all(torch.equal(u8[:, :, 0], u8[:, :, t]) for t in range(1, tp)):
            raise ExportError(f"{key}: temporal copies of a still image differ")
        self.raw[key] = u8[:, :, 0].reshape(x.shape[0], 3 * P * P).numpy().astype(np.uint8)
        self.images[key] = (pv, grid, size, diff)
        log(f"  image {key}: {size[1]}x{size[0]} -> grid {grid.tolist()} ({int(grid.prod()) // 4} tokens)")
        return self.images[key]

    def forward(self, ids, pos, pv=None, grid=None, mask=None, past=None, use_cache=True):
        torch, d = self.torch, self.device
        ids_t = torch.as_tensor(ids, dtype=torch.int64)
        if ids_t.ndim == 1:
            ids_t = ids_t[None]
        ids_t = ids_t.to(d)
        kw = dict(input_ids=ids_t, position_ids=pos.to(d), use_cache=use_cache)
        if past is not None:
            kw["past_key_values"] = past
        if mask is not None:
            kw["attention_mask"] = torch.as_tensor(mask, dtype=torch.int64).to(d)
        if pv is not None:
            kw.update(pixel_values=pv.to(d), image_grid_thw=grid.to(d),
                      mm_token_type_ids=(ids_t == self.image_token).to(torch.int64))
        return self.model(**kw)

    def rope_index(self, ids, grid, mask=None):
        torch, d = self.torch, self.device
        ids_t = torch.as_tensor(ids, dtype=torch.int64)
        if ids_t.ndim == 1:
            ids_t = ids_t[None]
        ids_t = ids_t.to(d)
        mm = (ids_t == self.image_token).to(torch.int64)
        m = None if mask is None else torch.as_tensor(mask, dtype=torch.int64).to(d)
        pos, delta = self.model.model.get_rope_index(ids_t, mm_token_type_ids=mm,
                                                     image_grid_thw=None if grid is None else grid.to(d),
                                                     attention_mask=m)
        return pos.cpu(), delta.reshape(-1).cpu()


class NormTap:
    """Records the output of the decoder's final RMSNorm (the lm_head's input) per forward."""

    def __init__(self, model):
        self.active, self.out = False, []
        self.handle = model.model.language_model.norm.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.active:
            self.out.append(output)

    def start(self):
        self.active, self.out = True, []

    def stop(self):
        self.active = False
        return self.out

    def remove(self):
        self.handle.remove()


def head_weight(s):
    return s.model.get_output_embeddings().weight  # (V, H), the tied embedding when tied


# ---------------------------------------------------------------- cases


def preload(s, cases):
    """Preprocesses every image of every case before the lift; returns {case name: error} for
    cases whose images the processor refuses (they are reported, the others go on)."""
    errors = {}
    for c in cases:
        s.max_pixels = c.get("image_max_pixels")
        try:
            for prompt in [c.get("prompt", [])] + list(c.get("rows", [])):
                for seg in prompt:
                    if "image" in seg:
                        s.image(seg["image"])
        except Exception as e:
            errors[c["name"]] = f"image preprocessing: {type(e).__name__}: {e}"
            log(f"  {c['name']}: FAILED: {errors[c['name']]}")
    s.max_pixels = None
    s.frozen = True
    return errors


class RouterTies:
    """Per position, the smallest gap over the MoE layers between the k-th and (k+1)-th
    routing probability, taken in the one uncached forward over prompt and decode tokens (the
    one-shot check): where it is tiny a lower-precision engine may pick the other expert, and
    from there on its logits may differ by more than rounding."""

    def __init__(self, torch, model):
        self.torch, self.armed, self.gap = torch, 0, None
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if type(m).__name__.endswith("TopKRouter") and hasattr(m, "top_k")]

    def arm(self, n):
        self.armed, self.gap = n, None

    def _hook(self, module, inputs, output):
        logits = output[0] if isinstance(output, tuple) else output
        rows = logits.reshape(-1, logits.shape[-1])
        if not self.armed or rows.shape[0] != self.armed:
            return
        probs = self.torch.softmax(rows.to(self.torch.float64), dim=-1)
        top = probs.topk(module.top_k + 1, dim=-1).values
        gap = top[:, -2] - top[:, -1]
        self.gap = gap if self.gap is None else self.torch.minimum(self.gap, gap)

    def take(self):
        gap, self.armed, self.gap = self.gap, 0, None
        return gap

    def remove(self):
        for h in self.handles:
            h.remove()


def run_single_case(s, c, tap, signs, ties=None):
    torch = s.torch
    s.max_pixels = c.get("image_max_pixels")
    ids, images = s.expand(c["prompt"])
    n_decode, forced = hf.decode_plan(c)
    tap.start()
    res = hf.run_single(s, ids, images, n_decode, forced)
    taps = tap.stop()
    if ties is not None and ties.handles:
        ties.arm(len(res["input_ids"]) + len(res["tokens"]))
    res["oneshot_diff"] = hf.oneshot_check(s, res)
    gap = ties.take() if ties is not None and ties.handles else None
    if gap is not None:
        res["router_gap"] = hf.t2np(gap)
    T = len(ids)
    hidden = torch.cat([taps[0][0]] + [t[0] for t in taps[1:1 + n_decode]], dim=0)
    rows = res["prefill"] if res["decode"] is None else torch.cat([res["prefill"], res["decode"]], dim=0)
    if hidden.shape[0] != rows.shape[0]:
        raise ExportError(f"{c['name']}: {hidden.shape[0]} hidden rows for {rows.shape[0]} logit rows")
    spans = image_spans(ids, s.image_token)
    res.update(summaries(torch, rows, hidden, signs))
    res["sample"] = sample_positions(T, n_decode, spans)
    idx = torch.as_tensor(res["sample"], device=rows.device)
    hs = hidden[idx]
    res["hidden_sample"] = hf.t2np(hs)
    res["head_diff"] = float((hs @ head_weight(s).T - rows[idx]).abs().max())
    res["last_row"] = hf.t2np(rows[T - 1])
    res["top1_margin"] = hf.top1_margin(rows)
    res["image_keys"] = [s.key(r) for r in images]
    res["n_positions"] = rows.shape[0]
    res["prefill"] = res["decode"] = None  # the full rows stay on the device only while needed
    s.max_pixels = None
    return res


def run_batch_case(s, c, tap, signs):
    """Left-padded batch on the device (pad_to: pad every row to that length), greedy decode,
    each row checked against the same prompt alone."""
    torch = s.torch
    s.max_pixels = c.get("image_max_pixels")
    rows = [s.expand(r) for r in c["rows"]]
    B = len(rows)
    L = max(len(r) for r, _ in rows)
    L = max(L, int(c.get("pad_to", L)))
    pad = int(c["pad_id"])
    ids = torch.full((B, L), pad, dtype=torch.int64)
    mask = torch.zeros((B, L), dtype=torch.int64)
    for b, (r, _) in enumerate(rows):
        ids[b, L - len(r):] = torch.as_tensor(r, dtype=torch.int64)
        mask[b, L - len(r):] = 1
    images = [img for _, imgs in rows for img in imgs]
    pv, grid = s.vision_inputs(images)
    pos, delta = s.rope_index(ids, grid, mask)
    n_decode, forced = hf.decode_plan(c)
    if forced is not None:
        raise ExportError(f"case '{c['name']}': batch decode takes {{\"greedy\": N}} only")
    tap.start()
    out = s.forward(ids, pos, pv, grid, mask=mask)
    past, cur_mask, last = out.past_key_values, mask, out.logits[:, -1]
    valid = mask.sum(dim=1)
    tokens, dec, margins = [], [], []
    for i in range(n_decode):
        picks = [s.greedy(r) for r in last]
        margins += [m for _, m in picks]
        tok = torch.tensor([t for t, _ in picks], dtype=torch.int64)
        cur_mask = torch.cat([cur_mask, torch.ones((B, 1), dtype=torch.int64)], dim=1)
        p = (valid + i + delta).reshape(1, B, 1).expand(3, B, 1).contiguous()
        o = s.forward(tok[:, None], p, mask=cur_mask, past=past)
        past, last = o.past_key_values, o.logits[:, -1]
        tokens.append(tok)
        dec.append(last)
    taps = tap.stop()
    res = dict(input_ids=ids, mask=mask, images=images, pv=pv, grid=grid, pos=pos, delta=delta,
               tokens=torch.stack(tokens, dim=1) if tokens else None,
               margin=min(margins) if margins else math.inf, rows=[])
    worst, head, top1 = 0.0, 0.0, math.inf
    W = head_weight(s)
    for b, (r, imgs) in enumerate(rows):
        n = len(r)
        logit_rows = [out.logits[b, L - n:]] + [d[b][None] for d in dec]
        hid_rows = [taps[0][b, L - n:]] + [t[b] for t in taps[1:1 + n_decode]]
        lr, hr = torch.cat(logit_rows, dim=0), torch.cat(hid_rows, dim=0)
        forced_b = [int(t) for t in res["tokens"][b]] if n_decode else None
        single = hf.run_single(s, r, imgs, n_decode, forced_b)
        srows = single["prefill"] if single["decode"] is None else torch.cat([single["prefill"], single["decode"]])
        worst = max(worst, float((lr - srows).abs().max()))
        row = summaries(torch, lr, hr, signs)
        row["sample"] = sample_positions(n, n_decode, image_spans(r, s.image_token))
        idx = torch.as_tensor(row["sample"], device=lr.device)
        row["hidden_sample"] = hf.t2np(hr[idx])
        head = max(head, float((hr[idx] @ W.T - lr[idx]).abs().max()))
        top1 = min(top1, hf.top1_margin(lr))
        row["length"] = n
        res["rows"].append(row)
    res.update(batch_diff=worst, head_diff=head, top1_margin=top1, image_keys=[s.key(r) for r in images])
    res["n_positions"] = sum(r["length"] + n_decode for r in res["rows"])
    s.max_pixels = None
    return res


# ---------------------------------------------------------------- HDF5


def write_sparse(g, d):
    for k, dt in (("lse", np.float64), ("topk_ids", np.int32), ("topk_values", np.float64),
                  ("hidden_rms", np.float64), ("hidden_sketch", np.float64), ("sample", np.int64),
                  ("hidden_sample", np.float64)):
        hf.write_dataset(g, "sample_positions" if k == "sample" else k, d[k], dt)


def write_case(g, c, res, first):
    g.attrs["kind"] = c["kind"]
    g.attrs["case_json"] = json.dumps(c, sort_keys=True)
    g.attrs["greedy_min_margin"] = res["margin"]
    g.attrs["top1_min_margin"] = res["top1_margin"]
    g.attrs["check_head_max_abs"] = res["head_diff"]
    if "router_margin" in res:
        g.attrs["router_min_margin"] = res["router_margin"]
    if "router_gap" in res:
        hf.write_dataset(g, "router_gap", res["router_gap"], np.float64)
        g["router_gap"].attrs["position"] = np.int64(int(np.argmin(res["router_gap"])))
    if res["image_keys"]:
        g.create_dataset("images", data=res["image_keys"], dtype=h5py.string_dtype())
        hf.write_dataset(g, "image_grid_thw", hf.t2np(res["grid"]), np.int64)
    if c["kind"] == "batch":
        g.attrs["check_batch_vs_single_max_abs"] = res["batch_diff"]
        hf.write_dataset(g, "input_ids", hf.t2np(res["input_ids"]), np.int64)
        hf.write_dataset(g, "attention_mask", hf.t2np(res["mask"]), np.int64)
        hf.write_dataset(g, "position_ids", hf.t2np(res["pos"]), np.int64)
        hf.write_dataset(g, "rope_delta", hf.t2np(res["delta"]), np.int64)
        if res["tokens"] is not None:
            hf.write_dataset(g, "decode_tokens", hf.t2np(res["tokens"]), np.int64)
        for b, row in enumerate(res["rows"]):
            write_sparse(g.create_group(f"rows/{b}"), row)
        return
    g.attrs["check_oneshot_max_abs"] = res["oneshot_diff"]
    hf.write_dataset(g, "input_ids", res["input_ids"], np.int64)
    hf.write_dataset(g, "position_ids", hf.t2np(res["pos"]), np.int64)
    hf.write_dataset(g, "rope_delta", np.int64(res["delta"]))
    if res["tokens"]:
        hf.write_dataset(g, "decode_tokens", res["tokens"], np.int64)
    write_sparse(g, res)
    if first:
        hf.write_dataset(g, "logits_full", res["last_row"], np.float64)
        g["logits_full"].attrs["position"] = np.int64(len(res["input_ids"]) - 1)


def group_bytes(g):
    total = 0

    def visit(_, obj):
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += obj.id.get_storage_size()
    g.visititems(visit)
    return total


# ---------------------------------------------------------------- engine check


def engine_check(s, out_dir, preset, n_prompt=37, n_decode=3):
    """A short text prompt in the layout `logitcheck infer` writes, for `logitcheck compare`."""
    ids = [(i * 7919 + 104729) % 248044 for i in range(n_prompt)]
    res = hf.run_single(s, ids, [], n_decode, None)
    path = os.path.join(out_dir, f"{preset}.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("input_ids", data=np.asarray(ids, dtype=np.int64))
        f.create_dataset("position_ids", data=hf.t2np(res["pos"]).astype(np.int64))
        f.create_dataset("rope_delta", data=np.int64(res["delta"]))
        f.create_dataset("prefill_logits", data=hf.t2np(res["prefill"]))
        f.create_dataset("decode_logits", data=hf.t2np(res["decode"]))
    with open(os.path.join(out_dir, f"{preset}.ids"), "w") as f:
        f.write(",".join(map(str, ids)))
    with open(os.path.join(out_dir, f"{preset}.feed"), "w") as f:
        f.write(",".join(map(str, res["tokens"])))
    last = hf.t2np(res["prefill"][-1])
    log(f"  engine check {preset}: T={n_prompt} N={n_decode}, |logit| max {np.abs(last).max():.2f}, "
        f"rms {np.sqrt((last ** 2).mean()):.2f} at the last prompt position -> {path}")


# ---------------------------------------------------------------- driver


def load_case_files(cases_dir, patterns):
    groups = {}
    for path in sorted(glob.glob(os.path.join(cases_dir, "*.json"))):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for c in doc["cases"]:
            if patterns and not any(fnmatch.fnmatchcase(c["name"], p) for p in patterns):
                continue
            groups.setdefault(c["golden"], []).append(c)
    if not groups:
        raise ExportError(f"{cases_dir}: no case to export")
    return groups


def export_file(torch, transformers, Lift, args, golden_rel, cases, signs_cache):
    ckpt_rel = cases[0]["checkpoint"]
    synth = cases[0]["checkpoint_synth"]
    if any(c["checkpoint"] != ckpt_rel for c in cases):
        raise ExportError(f"{golden_rel}: cases of several checkpoints")
    ckpt = os.path.join(args.checkpoint_root or args.root, ckpt_rel)
    t0 = time.time()
    sha = checkpoint_sha256(ckpt)
    if synth.get("sha256") and sha != synth["sha256"]:
        raise ExportError(f"{ckpt}: checkpoint sha256 {sha}, the cases expect {synth['sha256']} "
                          f"(logitcheck synth --preset {synth['preset']} --seed {synth['seed']})")
    log(f"{ckpt_rel}: sha256 {sha} ({time.time() - t0:.1f} s)")
    t0 = time.time()
    s = RealSession(torch, transformers, args.root, ckpt_rel, ckpt, args.device)
    for m in s.model.modules():  # every rotary buffer where the model is, then rebuilt there
        if isinstance(getattr(m, "inv_freq", None), torch.Tensor):
            m.inv_freq = m.inv_freq.to(args.device)
            if isinstance(getattr(m, "original_inv_freq", None), torch.Tensor):
                m.original_inv_freq = m.original_inv_freq.to(args.device)
    old_dev = torch.get_default_device()
    torch.set_default_device(args.device)
    try:
        inv_worst, inv_count = hf.rebuild_inv_freq(torch, s.model, s.config)
    finally:
        torch.set_default_device(old_dev)
    log(f"  loaded on {args.device} in {time.time() - t0:.1f} s; {inv_count} inv_freq buffers rebuilt "
        f"(float32 ones differed by {inv_worst:.2g} relative)")
    pre_errors = preload(s, cases)
    H = s.config.get_text_config().hidden_size
    signs = torch.as_tensor(sketch_signs(H), dtype=torch.float64, device=args.device)
    hooks, routers, tap = hf.DtypeHooks(torch, s.model), hf.RouterMargins(torch, s.model), NormTap(s.model)
    ties = RouterTies(torch, s.model)
    mode = Lift()
    results, failed = [], list(f"{k}: {v}" for k, v in pre_errors.items())
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad(), mode:
            if args.engine_check:
                os.makedirs(args.engine_check, exist_ok=True)
                engine_check(s, args.engine_check, synth["preset"])
            for c in cases:
                if c["name"] in pre_errors:
                    continue
                t1 = time.time()
                routers.reset()
                try:
                    res = run_batch_case(s, c, tap, signs) if c["kind"] == "batch" else \
                        run_single_case(s, c, tap, signs, ties)
                except Exception as e:  # one case's failure must not lose the others
                    failed.append(f"{c['name']}: {type(e).__name__}: {e}")
                    log(f"  {c['name']}: FAILED: {type(e).__name__}: {e}")
                    s.max_pixels = None
                    torch.cuda.empty_cache() if args.device.startswith("cuda") else None
                    continue
                if routers.handles:
                    res["router_margin"] = routers.reset()
                check = ("batch_vs_single", res["batch_diff"], BATCH_TOL) if c["kind"] == "batch" else \
                    ("oneshot", res["oneshot_diff"], ONESHOT_TOL)
                ok = check[1] < check[2] and res["head_diff"] < HEAD_TOL
                router = f" router {res['router_margin']:.2g}" if "router_margin" in res else ""
                log(f"  {c['name']:<32} P={res['n_positions']:<6} {check[0]} {check[1]:.2e} head {res['head_diff']:.2e} "
                    f"top1 margin {res['top1_margin']:.2g}{router} {'ok' if ok else 'FAILED'} ({time.time() - t1:.1f} s)")
                if not ok:
                    failed.append(f"{c['name']}: {check[0]} {check[1]:.3g} / head {res['head_diff']:.3g} over the limit")
                    continue
                results.append((c, res))
                torch.cuda.empty_cache() if args.device.startswith("cuda") else None
    finally:
        torch.set_default_dtype(torch.float32)
        hooks.remove()
        routers.remove()
        ties.remove()
        tap.remove()
    low = sum(mode.low_outputs.values()) + sum(hooks.bad.values())
    log(f"  float64 lift rewrote {sum(mode.casts.values())} float32 requests; low-precision tensors: {low}")
    if low:
        failed.append(f"low-precision tensors: functions {dict(mode.low_outputs)}, modules {dict(hooks.bad)}")
    if not results:
        return failed
    out_path = os.path.join(args.out, os.path.basename(golden_rel))
    tmp = f"{out_path}.tmp-{os.getpid()}"
    proc = s.procs[None]
    with h5py.File(tmp, "w") as f:
        attrs = {
            "format": FORMAT, "format_version": np.int64(FORMAT_VERSION), "layout": LAYOUT,
            "generator": hf.versions(torch, transformers), "dtype": "float64", "device": args.device,
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "checkpoint": ckpt_rel, "checkpoint_sha256": sha, "checkpoint_synth": json.dumps(synth, sort_keys=True),
            "model_class": type(s.model).__name__, "attn_implementation": "eager",
            "image_processor": type(proc).__name__,
            "image_processor_settings": json.dumps(hf.processor_settings(proc), sort_keys=True, default=str),
            "greedy": "argmax over all ids but vision_start, vision_end, image and video",
            "float64_lift": "torch function mode: Tensor.float/to/type and dtype= float32 requests become "
                            "float64; default dtype float64; rotary inv_freq rebuilt in float64",
            "topk": np.int64(TOPK), "sample_rule": SAMPLE_RULE, "sketch_rule": SKETCH_RULE,
            "hidden_state": "output of the decoder's final RMSNorm (the lm_head's input)",
            "check_low_precision_tensors": np.int64(low),
            "check_lift_rewrites": np.int64(sum(mode.casts.values())),
            "check_inv_freq_float32_rel": inv_worst,
        }
        for k, v in attrs.items():
            f.attrs[k] = v
        gi = f.create_group("images")
        for key in sorted({k for _, r in results for k in r["image_keys"]}):
            pv, grid, size, diff = s.images[key]
            g = gi.create_group(key)
            hf.write_dataset(g, "pixel_bytes", s.raw[key], np.uint8)
            hf.write_dataset(g, "image_grid_thw", hf.t2np(grid), np.int64)
            hf.write_dataset(g, "image_size", np.asarray(size), np.int64)
            g.attrs["path"] = next(r for c, _ in results for prompt in [c.get("prompt", [])] + list(c.get("rows", []))
                                   for r in [seg.get("image") for seg in prompt] if r and os.path.basename(r) == key.split("@")[0])
            g.attrs["max_pixels"] = np.int64(s.max_pixels_default if "@" not in key else int(key.split("=")[1]))
            g.attrs["min_pixels"] = np.int64(s.min_pixels)
            g.attrs["check_pixel_values_vs_stock_max_abs"] = diff
        gc = f.create_group("cases")
        for i, (c, res) in enumerate(results):
            write_case(gc.create_group(c["name"]), c, res, first=(i == 0))
        sizes = {c["name"]: group_bytes(gc[c["name"]]) for c, _ in results}
        img_bytes = group_bytes(gi)
    os.replace(tmp, out_path)
    for name, b in sizes.items():
        log(f"  {name:<32} {b / 1e6:7.3f} MB")
    log(f"  images {img_bytes / 1e6:.3f} MB; wrote {out_path} ({os.path.getsize(out_path) / 1e6:.2f} MB, "
        f"{len(results)} cases)")
    del s
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return failed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="cases/real")
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", default=os.path.dirname(HERE), help="repository root (image paths are relative to it)")
    ap.add_argument("--checkpoint-root", help="where the cases' checkpoint paths resolve (default: --root)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--case", action="append", default=[], help="only cases matching this glob (repeatable)")
    ap.add_argument("--engine-check", metavar="DIR", help="also write short-prompt logits for logitcheck compare")
    args = ap.parse_args(argv)
    import torch
    import transformers
    torch.set_grad_enabled(False)
    Lift = hf.make_lift(torch)
    hf.lift_selftest(torch, Lift)
    log(hf.versions(torch, transformers) + f"; device {args.device}")
    os.makedirs(args.out, exist_ok=True)
    failed = []
    for golden_rel, cases in load_case_files(args.cases, args.case).items():
        try:
            failed += export_file(torch, transformers, Lift, args, golden_rel, cases, None)
        except Exception as e:
            failed.append(f"{golden_rel}: {type(e).__name__}: {e}")
            log(f"{golden_rel}: FAILED: {type(e).__name__}: {e}")
    for m in failed:
        log(f"failed: {m}")
    log("done" if not failed else f"{len(failed)} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ExportError as e:
        print(f"export_real: error: {e}", file=sys.stderr)
        sys.exit(1)
