#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Export float64 Hugging Face transformers reference outputs ("goldens") for the case catalog.

For every case of cases/*.json that names a `golden` file, this runs the case's checkpoint in
transformers on the CPU in float64, with every operation in float64 (see "Float64 lift"), and
writes one HDF5 file per golden name (golden/tiny-dense.h5, ...) holding, per case, the inputs
(expanded token ids, pixel values, grids, positions) and the outputs (prefill logits,
teacher-forced decode logits, per-layer hidden states at the last prompt position, merged
vision embeddings). golden/README.md documents the layout.

    python3 golden/export_hf.py --cases cases --out golden [--checkpoint golden/tiny-dense]
    python3 golden/export_hf.py --cases cases --selftest [--check-fixture FILE]

Needs Python 3.12, torch, transformers, torchvision, Pillow, numpy and h5py.

Float64 lift. Stock transformers computes some operations of a float64 model in float32 (the
Gated DeltaNet cores, RMSNorm, the gated RMSNorm, rotary angles and the inv_freq buffers built at
init, the MoE router softmax, eager attention's softmax, the vision rotary and the position-table
interpolation weights). While exporting, a torch function mode rewrites every request for
float32 into float64 (Tensor.float(), Tensor.to/type(float32), dtype=float32 arguments such as
softmax(dtype=...)), the default dtype is float64, and every rotary inv_freq buffer is rebuilt
in float64 from the configuration. The lift is then proven on every exported case, and the
numbers are stored in the file:
  (a) a one-shot forward of prompt + decode tokens equals prefill + cached decode (< 1e-11),
  (b) every batch row equals the same prompt run alone (< 1e-11),
  (c) no float32 (or lower) tensor is produced by any torch function or module during a forward.
--selftest runs the same checks without writing files and exits non-zero on any failure;
--check-fixture FILE also recomputes an independent float64 reference file and compares;
--no-lift runs stock transformers through the same checks to show that they fail without the lift.
"""

import argparse
import collections
import datetime
import fnmatch
import glob
import hashlib
import importlib.util
import json
import math
import os
import platform
import sys
import time

import h5py
import numpy as np

FORMAT = "logitcheck-golden"
FORMAT_VERSION = 1
KINDS_NEEDING_GOLDEN = ("golden", "multi_image", "batch")
ONESHOT_TOL = 1e-11      # (a) one-shot vs prefill + cached decode
BATCH_TOL = 1e-11        # (b) batch row vs the same prompt alone
FIXTURE_TOL = 1e-11      # --check-fixture: recomputed logits vs the fixture's
PIXEL_F32_TOL = 1e-6     # float64 pixel values vs the stock processor's float32 ones
FRAGILE_MARGIN = 1e-4    # top-1 gaps below this can flip in a float32 engine: flagged


class ExportError(Exception):
    pass


FAILURES = []  # with --no-lift, failed checks are collected here instead of stopping the run


def log(msg):
    print(msg, flush=True)


def check_failed(msg, collect):
    if not collect:
        raise ExportError(msg)
    log(f"  check failed: {msg}")
    FAILURES.append(msg)


# ---------------------------------------------------------------- case files


def load_cases(cases_dir):
    """All cases of cases_dir/*.json in sorted filename order (the C loader's order)."""
    files = sorted(glob.glob(os.path.join(cases_dir, "*.json")))
    if not files:
        raise ExportError(f"{cases_dir}: no case files (*.json)")
    cases, seen = [], {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        items = doc["cases"] if isinstance(doc, dict) and "cases" in doc else [doc]
        for c in items:
            for key in ("name", "kind", "checkpoint"):
                if key not in c:
                    raise ExportError(f"{path}: a case has no '{key}'")
            if c["name"] in seen:
                raise ExportError(f"{path}: case '{c['name']}' already defined in {seen[c['name']]}")
            seen[c["name"]] = path
            if c["kind"] in KINDS_NEEDING_GOLDEN and "golden" not in c:
                raise ExportError(f"{path}: case '{c['name']}': kind {c['kind']} needs 'golden'")
            cases.append(c)
    return cases


def has_video(case):
    """Whether a prompt of the case holds a video segment (exported by golden/export_video.py)."""
    prompts = [case.get("prompt", []), case.get("other_prompt", [])] + list(case.get("rows", []))
    return any("video" in seg for p in prompts for seg in p)


def norm_rel(path):
    return os.path.normpath(path).replace(os.sep, "/")


# ---------------------------------------------------------------- float64 lift


def make_lift(torch):
    """A torch function mode that turns every float32 request into float64 and counts, per
    function, the low-precision tensors that still come out (proof (c))."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_flatten

    f32, f64 = torch.float32, torch.float64
    low = (torch.float32, torch.float16, torch.bfloat16)

    def lift(v):
        if v is f32:
            return f64
        if isinstance(v, str) and v == "torch.FloatTensor":
            return f64
        return v

    class Float64Lift(TorchFunctionMode):
        rewrite = True  # False: only count (stock transformers, for showing that the checks bite)

        def __init__(self):
            super().__init__()
            self.casts = collections.Counter()
            self.low_outputs = collections.Counter()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            name = getattr(func, "__qualname__", getattr(func, "__name__", str(func)))
            if not self.rewrite:
                pass
            elif func is torch.Tensor.float:
                func = torch.Tensor.double
                self.casts[name] += 1
            elif func in (torch.Tensor.to, torch.Tensor.type):
                new_args = tuple(lift(a) for a in args)
                if any(a is not b for a, b in zip(new_args, args)):
                    self.casts[name] += 1
                args = new_args
            if self.rewrite and "dtype" in kwargs and lift(kwargs["dtype"]) is not kwargs["dtype"]:
                kwargs["dtype"] = f64
                self.casts[name + "(dtype=)"] += 1
            out = func(*args, **kwargs)
            leaves, _ = tree_flatten(out)
            for t in leaves:
                if isinstance(t, torch.Tensor) and t.dtype in low:
                    self.low_outputs[name] += 1
            return out

    return Float64Lift


def rebuild_inv_freq(torch, model, config):
    """Recomputes every rotary inv_freq buffer in float64 from the configuration. Returns the
    largest relative difference to the float32 buffers built at init (a sanity check that the
    formula is the same)."""
    text = config.get_text_config()
    vision = getattr(config, "vision_config", None)
    worst, count = 0.0, 0
    for name, mod in model.named_modules():
        if not hasattr(mod, "inv_freq") or not isinstance(mod.inv_freq, torch.Tensor):
            continue
        cls = type(mod).__name__
        if "Vision" in cls:
            head_dim = vision.hidden_size // vision.num_heads
            rp = getattr(vision, "rope_parameters", None) or {}
            theta = float(rp.get("rope_theta", getattr(vision, "rope_theta", 10000.0)))
            dim = head_dim // 2
        else:
            rp = getattr(text, "rope_parameters", None) or {}
            if rp.get("rope_type", "default") != "default":
                raise ExportError(f"{name}: rope_type {rp.get('rope_type')} is not supported")
            theta = float(rp.get("rope_theta", getattr(text, "rope_theta", 10000.0)))
            prf = float(rp.get("partial_rotary_factor", getattr(text, "partial_rotary_factor", 1.0)))
            head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
            dim = int(head_dim * prf)
        exponent = torch.arange(0, dim, 2, dtype=torch.float64) / dim
        inv = 1.0 / (theta ** exponent)
        old = mod.inv_freq.detach().to(torch.float64)
        if old.shape != inv.shape:
            raise ExportError(f"{name}: inv_freq has shape {tuple(old.shape)}, rebuilt {tuple(inv.shape)}")
        worst = max(worst, float(((old - inv).abs() / inv).max()))
        mod.inv_freq = inv
        if hasattr(mod, "original_inv_freq"):
            mod.original_inv_freq = inv.clone()
        count += 1
    if count == 0:
        raise ExportError("no rotary inv_freq buffer found in the model")
    if worst > 1e-6:
        raise ExportError(f"rebuilt inv_freq differs from the model's by {worst:.3g} (relative)")
    return worst, count


class DtypeHooks:
    """Forward hooks on every module: counts floating outputs that are not float64."""

    def __init__(self, torch, model):
        self.torch = torch
        self.bad = collections.Counter()
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()]

    def _hook(self, module, inputs, output):
        from torch.utils._pytree import tree_flatten
        values = output.values() if isinstance(output, dict) else [output]
        for v in values:
            leaves, _ = tree_flatten(v)
            for t in leaves:
                if isinstance(t, self.torch.Tensor) and t.is_floating_point() and t.dtype != self.torch.float64:
                    self.bad[type(module).__name__] += 1

    def remove(self):
        for h in self.handles:
            h.remove()


class RouterMargins:
    """MoE routers: the smallest gap between the k-th and (k+1)-th routing probability seen
    since the last reset. A tiny gap means a lower-precision engine may route differently."""

    def __init__(self, torch, model):
        self.torch, self.min = torch, math.inf
        self.handles = []
        for m in model.modules():
            if type(m).__name__.endswith("TopKRouter") and hasattr(m, "top_k"):
                self.handles.append(m.register_forward_hook(self._hook))

    def _hook(self, module, inputs, output):
        logits = output[0] if isinstance(output, tuple) else output
        probs = self.torch.softmax(logits.to(self.torch.float64), dim=-1)
        top = probs.topk(module.top_k + 1, dim=-1).values
        self.min = min(self.min, float((top[..., -2] - top[..., -1]).min()))

    def reset(self):
        value, self.min = self.min, math.inf
        return value

    def remove(self):
        for h in self.handles:
            h.remove()


def top1_margin(*logits):
    """Smallest gap between the two largest logits over every row (NaN rows skipped)."""
    worst = math.inf
    for t in logits:
        if t is None:
            continue
        rows = t.reshape(-1, t.shape[-1])
        rows = rows[~rows.isnan().any(dim=-1)]
        if rows.shape[0]:
            two = rows.topk(2, dim=-1).values
            worst = min(worst, float((two[:, 0] - two[:, 1]).min()))
    return worst


class Capture:
    """Records, during one forward, the decoder's input embeddings, each decoder layer's output
    and the merged vision embeddings."""

    def __init__(self, model):
        self.active = False
        inner = model.model
        lm = inner.language_model
        self.embeds, self.layers, self.vision = None, [], []
        self.handles = [lm.register_forward_pre_hook(self._pre, with_kwargs=True)]
        self.handles += [layer.register_forward_hook(self._layer) for layer in lm.layers]
        if getattr(inner, "visual", None) is not None:
            self.handles.append(inner.visual.register_forward_hook(self._visual))

    def start(self):
        self.active, self.embeds, self.layers, self.vision = True, None, [], []

    def stop(self):
        self.active = False

    def _pre(self, module, args, kwargs):
        if self.active:
            self.embeds = kwargs.get("inputs_embeds")

    def _layer(self, module, inputs, output):
        if self.active:
            self.layers.append(output[0] if isinstance(output, tuple) else output)

    def _visual(self, module, inputs, output):
        if self.active:
            pooled = getattr(output, "pooler_output", None)
            self.vision.append(pooled if pooled is not None else output[1])

    def remove(self):
        for h in self.handles:
            h.remove()


# ---------------------------------------------------------------- the checkpoint


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_hash(ckpt):
    single = os.path.join(ckpt, "model.safetensors")
    if os.path.exists(single):
        return sha256_of(single)
    shards = sorted(glob.glob(os.path.join(ckpt, "model-*.safetensors")))
    if not shards:
        raise ExportError(f"{ckpt}: no model.safetensors")
    h = hashlib.sha256()
    for s in shards:
        h.update(f"{os.path.basename(s)}:{sha256_of(s)}\n".encode())
    return h.hexdigest()


def load_model(torch, transformers, ckpt):
    config = transformers.AutoConfig.from_pretrained(ckpt)
    kwargs = dict(dtype=torch.float64, attn_implementation="eager")
    if "moe" in config.model_type:
        kwargs["experts_implementation"] = "eager"
    try:
        model = transformers.AutoModelForImageTextToText.from_pretrained(ckpt, **kwargs)
    except (ValueError, KeyError) as e:
        cls = {"qwen3_5": "Qwen3_5ForConditionalGeneration",
               "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"}.get(config.model_type)
        if cls is None:
            raise ExportError(f"{ckpt}: cannot load model_type {config.model_type}: {e}")
        model = getattr(transformers, cls).from_pretrained(ckpt, **kwargs)
    model.eval()
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if p.is_floating_point() and p.dtype != torch.float64 and not name.endswith("inv_freq"):
            raise ExportError(f"{ckpt}: {name} is {p.dtype} after loading in float64")
    return model, config


def make_image_processor(transformers, ckpt, config):
    """The checkpoint's own processor when it ships a preprocessor_config.json, else the
    Qwen2-VL-family processor (what Qwen3.5 checkpoints use) with the vision config's patch,
    temporal patch and merge sizes, mean/std 0.5 and the class's default resize settings."""
    if os.path.exists(os.path.join(ckpt, "preprocessor_config.json")):
        return transformers.AutoImageProcessor.from_pretrained(ckpt)
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    vc = config.vision_config
    return Qwen2VLImageProcessor(patch_size=vc.patch_size, temporal_patch_size=vc.temporal_patch_size,
                                 merge_size=vc.spatial_merge_size, image_mean=[0.5, 0.5, 0.5],
                                 image_std=[0.5, 0.5, 0.5])


def processor_settings(proc):
    d = proc.to_dict() if hasattr(proc, "to_dict") else {}
    keep = ("size", "min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size",
            "image_mean", "image_std", "resample", "do_resize", "do_rescale", "rescale_factor",
            "do_normalize", "do_convert_rgb")
    return {k: d[k] for k in keep if k in d}


# ---------------------------------------------------------------- inputs


class Session:
    """One checkpoint: model, processor, token ids, and the per-case computations."""

    def __init__(self, torch, transformers, root, ckpt_rel):
        self.torch, self.root, self.ckpt_rel = torch, root, ckpt_rel
        self.ckpt = os.path.join(root, ckpt_rel)
        self.model, self.config = load_model(torch, transformers, self.ckpt)
        self.proc = make_image_processor(transformers, self.ckpt, self.config)
        self.image_token = self.config.image_token_id
        self.vision_start = self.config.vision_start_token_id
        self.vision_end = self.config.vision_end_token_id
        self.merge = self.config.vision_config.spatial_merge_size
        self.specials = {self.vision_start, self.vision_end, self.image_token, self.config.video_token_id}
        self.images = {}
        self.frozen = False

    def image(self, rel):
        """(pixel values float64 (patches, C*Tp*P*P), grid (3,), original (h, w), stock diff)."""
        if rel in self.images:
            return self.images[rel]
        if self.frozen:
            raise ExportError(f"{rel}: image not preprocessed before the float64 lift was switched on")
        from PIL import Image
        torch = self.torch
        with Image.open(os.path.join(self.root, rel)) as im:
            im.load()
            size = (im.height, im.width)
            stock = self.proc(images=[im], return_tensors="pt")
            raw = self.proc(images=[im], do_rescale=False, do_normalize=False, return_tensors="pt")
        if raw["pixel_values"].dtype != torch.uint8:
            raise ExportError(f"{rel}: unnormalised patches are {raw['pixel_values'].dtype}, not uint8")
        grid = stock["image_grid_thw"][0].to(torch.int64)
        if not torch.equal(grid, raw["image_grid_thw"][0].to(torch.int64)):
            raise ExportError(f"{rel}: grids differ between the two processor runs")
        # float64 rescale + normalise of the processor's own resized, patchified bytes
        x = raw["pixel_values"].to(torch.float64)
        per_channel = x.shape[1] // 3
        mean = torch.tensor(self.proc.image_mean, dtype=torch.float64).repeat_interleave(per_channel)
        std = torch.tensor(self.proc.image_std, dtype=torch.float64).repeat_interleave(per_channel)
        pv = (x / 255.0 - mean) / std
        diff = float((pv - stock["pixel_values"].to(torch.float64)).abs().max())
        if diff > PIXEL_F32_TOL:
            raise ExportError(f"{rel}: float64 pixel values differ from the processor's by {diff:.3g}")
        self.images[rel] = (pv, grid, size, diff)
        return self.images[rel]

    def preload(self, cases, extra=()):
        """Preprocesses every image of the cases with the stock processor, before the float64
        lift and the float64 default dtype are switched on (they would change its arithmetic)."""
        for c in cases:
            for prompt in [c.get("prompt", []), c.get("other_prompt", [])] + list(c.get("rows", [])):
                for seg in prompt:
                    if "image" in seg:
                        self.image(seg["image"])
        for rel in extra:
            self.image(rel)
        self.frozen = True

    def greedy(self, row):
        """Greedy choice over ordinary tokens (the vision special ids are never chosen, so a
        decode token is never mistaken for an image placeholder) and its margin over the
        runner-up."""
        masked = row.clone()
        masked[sorted(self.specials)] = -math.inf
        two = masked.topk(2)
        return int(two.indices[0]), float(two.values[0] - two.values[1])

    def expand(self, prompt):
        """Prompt segments -> ids (list), images (list of rel paths)."""
        ids, images = [], []
        for seg in prompt:
            if "ids" in seg:
                ids.extend(int(t) for t in seg["ids"])
            else:
                pv, grid, _, _ = self.image(seg["image"])
                n = int(grid.prod()) // (self.merge * self.merge)
                ids += [self.vision_start] + [self.image_token] * n + [self.vision_end]
                images.append(seg["image"])
        return ids, images

    def vision_inputs(self, images):
        torch = self.torch
        if not images:
            return None, None
        pv = torch.cat([self.image(r)[0] for r in images], dim=0)
        grid = torch.stack([self.image(r)[1] for r in images], dim=0)
        return pv, grid

    def forward(self, ids, pos, pv=None, grid=None, mask=None, past=None, use_cache=True):
        torch = self.torch
        ids_t = torch.as_tensor(ids, dtype=torch.int64)
        if ids_t.ndim == 1:
            ids_t = ids_t[None]
        kw = dict(input_ids=ids_t, position_ids=pos, use_cache=use_cache)
        if past is not None:
            kw["past_key_values"] = past
        if mask is not None:
            kw["attention_mask"] = torch.as_tensor(mask, dtype=torch.int64)
        if pv is not None:
            kw.update(pixel_values=pv, image_grid_thw=grid,
                      mm_token_type_ids=(ids_t == self.image_token).to(torch.int64))
        return self.model(**kw)

    def rope_index(self, ids, grid, mask=None):
        torch = self.torch
        ids_t = torch.as_tensor(ids, dtype=torch.int64)
        if ids_t.ndim == 1:
            ids_t = ids_t[None]
        mm = (ids_t == self.image_token).to(torch.int64)
        m = None if mask is None else torch.as_tensor(mask, dtype=torch.int64)
        pos, delta = self.model.model.get_rope_index(ids_t, mm_token_type_ids=mm, image_grid_thw=grid,
                                                     attention_mask=m)
        return pos, delta.reshape(-1)


# ---------------------------------------------------------------- one sequence


def decode_plan(case):
    d = case.get("decode")
    if not d:
        return 0, None
    if "greedy" in d:
        return int(d["greedy"]), None
    return len(d["ids"]), [int(t) for t in d["ids"]]


def run_single(s, prompt_ids, images, n_decode, forced, capture=None):
    """Prefill + teacher-forced decode of one sequence. Returns a dict of tensors."""
    torch = s.torch
    pv, grid = s.vision_inputs(images)
    pos, delta = s.rope_index(prompt_ids, grid)
    T = len(prompt_ids)
    if capture:
        capture.start()
    out = s.forward(prompt_ids, pos, pv, grid)
    if capture:
        capture.stop()
    prefill = out.logits[0]
    past = out.past_key_values
    tokens, rows, margins = [], [], []
    if forced is not None and images and s.image_token in forced:
        raise ExportError("decode.ids holds the image placeholder id in an image prompt")
    nxt = None
    if forced is None and n_decode:
        nxt, m = s.greedy(prefill[-1])
        margins.append(m)
    for i in range(n_decode):
        tok = forced[i] if forced is not None else nxt
        p = torch.full((3, 1, 1), T + i + int(delta[0]), dtype=torch.int64)
        o = s.forward([tok], p, past=past)
        past = o.past_key_values
        tokens.append(tok)
        rows.append(o.logits[0, -1])
        if forced is None and i + 1 < n_decode:
            nxt, m = s.greedy(o.logits[0, -1])
            margins.append(m)
    res = dict(input_ids=prompt_ids, images=images, pv=pv, grid=grid, pos=pos[:, 0], delta=int(delta[0]),
               prefill=prefill, tokens=tokens,
               decode=torch.stack(rows) if rows else None, margin=min(margins) if margins else math.inf)
    if capture:
        last = [capture.embeds[0, -1]] + [h[0, -1] for h in capture.layers]
        res["hidden_last"] = torch.stack(last)
        res["vision_embeds"] = torch.cat(capture.vision, dim=0) if capture.vision else None
        if images and (res["vision_embeds"] is None or
                       res["vision_embeds"].shape[0] != sum(1 for t in prompt_ids if t == s.image_token)):
            raise ExportError("captured vision embeddings do not match the placeholder count")
    return res


def oneshot_check(s, res):
    """(a): one uncached forward over prompt + decode tokens against prefill + cached decode."""
    torch = s.torch
    ids = list(res["input_ids"]) + list(res["tokens"])
    T, N = len(res["input_ids"]), len(res["tokens"])
    dec_pos = (torch.arange(N, dtype=torch.int64) + T + res["delta"]).expand(3, N)
    pos = torch.cat([res["pos"], dec_pos], dim=1)[:, None, :]
    out = s.forward(ids, pos, res["pv"], res["grid"], use_cache=False)
    full = out.logits[0]
    diff = float((full[:T] - res["prefill"]).abs().max())
    if N:
        diff = max(diff, float((full[T:] - res["decode"]).abs().max()))
    return diff


# ---------------------------------------------------------------- batch


def run_batch(s, case):
    torch = s.torch
    rows = [s.expand(r) for r in case["rows"]]
    B, L = len(rows), max(len(ids) for ids, _ in rows)
    pad = int(case["pad_id"])
    ids = torch.full((B, L), pad, dtype=torch.int64)
    mask = torch.zeros((B, L), dtype=torch.int64)
    for b, (r, _) in enumerate(rows):
        ids[b, L - len(r):] = torch.as_tensor(r, dtype=torch.int64)
        mask[b, L - len(r):] = 1
    images = [img for _, imgs in rows for img in imgs]
    pv, grid = s.vision_inputs(images)
    pos, delta = s.rope_index(ids, grid, mask)
    out = s.forward(ids, pos, pv, grid, mask=mask)
    logits = out.logits.clone()
    logits[mask == 0] = float("nan")
    n_decode, forced = decode_plan(case)
    if forced is not None:
        raise ExportError(f"case '{case['name']}': batch decode takes {{\"greedy\": N}} only")
    past, cur_mask = out.past_key_values, mask
    last = out.logits[:, -1]
    tokens, dec, margins = [], [], []
    valid = mask.sum(dim=1)
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
    res = dict(input_ids=ids, mask=mask, images=images, pv=pv, grid=grid, pos=pos, delta=delta,
               logits=logits, tokens=torch.stack(tokens, dim=1) if tokens else None,
               decode=torch.stack(dec, dim=1) if dec else None, margin=min(margins) if margins else math.inf)
    # (b): each row against the same prompt alone, with the same decode tokens
    worst = 0.0
    for b, (r, imgs) in enumerate(rows):
        forced_b = [int(t) for t in res["tokens"][b]] if n_decode else None
        single = run_single(s, r, imgs, n_decode, forced_b)
        worst = max(worst, float((logits[b, L - len(r):] - single["prefill"]).abs().max()))
        if n_decode:
            worst = max(worst, float((res["decode"][b] - single["decode"]).abs().max()))
    res["batch_diff"] = worst
    return res


# ---------------------------------------------------------------- HDF5


def write_dataset(g, name, data, dtype=None):
    arr = np.asarray(data, dtype=dtype)
    if arr.ndim == 0 or arr.size == 0:
        g.create_dataset(name, data=arr)
    else:
        g.create_dataset(name, data=arr, chunks=True, compression="gzip", compression_opts=4, shuffle=True)


def t2np(t):
    return t.detach().cpu().numpy()


def write_single(g, res):
    write_dataset(g, "input_ids", res["input_ids"], np.int64)
    if res["images"]:
        g.create_dataset("images", data=res["images"], dtype=h5py.string_dtype())
        write_dataset(g, "pixel_values", t2np(res["pv"]), np.float64)
        write_dataset(g, "image_grid_thw", t2np(res["grid"]), np.int64)
        write_dataset(g, "image_sizes", res["image_sizes"], np.int64)
        write_dataset(g, "vision_embeds", t2np(res["vision_embeds"]), np.float64)
    write_dataset(g, "position_ids", t2np(res["pos"]), np.int64)
    write_dataset(g, "rope_delta", np.int64(res["delta"]))
    write_dataset(g, "prefill_logits", t2np(res["prefill"]), np.float64)
    if res["tokens"]:
        write_dataset(g, "decode_tokens", res["tokens"], np.int64)
        write_dataset(g, "decode_logits", t2np(res["decode"]), np.float64)
    write_dataset(g, "hidden_last", t2np(res["hidden_last"]), np.float64)


def write_batch(g, res):
    write_dataset(g, "input_ids", t2np(res["input_ids"]), np.int64)
    write_dataset(g, "attention_mask", t2np(res["mask"]), np.int64)
    if res["images"]:
        g.create_dataset("images", data=res["images"], dtype=h5py.string_dtype())
        write_dataset(g, "pixel_values", t2np(res["pv"]), np.float64)
        write_dataset(g, "image_grid_thw", t2np(res["grid"]), np.int64)
        write_dataset(g, "image_sizes", res["image_sizes"], np.int64)
    write_dataset(g, "position_ids", t2np(res["pos"]), np.int64)
    write_dataset(g, "rope_delta", t2np(res["delta"]), np.int64)
    write_dataset(g, "logits", t2np(res["logits"]), np.float64)
    if res["tokens"] is not None:
        write_dataset(g, "decode_tokens", t2np(res["tokens"]), np.int64)
        write_dataset(g, "decode_logits", t2np(res["decode"]), np.float64)


# ---------------------------------------------------------------- fixture check


FIXTURE_IMAGE_CASES = ("image_decode", "multi_image")


def fixture_images(s, path, case=None):
    """Image paths (relative to the root) of the fixture's image cases (or of one of them) for
    this checkpoint; cases whose images are not all present are left out."""
    family = "moe" if "moe" in s.config.model_type else "dense"
    rels_all = []
    with h5py.File(path, "r") as f:
        for name in FIXTURE_IMAGE_CASES if case is None else (case,):
            key = f"{family}/{name}/images"
            if key not in f:
                continue
            names = [n.decode() if isinstance(n, bytes) else n for n in f[key][()]]
            rels = [norm_rel(os.path.join(s.ckpt_rel, n)) for n in names]
            if all(os.path.exists(os.path.join(s.root, r)) for r in rels):
                rels_all += rels
    return rels_all


def check_fixture(s, path):
    """Recomputes the fixture's text_decode logits for this checkpoint, and those of its image
    cases whose pixel values this processor reproduces (same grids); returns {name: value}."""
    torch = s.torch
    family = "moe" if "moe" in s.config.model_type else "dense"
    found = {}
    with h5py.File(path, "r") as f:
        if family not in f:
            raise ExportError(f"{path}: no group '{family}'")
        g = f[family]
        t = g["text_decode"]
        ids = [int(x) for x in t["input_ids"][()]]
        toks = [int(x) for x in t["decode_tokens"][()]]
        res = run_single(s, ids, [], len(toks), toks)
        found["text_decode.prefill"] = float(np.abs(t2np(res["prefill"]) - t["prefill_logits"][()]).max())
        found["text_decode.decode"] = float(np.abs(t2np(res["decode"]) - t["decode_logits"][()]).max())
        for name in FIXTURE_IMAGE_CASES:
            rels = fixture_images(s, path, name)
            if name not in g or not rels:
                continue
            t = g[name]
            pv, grid = s.vision_inputs(rels)
            ids = [int(x) for x in t["input_ids"][()]]
            if int(grid.prod(dim=-1).sum()) // s.merge ** 2 != ids.count(s.image_token):
                log(f"  fixture {name}: skipped (this processor's grids {grid.tolist()} give another "
                    f"placeholder count)")
                continue
            if "pixel_values" in t:
                ref_pv = torch.as_tensor(t["pixel_values"][()], dtype=torch.float64)
                found[f"{name}.pixel_values"] = (float((pv - ref_pv).abs().max()) if pv.shape == ref_pv.shape
                                                 else math.inf)
            toks = [int(x) for x in t["decode_tokens"][()]]
            res = run_single(s, ids, rels, len(toks), toks)
            found[f"{name}.prefill"] = float(np.abs(t2np(res["prefill"]) - t["prefill_logits"][()]).max())
            found[f"{name}.decode"] = float(np.abs(t2np(res["decode"]) - t["decode_logits"][()]).max())
            ref_pos = t["position_ids"][()].reshape(3, -1)
            found[f"{name}.positions_mismatch"] = float((t2np(res["pos"]) != ref_pos).sum())
    return found


# ---------------------------------------------------------------- driver


def versions(torch, transformers):
    return (f"transformers {transformers.__version__}, torch {torch.__version__}, "
            f"python {platform.python_version()}, numpy {np.__version__}, h5py {h5py.__version__}")


def lift_selftest(torch, Lift):
    """The lift itself: float32 requests come out float64, and a float32 tensor is counted."""
    mode = Lift()
    with mode:
        a = torch.ones(3, dtype=torch.float32)
        b = torch.ones(3, dtype=torch.float64)
        checks = {
            "dtype=float32": a.dtype,
            "Tensor.float()": b.float().dtype,
            "Tensor.to(float32)": b.to(torch.float32).dtype,
            "int.to(float32)": torch.arange(3).to(torch.float32).dtype,
            "softmax(dtype=float32)": torch.nn.functional.softmax(b, dim=-1, dtype=torch.float32).dtype,
        }
        b.half()  # a half-precision request is not lifted: its output must be counted
    bad = [k for k, v in checks.items() if v != torch.float64]
    if bad:
        raise ExportError(f"float64 lift selftest: still float32 after {bad}")
    if sum(mode.low_outputs.values()) == 0:
        raise ExportError("float64 lift selftest: a float32 tensor was not counted")


def export_group(torch, transformers, Lift, root, out_path, cases, fixture, write):
    ckpts = {norm_rel(c["checkpoint"]) for c in cases}
    if len(ckpts) != 1:
        raise ExportError(f"{out_path}: cases of several checkpoints share one golden file: {sorted(ckpts)}")
    ckpt_rel = ckpts.pop()
    t0 = time.time()
    s = Session(torch, transformers, root, ckpt_rel)
    inv_worst, inv_count = rebuild_inv_freq(torch, s.model, s.config) if Lift.rewrite else (math.nan, 0)
    log(f"{ckpt_rel}: loaded in {time.time() - t0:.1f} s; {inv_count} inv_freq buffers rebuilt in float64 "
        f"(float32 ones differed by {inv_worst:.2g} relative)")
    s.preload(cases, fixture_images(s, fixture) if fixture else ())
    hooks = DtypeHooks(torch, s.model)
    capture = Capture(s.model)
    routers = RouterMargins(torch, s.model)
    mode = Lift()
    results = []
    old_default = torch.get_default_dtype()
    if Lift.rewrite:
        torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad(), mode:
            for c in cases:
                t1 = time.time()
                routers.reset()
                if c["kind"] == "batch":
                    res = run_batch(s, c)
                    res["image_sizes"] = [s.image(r)[2] for r in res["images"]]
                    check = ("batch_vs_single", res["batch_diff"], BATCH_TOL)
                    shape = f"B={res['input_ids'].shape[0]} L={res['input_ids'].shape[1]}"
                else:
                    ids, images = s.expand(c["prompt"])
                    n_decode, forced = decode_plan(c)
                    res = run_single(s, ids, images, n_decode, forced, capture)
                    res["image_sizes"] = [s.image(r)[2] for r in images]
                    res["oneshot_diff"] = oneshot_check(s, res)
                    check = ("oneshot", res["oneshot_diff"], ONESHOT_TOL)
                    shape = f"T={len(ids)} N={len(res['tokens'])}"
                res["top1_margin"] = top1_margin(res.get("prefill"), res.get("logits"), res["decode"])
                res["router_margin"] = routers.reset()
                ok = check[1] < check[2]
                fragile = " FRAGILE-TOP1" if res["top1_margin"] < FRAGILE_MARGIN else ""
                router = f" router {res['router_margin']:.2g}" if routers.handles else ""
                log(f"  {c['name']:<40} {c['kind']:<14} {shape:<12} images={len(res['images'])} "
                    f"{check[0]} {check[1]:.2e} top1 margin {res['top1_margin']:.2g}{router}  "
                    f"{'ok' if ok else 'FAILED'}{fragile} ({time.time() - t1:.1f} s)")
                if not ok:
                    check_failed(f"case '{c['name']}': {check[0]} difference {check[1]:.3g} is not below "
                                 f"{check[2]:g}: a float32 island or a cache bug is left", not Lift.rewrite)
                results.append((c, res))
            fixture_found = check_fixture(s, fixture) if fixture else {}
    finally:
        torch.set_default_dtype(old_default)
        hooks.remove()
        capture.remove()
        routers.remove()
    low_fn = sum(mode.low_outputs.values())
    low_mod = sum(hooks.bad.values())
    log(f"{ckpt_rel}: float64 lift rewrote {sum(mode.casts.values())} float32 requests "
        f"(in {', '.join(sorted(mode.casts))}); low-precision tensors: {low_fn} from functions, {low_mod} "
        f"from modules")
    collect = not Lift.rewrite
    if low_fn or low_mod:
        check_failed(f"low-precision tensors inside the model: functions {dict(mode.low_outputs)}, "
                     f"modules {dict(hooks.bad)}", collect)
    for k, v in fixture_found.items():
        log(f"  fixture {k}: {v:.3g}")
        if not k.endswith("positions_mismatch") and v >= FIXTURE_TOL:
            check_failed(f"fixture {fixture}: {k} differs by {v:.3g} (limit {FIXTURE_TOL:g})", collect)
        if k.endswith("positions_mismatch") and v != 0:
            check_failed(f"fixture {fixture}: {v:.0f} position ids differ", collect)
    oneshot = max([r["oneshot_diff"] for _, r in results if "oneshot_diff" in r], default=0.0)
    batch = max([r["batch_diff"] for _, r in results if "batch_diff" in r], default=0.0)
    if not write:
        return
    attrs = {
        "format": FORMAT, "format_version": np.int64(FORMAT_VERSION),
        "generator": versions(torch, transformers), "dtype": "float64", "device": "cpu",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "checkpoint": ckpt_rel, "checkpoint_sha256": checkpoint_hash(s.ckpt),
        "model_class": type(s.model).__name__, "attn_implementation": "eager",
        "image_processor": type(s.proc).__name__,
        "image_processor_settings": json.dumps(processor_settings(s.proc), sort_keys=True),
        "greedy": "argmax over all ids but vision_start, vision_end, image and video",
        "float64_lift": "torch function mode: Tensor.float/to/type and dtype= float32 requests become "
                        "float64; default dtype float64; rotary inv_freq rebuilt in float64",
        "check_oneshot_max_abs": oneshot, "check_batch_vs_single_max_abs": batch,
        "check_low_precision_tensors": np.int64(low_fn + low_mod),
        "check_lift_rewrites": np.int64(sum(mode.casts.values())),
        "check_inv_freq_float32_rel": inv_worst,
    }
    for k, v in fixture_found.items():
        attrs["check_fixture_" + k.replace(".", "_")] = v
    tmp = f"{out_path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            root_group = f.create_group("cases")
            for c, res in results:
                g = root_group.create_group(c["name"])
                g.attrs["kind"] = c["kind"]
                g.attrs["case_json"] = json.dumps(c, sort_keys=True)
                g.attrs["greedy_min_margin"] = res["margin"]
                g.attrs["top1_min_margin"] = res["top1_margin"]
                if routers.handles:
                    g.attrs["router_min_margin"] = res["router_margin"]
                if c["kind"] == "batch":
                    g.attrs["check_batch_vs_single_max_abs"] = res["batch_diff"]
                    write_batch(g, res)
                else:
                    g.attrs["check_oneshot_max_abs"] = res["oneshot_diff"]
                    write_single(g, res)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    log(f"wrote {out_path} ({len(results)} cases, {os.path.getsize(out_path) / 1e6:.1f} MB)")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="cases", help="case directory (default: cases)")
    ap.add_argument("--out", help="output directory for the HDF5 files")
    ap.add_argument("--root", default=os.path.dirname(here), help="repository root (paths in cases are relative to it)")
    ap.add_argument("--checkpoint", help="export only the cases of this checkpoint (e.g. golden/tiny-dense)")
    ap.add_argument("--case", action="append", default=[], help="export only cases whose name matches this glob (repeatable)")
    ap.add_argument("--selftest", action="store_true", help="run every check without writing files")
    ap.add_argument("--check-fixture", metavar="FILE", help="HDF5 reference fixture to recompute and compare")
    ap.add_argument("--no-lift", action="store_true",
                    help="diagnostic: run stock transformers without the float64 lift and report every check "
                         "instead of stopping (they must fail); never writes files")
    args = ap.parse_args(argv)
    if not args.selftest and not args.no_lift and not args.out:
        ap.error("--out is required unless --selftest is given")

    import torch
    import transformers

    cases_dir = args.cases if os.path.isabs(args.cases) else os.path.join(os.getcwd(), args.cases)
    # gradient cases grade against golden/gradients.h5 (export_grad.py), video cases against the
    # files golden/export_video.py writes, mtp_head cases against the MTP goldens of export_mtp.py
    cases = [c for c in load_cases(cases_dir)
             if "golden" in c and c["kind"] not in ("gradient", "mtp_head") and not has_video(c)]
    if args.checkpoint:
        cases = [c for c in cases if norm_rel(c["checkpoint"]) == norm_rel(args.checkpoint)]
    if args.case:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c["name"], p) for p in args.case)]
    if not cases:
        raise ExportError("no case to export (check --checkpoint / --case)")
    groups = collections.OrderedDict()
    for c in cases:
        groups.setdefault(os.path.basename(c["golden"]), []).append(c)

    torch.set_grad_enabled(False)
    Lift = make_lift(torch)
    lift_selftest(torch, Lift)
    if args.no_lift:
        Lift.rewrite = False
        args.selftest = True
    for mod in ("fla", "causal_conv1d"):
        if importlib.util.find_spec(mod) is not None:
            log(f"note: '{mod}' is installed; the CPU float64 run uses transformers' torch code paths")
    log(f"{versions(torch, transformers)}; {len(cases)} cases in {len(groups)} golden file(s)")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    for name, group in groups.items():
        out_path = os.path.join(args.out, name) if args.out else name
        export_group(torch, transformers, Lift, args.root, out_path, group, args.check_fixture,
                     write=not args.selftest)
    if FAILURES:
        log(f"{len(FAILURES)} check(s) failed")
        return 1
    log("selftest passed" if args.selftest else "done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ExportError as e:
        print(f"export_hf: error: {e}", file=sys.stderr)
        sys.exit(1)
