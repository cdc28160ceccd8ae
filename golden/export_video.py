#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Export float64 transformers goldens for the video cases (cases/*.json cases with a video segment).

    python3 golden/export_video.py --cases cases --out golden [--checkpoint golden/tiny-dense]

Same conventions as golden/export_hf.py (whose float64 lift, checks and HDF5 layout this reuses):
the model runs on the CPU in float64 with every operation lifted to float64, the lift is proven
on every case (one-shot forward equals prefill + cached decode, no float32 tensor produced), and
one HDF5 file is written per golden name. What is new is the video path, done by transformers'
own code wherever transformers has it:

  frames      the case's PNG frames (8-bit RGB) stacked as one video (T, H, W, 3) uint8
  sampling    Qwen3VLVideoProcessor.sample_frames with metadata (total frames, the case's fps;
              no fps: the processor's own fallback of 24 fps, which it warns about)
  pixels      Qwen3VLVideoProcessor on the sampled frames (do_sample_frames=False: already
              sampled), once stock and once without rescale/normalise; the float64 values are
              (bytes / 255 - mean) / std of the processor's own resized, padded, patchified bytes
  timestamps  Qwen3VLProcessor._calculate_timestamps over the sampled indices and fps
  layout      Qwen3VLProcessor.replace_video_token (per temporal patch: "<{t:.1f} seconds>",
              vision_start, h*w/4 video placeholders, vision_end), its text turned into ids by
              the toy timestamp tokenizer below
  positions   the model's get_rope_index with video_grid_thw and mm_token_type_ids (video = 2)
  embeddings  the model's get_image_features / get_video_features, rows put in prompt order

The toy timestamp tokenizer (there is no tokenizer in this suite): "<" -> 700, the digits
"0".."9" -> 701..710, "." -> 711, " seconds>" -> 712. "<1.2 seconds>" is [700, 702, 711, 703, 712].
A case gives these ids per temporal patch (segment key "timestamp_ids"); the exporter builds them
from transformers' timestamps and stores whether they agree (attribute timestamp_ids_match):
a case whose ids disagree fails its input_ids comparison.

Every default the processor falls back to is pinned in the file's attributes
(video_processor_settings, video_fps_when_missing, cap_pixels_per_frame).
"""

import argparse
import collections
import datetime
import inspect
import json
import math
import os
import re
import sys
import time
import types

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_hf as H  # noqa: E402

TS_IDS = {"<": 700, ".": 711, " seconds>": 712}
TS_IDS.update({str(d): 701 + d for d in range(10)})
TS_SCHEME = ("toy timestamp tokenizer: '<' 700, digits '0'..'9' 701..710, '.' 711, ' seconds>' 712; "
             "text per temporal patch as Qwen3VLProcessor.replace_video_token writes it")
FPS_WHEN_MISSING = 24.0
LOG = []


def log(msg):
    print(msg, flush=True)


def has_video(c):
    prompts = [c.get("prompt", []), c.get("other_prompt", [])] + list(c.get("rows", []))
    return any("video" in seg for p in prompts for seg in p)


def tokenize_layout(text, vs, ve, vid):
    """The placeholder text of one video -> ids, with vision start/end/video pad as special ids."""
    specials = {"<|vision_start|>": vs, "<|vision_end|>": ve, "<|video_pad|>": vid}
    pat = re.compile(r"<\|vision_start\|>|<\|vision_end\|>|<\|video_pad\|>| seconds>|<|[0-9]|\.")
    ids, pos = [], 0
    for m in pat.finditer(text):
        if m.start() != pos:
            raise H.ExportError(f"timestamp layout: cannot tokenize {text[pos:m.start()]!r}")
        tok = m.group(0)
        ids.append(specials.get(tok, TS_IDS.get(tok)))
        pos = m.end()
    if pos != len(text):
        raise H.ExportError(f"timestamp layout: cannot tokenize {text[pos:]!r}")
    return ids


class VideoSession(H.Session):
    def __init__(self, torch, transformers, root, ckpt_rel):
        super().__init__(torch, transformers, root, ckpt_rel)
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
        path = os.path.join(self.ckpt, "video_preprocessor_config.json")
        kw = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                kw = json.load(f)
            kw.pop("video_processor_type", None)
        self.vp = Qwen3VLVideoProcessor(**kw)
        self.video_token = self.config.video_token_id
        self.has_cap = "cap_pixels_per_frame" in inspect.signature(self.vp._preprocess).parameters
        self.videos = {}

    def vp_call(self, frames, **kw):
        if self.has_cap:
            kw["cap_pixels_per_frame"] = False
        return self.vp(videos=[frames], do_sample_frames=False, return_tensors="pt", **kw)

    def sample(self, n, fps):
        meta = types.SimpleNamespace(total_num_frames=n, fps=fps, frames_indices=None, duration=None,
                                     width=None, height=None)
        try:
            idx = self.vp.sample_frames(meta)
        except TypeError:
            idx = self.vp.sample_frames(meta, temporal_patch_size=self.vp.temporal_patch_size,
                                        min_frames=self.vp.min_frames, max_frames=self.vp.max_frames)
        idx = [int(i) for i in np.asarray(idx).reshape(-1)]
        return idx, float(meta.fps)

    def video(self, seg):
        key = json.dumps(seg, sort_keys=True)
        if key in self.videos:
            return self.videos[key]
        if self.frozen:
            raise H.ExportError(f"video {seg['video'][0]}...: not preprocessed before the lift")
        from PIL import Image
        torch = self.torch
        frames = []
        for rel in seg["video"]:
            with Image.open(os.path.join(self.root, rel)) as im:
                im.load()
                frames.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        n = len(frames)
        idx, fps = self.sample(n, seg.get("fps"))
        arr = np.stack([frames[i] for i in idx], axis=0)  # (T, H, W, 3)
        stock = self.vp_call(arr)
        raw = self.vp_call(arr, do_rescale=False, do_normalize=False)
        grid = stock["video_grid_thw"][0].to(torch.int64)
        if not torch.equal(grid, raw["video_grid_thw"][0].to(torch.int64)):
            raise H.ExportError("video: grids differ between the two processor runs")
        spv = stock["pixel_values_videos"].to(torch.float64)
        if raw["pixel_values_videos"].dtype == torch.uint8:
            x = raw["pixel_values_videos"].to(torch.float64)
            per = x.shape[1] // 3
            mean = torch.tensor(self.vp.image_mean, dtype=torch.float64).repeat_interleave(per)
            std = torch.tensor(self.vp.image_std, dtype=torch.float64).repeat_interleave(per)
            pv = (x / 255.0 - mean) / std
            source = "float64 from the processor's uint8 patches"
        else:
            pv = spv
            source = f"stock processor ({raw['pixel_values_videos'].dtype})"
        diff = float((pv - spv).abs().max())
        if diff > H.PIXEL_F32_TOL:
            raise H.ExportError(f"video: float64 pixel values differ from the processor's by {diff:.3g}")
        # timestamps and the prompt layout, by the processor's own functions
        from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
        Tp = self.vp.temporal_patch_size
        ts = Qwen3VLProcessor._calculate_timestamps(None, list(idx), fps, Tp)
        meta = types.SimpleNamespace(fps=fps, frames_indices=list(idx), total_num_frames=n)
        fake = types.SimpleNamespace(
            video_processor=self.vp, video_token="<|video_pad|>", vision_start_token="<|vision_start|>",
            vision_end_token="<|vision_end|>",
            _calculate_timestamps=lambda i, f, m=2: Qwen3VLProcessor._calculate_timestamps(None, i, f, m))
        try:
            text = Qwen3VLProcessor.replace_video_token(
                fake, {"video_grid_thw": stock["video_grid_thw"], "video_metadata": [meta]}, 0)
            layout = "Qwen3VLProcessor.replace_video_token"
        except (AttributeError, TypeError, KeyError) as e:
            log(f"  note: replace_video_token unavailable ({e}); layout written by the exporter")
            gh, gw = int(grid[1]) // self.merge, int(grid[2]) // self.merge
            text = "".join(f"<{t:.1f} seconds><|vision_start|>" + "<|video_pad|>" * (gh * gw) + "<|vision_end|>"
                           for t in ts)
            layout = "exporter"
        ids = tokenize_layout(text, self.vision_start, self.vision_end, self.video_token)
        # the timestamp ids of each temporal patch (the text before each vision_start)
        groups, cur = [], []
        for t in ids:
            if t == self.vision_start:
                groups.append(cur)
                cur = []
            elif t in (self.vision_end, self.video_token):
                cur = []
            else:
                cur.append(t)
        want = [list(map(int, g)) for g in seg.get("timestamp_ids", [])]
        match = want == groups
        if not match:
            log(f"  WARNING: timestamp_ids of the case {want} differ from transformers' {groups}")
        self.videos[key] = dict(pv=pv, grid=grid, ids=ids, ts=ts, idx=idx, fps=fps, diff=diff, source=source,
                                layout=layout, text=text, ts_groups=groups, match=match,
                                size=(frames[0].shape[0], frames[0].shape[1]), n_frames=n)
        return self.videos[key]

    def preload(self, cases, extra=()):
        for c in cases:
            for prompt in [c.get("prompt", []), c.get("other_prompt", [])] + list(c.get("rows", [])):
                for seg in prompt:
                    if "image" in seg:
                        self.image(seg["image"])
                    if "video" in seg:
                        self.video(seg)
        self.frozen = True

    def expand_mm(self, prompt):
        ids, visuals = [], []
        for seg in prompt:
            if "ids" in seg:
                ids.extend(int(t) for t in seg["ids"])
            elif "image" in seg:
                _, grid, _, _ = self.image(seg["image"])
                n = int(grid.prod()) // (self.merge * self.merge)
                ids += [self.vision_start] + [self.image_token] * n + [self.vision_end]
                visuals.append(("image", seg))
            else:
                ids += self.video(seg)["ids"]
                visuals.append(("video", seg))
        return ids, visuals

    def mm_inputs(self, visuals):
        torch = self.torch
        ims = [self.image(s["image"]) for k, s in visuals if k == "image"]
        vids = [self.video(s) for k, s in visuals if k == "video"]
        kw = {}
        if ims:
            kw["pixel_values"] = torch.cat([i[0] for i in ims], dim=0)
            kw["image_grid_thw"] = torch.stack([i[1] for i in ims], dim=0)
        if vids:
            kw["pixel_values_videos"] = torch.cat([v["pv"] for v in vids], dim=0)
            kw["video_grid_thw"] = torch.stack([v["grid"] for v in vids], dim=0)
        return kw

    def mm_types(self, ids_t):
        return (ids_t == self.image_token).to(self.torch.int64) + 2 * (ids_t == self.video_token).to(self.torch.int64)

    def fwd(self, ids, pos, mm=None, past=None, use_cache=True):
        torch = self.torch
        ids_t = torch.as_tensor(ids, dtype=torch.int64)[None]
        kw = dict(input_ids=ids_t, position_ids=pos, use_cache=use_cache)
        if past is not None:
            kw["past_key_values"] = past
        if mm:
            kw.update(mm)
            kw["mm_token_type_ids"] = self.mm_types(ids_t)
        return self.model(**kw)

    def rope_mm(self, ids, mm):
        torch = self.torch
        ids_t = torch.as_tensor(ids, dtype=torch.int64)[None]
        pos, delta = self.model.model.get_rope_index(
            ids_t, mm_token_type_ids=self.mm_types(ids_t), image_grid_thw=mm.get("image_grid_thw"),
            video_grid_thw=None if mm.get("video_grid_thw") is None else mm["video_grid_thw"].clone(),
            attention_mask=None)
        return pos, delta.reshape(-1)

    def embeds_in_order(self, ids, mm):
        """Merged vision rows of the prompt in token order (image and video rows interleaved as
        their placeholders appear)."""
        torch = self.torch
        inner = self.model.model
        img = vid = None
        if "pixel_values" in mm:
            o = inner.get_image_features(mm["pixel_values"], mm["image_grid_thw"])
            img = torch.cat(list(getattr(o, "pooler_output", o)), dim=0)
        if "pixel_values_videos" in mm:
            o = inner.get_video_features(mm["pixel_values_videos"], mm["video_grid_thw"])
            vid = torch.cat(list(getattr(o, "pooler_output", o)), dim=0)
        rows, ki, kv = [], 0, 0
        for t in ids:
            if t == self.image_token:
                rows.append(img[ki])
                ki += 1
            elif t == self.video_token:
                rows.append(vid[kv])
                kv += 1
        if (img is not None and ki != img.shape[0]) or (vid is not None and kv != vid.shape[0]):
            raise H.ExportError("vision rows do not match the placeholder counts")
        return torch.stack(rows) if rows else None


def run_case(s, c, capture):
    torch = s.torch
    ids, visuals = s.expand_mm(c["prompt"])
    mm = s.mm_inputs(visuals)
    pos, delta = s.rope_mm(ids, mm)
    T = len(ids)
    capture.start()
    out = s.fwd(ids, pos, mm)
    capture.stop()
    prefill = out.logits[0]
    past = out.past_key_values
    n_decode, forced = H.decode_plan(c)
    tokens, rows, margins = [], [], []
    nxt = None
    if forced is None and n_decode:
        nxt, m = s.greedy(prefill[-1])
        margins.append(m)
    for i in range(n_decode):
        tok = forced[i] if forced is not None else nxt
        p = torch.full((3, 1, 1), T + i + int(delta[0]), dtype=torch.int64)
        o = s.fwd([tok], p, past=past)
        past = o.past_key_values
        tokens.append(tok)
        rows.append(o.logits[0, -1])
        if forced is None and i + 1 < n_decode:
            nxt, m = s.greedy(o.logits[0, -1])
            margins.append(m)
    res = dict(input_ids=ids, visuals=visuals, mm=mm, pos=pos[:, 0], delta=int(delta[0]), prefill=prefill,
               tokens=tokens, decode=torch.stack(rows) if rows else None,
               margin=min(margins) if margins else math.inf)
    res["hidden_last"] = torch.stack([capture.embeds[0, -1]] + [h[0, -1] for h in capture.layers])
    res["vision_embeds"] = s.embeds_in_order(ids, mm)
    # (a) one-shot forward of prompt + decode tokens
    full_ids = ids + tokens
    N = len(tokens)
    dec_pos = (torch.arange(N, dtype=torch.int64) + T + res["delta"]).expand(3, N)
    fpos = torch.cat([res["pos"], dec_pos], dim=1)[:, None, :]
    full = s.fwd(full_ids, fpos, mm, use_cache=False).logits[0]
    diff = float((full[:T] - prefill).abs().max())
    if N:
        diff = max(diff, float((full[T:] - res["decode"]).abs().max()))
    res["oneshot_diff"] = diff
    return res


def write_case(g, s, c, res):
    W = H.write_dataset
    g.attrs["kind"] = c["kind"]
    g.attrs["case_json"] = json.dumps(c, sort_keys=True)
    g.attrs["greedy_min_margin"] = res["margin"]
    g.attrs["top1_min_margin"] = res["top1_margin"]
    g.attrs["check_oneshot_max_abs"] = res["oneshot_diff"]
    if "router_margin" in res:
        g.attrs["router_min_margin"] = res["router_margin"]
    W(g, "input_ids", res["input_ids"], np.int64)
    W(g, "position_ids", H.t2np(res["pos"]), np.int64)
    W(g, "rope_delta", np.int64(res["delta"]))
    W(g, "prefill_logits", H.t2np(res["prefill"]), np.float64)
    if res["tokens"]:
        W(g, "decode_tokens", res["tokens"], np.int64)
        W(g, "decode_logits", H.t2np(res["decode"]), np.float64)
    W(g, "hidden_last", H.t2np(res["hidden_last"]), np.float64)
    if res["vision_embeds"] is not None:
        W(g, "vision_embeds", H.t2np(res["vision_embeds"]), np.float64)
    mm = res["mm"]
    if "pixel_values" in mm:
        W(g, "pixel_values", H.t2np(mm["pixel_values"]), np.float64)
        W(g, "image_grid_thw", H.t2np(mm["image_grid_thw"]), np.int64)
    if "pixel_values_videos" in mm:
        W(g, "pixel_values_videos", H.t2np(mm["pixel_values_videos"]), np.float64)
        W(g, "video_grid_thw", H.t2np(mm["video_grid_thw"]), np.int64)
    g.create_dataset("visual_kinds", data=[k for k, _ in res["visuals"]], dtype=h5py.string_dtype())
    k = 0
    for kind, seg in res["visuals"]:
        if kind != "video":
            continue
        v = s.video(seg)
        vg = g.create_group(f"video{k}")
        vg.create_dataset("frames", data=list(seg["video"]), dtype=h5py.string_dtype())
        W(vg, "frame_indices", np.asarray(v["idx"], dtype=np.int64))
        W(vg, "timestamps", np.asarray(v["ts"], dtype=np.float64))
        vg.attrs["fps"] = v["fps"]
        vg.attrs["fps_given"] = seg.get("fps") is not None
        vg.attrs["timestamp_text"] = v["text"].replace("<|video_pad|>", "")
        vg.attrs["timestamp_ids_match"] = np.int64(v["match"])
        vg.attrs["layout"] = v["layout"]
        vg.attrs["pixel_source"] = v["source"]
        vg.attrs["pixel_stock_max_abs"] = v["diff"]
        vg.attrs["frame_size_hw"] = np.asarray(v["size"], dtype=np.int64)
        k += 1


def export_group(torch, transformers, Lift, root, out_path, cases, write):
    ckpts = {H.norm_rel(c["checkpoint"]) for c in cases}
    if len(ckpts) != 1:
        raise H.ExportError(f"{out_path}: cases of several checkpoints share one golden file: {sorted(ckpts)}")
    ckpt_rel = ckpts.pop()
    t0 = time.time()
    s = VideoSession(torch, transformers, root, ckpt_rel)
    inv_worst, inv_count = H.rebuild_inv_freq(torch, s.model, s.config)
    log(f"{ckpt_rel}: loaded in {time.time() - t0:.1f} s; {inv_count} inv_freq rebuilt")
    s.preload(cases)
    for key, v in s.videos.items():
        log(f"  video {json.loads(key)['video'][0]}.. fps {v['fps']} idx {v['idx']} grid {v['grid'].tolist()} "
            f"ts {v['ts']} match {v['match']} ({v['source']}, {v['layout']})")
    hooks = H.DtypeHooks(torch, s.model)
    capture = H.Capture(s.model)
    routers = H.RouterMargins(torch, s.model)
    mode = Lift()
    results = []
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.no_grad(), mode:
            for c in cases:
                t1 = time.time()
                routers.reset()
                res = run_case(s, c, capture)
                res["top1_margin"] = H.top1_margin(res["prefill"], res["decode"])
                if routers.handles:
                    res["router_margin"] = routers.reset()
                ok = res["oneshot_diff"] < H.ONESHOT_TOL
                log(f"  {c['name']:<40} T={len(res['input_ids'])} N={len(res['tokens'])} oneshot "
                    f"{res['oneshot_diff']:.2e} top1 margin {res['top1_margin']:.2g} delta {res['delta']} "
                    f"{'ok' if ok else 'FAILED'} ({time.time() - t1:.1f} s)")
                if not ok:
                    raise H.ExportError(f"case '{c['name']}': one-shot difference {res['oneshot_diff']:.3g}")
                results.append((c, res))
    finally:
        torch.set_default_dtype(old)
        hooks.remove()
        capture.remove()
        routers.remove()
    low = sum(mode.low_outputs.values()) + sum(hooks.bad.values())
    log(f"{ckpt_rel}: lift rewrote {sum(mode.casts.values())} requests; low-precision tensors {low}")
    if low:
        raise H.ExportError(f"low-precision tensors: {dict(mode.low_outputs)} {dict(hooks.bad)}")
    if not write:
        return
    vp = s.vp
    vkeys = ("size", "fps", "min_frames", "max_frames", "patch_size", "temporal_patch_size", "merge_size",
             "image_mean", "image_std", "do_resize", "do_rescale", "rescale_factor", "do_normalize",
             "do_convert_rgb", "do_sample_frames", "resample", "cap_pixels_per_frame", "num_frames")
    vd = vp.to_dict() if hasattr(vp, "to_dict") else {}
    vsettings = {k: vd.get(k, getattr(vp, k, None)) for k in vkeys}
    attrs = {
        "format": H.FORMAT, "format_version": np.int64(H.FORMAT_VERSION),
        "generator": H.versions(torch, transformers), "dtype": "float64", "device": "cpu",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "checkpoint": ckpt_rel, "checkpoint_sha256": H.checkpoint_hash(s.ckpt),
        "model_class": type(s.model).__name__, "attn_implementation": "eager",
        "image_processor": type(s.proc).__name__,
        "image_processor_settings": json.dumps(H.processor_settings(s.proc), sort_keys=True),
        "video_processor": type(vp).__name__,
        "video_processor_settings": json.dumps(vsettings, sort_keys=True, default=str),
        "video_fps_when_missing": FPS_WHEN_MISSING,
        "cap_pixels_per_frame": "False (passed explicitly)" if s.has_cap else "not a parameter of this version",
        "timestamp_tokens": TS_SCHEME,
        "greedy": "argmax over all ids but vision_start, vision_end, image and video",
        "float64_lift": "as golden/export_hf.py",
        "check_oneshot_max_abs": max(r["oneshot_diff"] for _, r in results),
        "check_low_precision_tensors": np.int64(low),
        "check_inv_freq_float32_rel": inv_worst,
    }
    tmp = f"{out_path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            root_group = f.create_group("cases")
            for c, res in results:
                write_case(root_group.create_group(c["name"]), s, c, res)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    log(f"wrote {out_path} ({len(results)} cases, {os.path.getsize(out_path) / 1e6:.1f} MB)")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="cases")
    ap.add_argument("--out")
    ap.add_argument("--root", default=os.path.dirname(here))
    ap.add_argument("--checkpoint")
    ap.add_argument("--selftest", action="store_true", help="run every check without writing files")
    args = ap.parse_args(argv)
    if not args.selftest and not args.out:
        ap.error("--out is required unless --selftest is given")
    import torch
    import transformers
    cases = [c for c in H.load_cases(args.cases) if "golden" in c and has_video(c)]
    if args.checkpoint:
        cases = [c for c in cases if H.norm_rel(c["checkpoint"]) == H.norm_rel(args.checkpoint)]
    if not cases:
        raise H.ExportError("no video case to export")
    groups = collections.OrderedDict()
    for c in cases:
        groups.setdefault(os.path.basename(c["golden"]), []).append(c)
    torch.set_grad_enabled(False)
    Lift = H.make_lift(torch)
    H.lift_selftest(torch, Lift)
    log(f"{H.versions(torch, transformers)}; {len(cases)} video cases in {len(groups)} file(s)")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    for name, group in groups.items():
        out_path = os.path.join(args.out, name) if args.out else name
        export_group(torch, transformers, Lift, args.root, out_path, group, not args.selftest)
    log("done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except H.ExportError as e:
        print(f"export_video: error: {e}", file=sys.stderr)
        sys.exit(1)
