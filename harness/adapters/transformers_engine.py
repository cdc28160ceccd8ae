#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""transformers behind the logitcheck engine protocol (harness/PROTOCOL.md, version 1).

    logitcheck run --all --engine 'python3 harness/adapters/transformers_engine.py --dtype bfloat16 --device cuda'

Runs Qwen3.5 dense and MoE checkpoints in Hugging Face transformers (numpy, torch and
transformers only; PIL, which transformers' image processors use, for images):

  sequence   a transformers cache (DynamicCache with linear-attention layers), grown by calls
             with past_key_values; its length and rope delta kept beside it
  prompt     the expanded ids, the model's get_rope_index positions and delta, the stock image
             processor's pixel values and the vision tower's merged embeddings (computed once);
             a video segment's frames sampled by Qwen3VLVideoProcessor.sample_frames (the
             segment's fps; none: the processor's 24 fps fallback), preprocessed by that video
             processor (cap_pixels_per_frame off), expanded per temporal patch to the segment's
             timestamp ids, vision_start, the patch's video placeholders, vision_end
  prefill    inputs_embeds of the span (image rows replaced by the prompt's vision embeddings,
             so a span may cut through an image) with explicit 3-axis position_ids
  decode     one token with position cached length + rope delta
  snapshot   copy.deepcopy of the sequence (its cache included); restore deep-copies it again
  batch      transformers' left-padded batched call: one cache for the B rows, a 2-D
             attention_mask, get_rope_index over the padded batch; chunks of columns continue
             that cache; a prompt's pad_to widens the layout (a batch of one row has pads)
  pixels     image_min_pixels / image_max_pixels: the checkpoint's image processor rebuilt with
             size {"shortest_edge": min, "longest_edge": max} (0: the checkpoint's), as
             golden/export_real.py builds it for a case's image_max_pixels
  taps       hidden states (forward hooks on the decoder input and each decoder layer), merged
             vision embeddings, the text rotary embedding's cos/sin; the final hidden state (a
             forward hook on the decoder's final norm, the lm_head's input) of prefill, decode,
             batch_prefill and batch_decode when a request asks ("final_hidden": true)
  state      the cache's tensors, layer by layer: a linear-attention layer's conv state (the
             last conv_kernel inputs, as transformers keeps them) then its recurrent state, an
             attention layer's keys then values

  vjp        torch autograd through transformers' own functions (torch_chunk_gated_delta_rule,
             torch_recurrent_gated_delta_rule, causal_conv1d_fn or the depthwise conv it falls
             back to, l2norm, the RMSNorm modules, the text rotary + apply_rotary_pos_emb, a whole
             decoder layer) in the model's dtype on its device, as golden/export_grad.py runs
             them in float64; a decoder layer's `chunk` routes its GDN core to the chunked form
             in chunks of that length (0: the recurrent form); `conv` runs in one piece whatever
             `chunk` says (transformers has no piecewise conv backward)

Not offered: `gdn_mode` (transformers chooses its GDN path itself).
The declared precision follows --dtype. Everything but protocol replies goes to stderr.
"""
import argparse
import copy
import json
import os
import sys
import traceback

PROTOCOL = 1
CAPS_BASE = ["positions", "snapshot", "batch", "state", "hidden", "vision", "partial_vision", "rope", "vjp", "pad_to",
             "final_hidden"]
PRECISION = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "float64": "f64"}


class InputError(Exception):
    """The request is bad input (kind "input")."""


class Unsupported(Exception):
    """The engine cannot do what was asked (kind "unsupported")."""


# ---------------------------------------------------------------- the wire


class Wire:
    """Framing: one JSON line per request; one JSON line per reply, then its payloads."""

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile

    def requests(self):
        for line in self.rfile:
            line = line.strip()
            if line:
                yield line

    @staticmethod
    def payload(x):
        """(dtype name, shape, bytes) of a numpy array or a torch tensor, little-endian, row-major."""
        if hasattr(x, "detach"):  # torch tensor
            import torch
            x = x.detach().to("cpu").contiguous()
            if x.dtype == torch.bfloat16:
                return "bf16", list(x.shape), x.view(torch.int16).numpy().astype("<i2").tobytes()
            x = x.numpy()
        import numpy as np
        x = np.ascontiguousarray(x)
        names = {"float64": ("f64", "<f8"), "float32": ("f32", "<f4"), "float16": ("f16", "<f2"),
                 "int32": ("i32", "<i4"), "int64": ("i64", "<i8")}
        if x.dtype.name not in names:
            raise TypeError(f"no protocol dtype for {x.dtype}")
        name, le = names[x.dtype.name]
        return name, list(x.shape), x.astype(le, copy=False).tobytes()

    DTYPES = {"f64": "<f8", "f32": "<f4", "f16": "<f2", "i32": "<i4", "i64": "<i8"}

    def read_tensors(self, descs, key):
        """The payloads a request declares (vjp: "inputs", then "grads"), read in order into
        {name: numpy array}. Every declared payload is read before anything is checked, so a
        refused request leaves the stream in step."""
        import numpy as np
        if descs is None:
            return {}
        if not isinstance(descs, list) or not all(isinstance(d, dict) and isinstance(d.get("bytes"), int)
                                                  for d in descs):
            raise InputError(f'request field "{key}" is not an array of tensors with "bytes"')
        raw = [self.rfile.read(d["bytes"]) for d in descs]
        out = {}
        for d, b in zip(descs, raw):
            name, dt, shape = d.get("name"), d.get("dtype"), d.get("shape")
            if len(b) != d["bytes"]:
                raise InputError(f"{key}: tensor '{name}': payload cut short")
            if not isinstance(name, str) or dt not in self.DTYPES or not isinstance(shape, list):
                raise InputError(f'{key}: a tensor needs "name", "dtype" ({", ".join(self.DTYPES)}) and "shape"')
            a = np.frombuffer(b, dtype=self.DTYPES[dt])
            if a.size != int(np.prod(shape, dtype=np.int64)):
                raise InputError(f"{key}: tensor '{name}': {d['bytes']} bytes for shape {shape}")
            out[name] = a.reshape(shape).astype(a.dtype.newbyteorder("="))
        return out

    def reply(self, rid, fields=None, tensors=()):
        hdr = {"id": rid, "ok": True}
        hdr.update(fields or {})
        blobs = []
        if tensors:
            hdr["tensors"] = []
            for name, x in tensors:
                dt, shape, b = self.payload(x)
                hdr["tensors"].append({"name": name, "dtype": dt, "shape": shape, "bytes": len(b)})
                blobs.append(b)
        self.wfile.write(json.dumps(hdr, separators=(",", ":")).encode() + b"\n" + b"".join(blobs))
        self.wfile.flush()

    def error(self, rid, kind, msg):
        msg = " ".join(str(msg).split())[:1000]
        self.wfile.write(json.dumps({"id": rid, "ok": False, "kind": kind, "error": msg}).encode() + b"\n")
        self.wfile.flush()


def layout_len(prompts):
    """Columns of a left-padded batch: the longest prompt, or a longer pad_to of one of them."""
    return max(max(p.n, getattr(p, "pad_to", 0)) for p in prompts)


def prompt_options(req, caps):
    """The optional prompt_open fields: image_min_pixels, image_max_pixels (capability
    pixel_limits; 0 = the processor's) and pad_to (capability pad_to). A field of a capability
    the engine does not declare is refused, never ignored."""
    opts = {}
    for key, cap in (("image_min_pixels", "pixel_limits"), ("image_max_pixels", "pixel_limits"), ("pad_to", "pad_to")):
        v = req.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f'request field "{key}" is not a non-negative integer')
        if v and cap not in caps:
            raise Unsupported(f'"{key}" needs capability {cap}, which this engine does not declare')
        opts[key] = v
    return opts


def need(req, key, typ=int):
    v = req.get(key)
    if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise InputError(f'request field "{key}" is missing or not an integer')
    if typ is list and not (isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
        raise InputError(f'request field "{key}" is missing or not a non-empty array of integers')
    if typ is str and not isinstance(v, str):
        raise InputError(f'request field "{key}" is missing or not a string')
    return v


# ---------------------------------------------------------------- the server: handles and dispatch


class Server:
    """Dispatches protocol requests to a backend. The backend owns the model; the server owns
    the handle tables and checks every request against the protocol's semantics."""

    def __init__(self, backend, wire):
        self.b, self.w = backend, wire
        self.prompts, self.seqs, self.snaps = {}, {}, {}
        self.next_handle = 0
        self.caps = set()

    def handle_of(self, table, key, h):
        if h not in table:
            raise InputError(f"no {key} {h}")
        return table[h]

    def new_handle(self):
        self.next_handle += 1
        return self.next_handle - 1

    def reset(self):
        self.prompts.clear()
        self.seqs.clear()
        self.snaps.clear()

    def serve(self):
        for line in self.w.requests():
            rid = None
            try:
                try:
                    req = json.loads(line)
                except ValueError:
                    raise InputError("a request line that is not JSON")
                if not isinstance(req, dict) or not isinstance(req.get("id"), int) or not isinstance(req.get("op"), str):
                    raise InputError('a request must be a JSON object with "id" and "op"')
                rid, op = req["id"], req["op"]
                fn = getattr(self, "op_" + op, None)
                if fn is None:
                    raise Unsupported(f"unknown op '{op[:64]}'")
                if fn(rid, req) == "shutdown":
                    return
            except InputError as e:
                self.w.error(rid, "input", e)
            except Unsupported as e:
                self.w.error(rid, "unsupported", e)
            except Exception as e:  # anything else the engine raised
                traceback.print_exc(file=sys.stderr)
                self.w.error(rid, "engine", f"{type(e).__name__}: {e}")

    # ---- operations

    def op_hello(self, rid, req):
        if req.get("protocol") != PROTOCOL:
            raise InputError(f"this engine speaks protocol version {PROTOCOL}, the harness {req.get('protocol')}")
        info = self.b.describe()
        self.caps = set(info["capabilities"])
        self.w.reply(rid, dict(protocol=PROTOCOL, **info))

    def op_load(self, rid, req):
        self.reset()
        model = self.b.load(need(req, "dir", str))
        self.w.reply(rid, {"model": model})

    def op_reset(self, rid, req):
        self.reset()
        self.w.reply(rid)

    def op_shutdown(self, rid, req):
        self.w.reply(rid)
        return "shutdown"

    def op_prompt_open(self, rid, req):
        segs = req.get("segments")
        if not isinstance(segs, list) or not segs:
            raise InputError('request field "segments" is missing or not a non-empty array')
        for k, s in enumerate(segs):
            if not isinstance(s, dict) or not (isinstance(s.get("image"), str) or isinstance(s.get("ids"), list)
                                               or isinstance(s.get("video"), list)):
                raise InputError(f'segment {k} has neither "ids" nor "image" nor "video"')
        vf = req.get("vision_from", 0)
        if not isinstance(vf, int) or vf < 0:
            raise InputError('request field "vision_from" is not a non-negative integer')
        opts = prompt_options(req, self.caps)
        p = self.b.prompt_open(segs, vf, (opts["image_min_pixels"], opts["image_max_pixels"]))
        if opts["pad_to"] and opts["pad_to"] < p.n:
            raise InputError(f"pad_to {opts['pad_to']} is below the prompt's {p.n} expanded tokens")
        p.pad_to = opts["pad_to"]
        h = self.new_handle()
        self.prompts[h] = p
        fields = {"prompt": h, "n": p.n, "n_images": len(p.grids), "grid": p.grids, "rope_delta": p.delta}
        self.w.reply(rid, fields, [("ids", p.ids_np), ("positions", p.pos_np)])

    def op_prompt_close(self, rid, req):
        self.prompts.pop(need(req, "prompt"), None)
        self.w.reply(rid)

    def op_seq_open(self, rid, req):
        if not self.b.loaded:
            raise InputError("no checkpoint loaded")
        h = self.new_handle()
        self.seqs[h] = Seq()
        self.w.reply(rid, {"seq": h})

    def op_seq_close(self, rid, req):
        self.seqs.pop(need(req, "seq"), None)
        self.w.reply(rid)

    def want_final(self, req):
        """Whether the request asks for the final norm's output ("final_hidden": true), checked
        before anything runs."""
        f = req.get("final_hidden", False)
        if not isinstance(f, bool):
            raise InputError('request field "final_hidden" is not a boolean')
        if f and not hasattr(self.b, "final_hidden"):
            raise Unsupported("final_hidden: this backend has no tap on the final norm")
        return f

    def single(self, h):
        s = self.handle_of(self.seqs, "sequence", h)
        if s.group is not None:
            raise Unsupported(f"sequence {h} was prefilled in a batch: it continues only through batch_decode")
        return s

    def op_prefill(self, rid, req):
        s = self.single(need(req, "seq"))
        ph = need(req, "prompt")
        p = self.handle_of(self.prompts, "prompt", ph)
        a, b = need(req, "from"), need(req, "to")
        if not 0 <= a < b <= p.n:
            raise InputError(f"span [{a}, {b}) is not inside the prompt's {p.n} tokens")
        if s.length != a:
            raise InputError(f"the sequence holds {s.length} tokens, the span starts at {a}")
        sel = req.get("logits")
        if sel not in ("none", "last", "all"):
            raise InputError('request field "logits" is none of "none", "last", "all"')
        if req.get("gdn_mode", "auto") != "auto" or req.get("gdn_chunk", 0):
            raise Unsupported("gdn_mode: transformers chooses its GDN path itself")
        fin = self.want_final(req)
        logits, hidden = self.b.prefill(s, p, a, b, sel, bool(req.get("hidden")))
        s.prompt = ph
        tensors = []
        if sel != "none":
            tensors.append(("logits", logits))
        if req.get("hidden"):
            tensors.append(("hidden", hidden))
        if fin:
            tensors.append(("final_hidden", self.b.final_hidden()[0]))       # (b - a, H)
        self.w.reply(rid, None, tensors)

    def op_decode(self, rid, req):
        s = self.single(need(req, "seq"))
        fin = self.want_final(req)
        logits = self.b.decode(s, need(req, "token"))
        tensors = [("logits", logits)] if req.get("logits") else []
        if fin:
            tensors.append(("final_hidden", self.b.final_hidden()[0, -1]))   # (H)
        self.w.reply(rid, None, tensors)

    def op_snapshot(self, rid, req):
        s = self.single(need(req, "seq"))
        h = self.new_handle()
        self.snaps[h] = copy.deepcopy(s)
        self.w.reply(rid, {"snap": h})

    def op_restore(self, rid, req):
        snap = self.handle_of(self.snaps, "snapshot", need(req, "snap"))
        h = self.new_handle()
        self.seqs[h] = copy.deepcopy(snap)
        self.w.reply(rid, {"seq": h})

    def op_release(self, rid, req):
        self.snaps.pop(need(req, "snap"), None)
        self.w.reply(rid)

    def op_batch_prefill(self, rid, req):
        hs, phs = need(req, "seqs", list), need(req, "prompts", list)
        if len(hs) != len(phs) or len(set(hs)) != len(hs):
            raise InputError('"seqs" and "prompts" must have the same length, each sequence once')
        seqs = [self.handle_of(self.seqs, "sequence", h) for h in hs]
        prompts = [self.handle_of(self.prompts, "prompt", h) for h in phs]
        a, b = need(req, "from"), need(req, "to")
        M = layout_len(prompts)
        if not 0 <= a < b <= M:
            raise InputError(f"columns [{a}, {b}) are not inside the batch's {M} columns")
        fin = self.want_final(req)
        if a == 0:
            for h, s in zip(hs, seqs):
                if s.length or s.group is not None:
                    raise InputError(f"sequence {h} is not empty: a batch starts from empty sequences")
            g = self.b.batch_group(prompts, phs)
            for r, s in enumerate(seqs):
                s.group, s.row, s.prompt = g, r, phs[r]
        else:
            g = seqs[0].group
            if g is None or any(s.group is not g or s.row != r for r, s in enumerate(seqs)) or len(seqs) != g.B:
                raise InputError("a batch continues only with the sequences it started with, in the same order")
            if g.done != a or g.prompt_handles != phs:
                raise InputError(f"the batch holds columns [0, {g.done}), the span starts at {a}")
        logits = self.b.batch_prefill(g, a, b)
        for r, s in enumerate(seqs):
            s.length = max(0, b - (M - prompts[r].n))
            if a == 0:
                s.delta = prompts[r].delta
        tensors = [("logits", logits)] if req.get("logits") else []
        if fin:
            tensors.append(("final_hidden", self.b.final_hidden()))          # (B, b - a, H)
        self.w.reply(rid, None, tensors)

    def op_batch_decode(self, rid, req):
        hs, toks = need(req, "seqs", list), need(req, "tokens", list)
        if len(hs) != len(toks):
            raise InputError('"seqs" and "tokens" differ in length')
        seqs = [self.handle_of(self.seqs, "sequence", h) for h in hs]
        g = seqs[0].group
        if g is None or len(seqs) != g.B or any(s.group is not g or s.row != r for r, s in enumerate(seqs)):
            raise Unsupported("batch_decode runs the rows of one batched prefill, in its order "
                              "(transformers batches through one shared cache)")
        if g.done != g.M:
            raise InputError(f"the batch's prefill is not complete ({g.done} of {g.M} columns)")
        fin = self.want_final(req)
        logits = self.b.batch_decode(g, seqs, toks)
        for s in seqs:
            s.length += 1
        tensors = [("logits", logits)] if req.get("logits") else []
        if fin:
            tensors.append(("final_hidden", self.b.final_hidden()[:, -1]))   # (B, H)
        self.w.reply(rid, None, tensors)

    def op_vision(self, rid, req):
        p = self.handle_of(self.prompts, "prompt", need(req, "prompt"))
        self.w.reply(rid, None, [("embeds", self.b.vision(p))])

    def op_rope(self, rid, req):
        pos = req.get("positions")
        if not (isinstance(pos, list) and len(pos) == 3 and all(isinstance(r, list) for r in pos)
                and len({len(r) for r in pos}) == 1):
            raise InputError('request field "positions" is not three arrays of one length (T, H, W)')
        self.w.reply(rid, None, [("rope", self.b.rope(pos))])

    def op_vjp(self, rid, req):
        ins = self.w.read_tensors(req.get("inputs"), "inputs")
        grads = self.w.read_tensors(req.get("grads"), "grads")
        fn = need(req, "fn", str)
        params = req.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in params.values()):
            raise InputError('request field "params" is not an object of numbers')
        want = req.get("want")
        if not isinstance(want, list) or not all(isinstance(w, dict) and isinstance(w.get("name"), str)
                                                 and isinstance(w.get("shape"), list) for w in want):
            raise InputError('request field "want" is not an array of {"name", "shape"}')
        if not self.b.loaded:
            raise InputError("vjp: no checkpoint loaded")
        res = self.b.vjp(fn, params, ins, grads, [w["name"] for w in want])
        out = []
        for w in want:
            x = res.get(w["name"])
            if x is None:
                continue  # not computed: the harness names the missing gradient
            if list(x.shape) != w["shape"]:
                raise RuntimeError(f"vjp {fn}: result {w['name']} has shape {list(x.shape)}, asked {w['shape']}")
            out.append((w["name"], x))
        self.w.reply(rid, None, out)

    def op_state(self, rid, req):
        s = self.handle_of(self.seqs, "sequence", need(req, "seq"))
        st = self.b.state(s) if s.group is None else self.b.state_row(s.group, s.row)
        self.w.reply(rid, {"len": s.length}, [("state", st)])


class Seq:
    """A sequence: its cache (None before the first call), length, rope delta, the prompt it
    prefills from, and for a batch row its group and row."""

    def __init__(self):
        self.cache, self.length, self.delta, self.prompt = None, 0, 0, None
        self.group, self.row = None, None

    def __deepcopy__(self, memo):
        if self.group is not None:
            raise Unsupported("snapshot of a batch row: transformers batches through one shared cache")
        s = Seq()
        s.cache = copy.deepcopy(self.cache, memo)
        s.length, s.delta, s.prompt = self.length, self.delta, self.prompt
        return s


# ---------------------------------------------------------------- transformers


class Prompt:
    pass


class Group:
    pass


class TransformersBackend:
    def __init__(self, args):
        import torch
        import transformers
        self.torch, self.tf, self.args = torch, transformers, args
        self.dtype = getattr(torch, args.dtype)
        self.device = torch.device(args.device)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("transformers_engine: --device cuda, but torch sees no CUDA device")
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.tf32 == "off":
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        torch.set_grad_enabled(False)
        try:
            import PIL  # noqa: F401  (the image processors decode PNG through PIL)
            self.have_pil = True
        except ImportError:
            self.have_pil = False
            print("transformers_engine: PIL is not installed: image prompts are not offered", file=sys.stderr)
        self.model = None
        self.loaded = False

    def describe(self):
        caps = (["images", "video", "pixel_limits"] if self.have_pil else []) + CAPS_BASE
        dev = self.args.device
        if dev == "cuda":
            dev = f"cuda ({self.torch.cuda.get_device_name(0)})"
        return {"name": "transformers", "version": self.tf.__version__, "precision": PRECISION[self.args.dtype],
                "detail": f"{self.args.dtype}, {dev}, attn {self.args.attn}, experts {self.args.experts}, "
                          f"tf32 {self.args.tf32}, torch {self.torch.__version__}",
                "capabilities": caps}

    # ---- checkpoint

    def load(self, ckpt):
        torch, tf = self.torch, self.tf
        if not os.path.isfile(os.path.join(ckpt, "config.json")):
            raise InputError(f"{ckpt}: no config.json")
        if self.model is not None and self.ckpt == os.path.realpath(ckpt):
            self.loaded = True
            return self.model_info
        self.model = None
        config = tf.AutoConfig.from_pretrained(ckpt)
        kw = dict(dtype=self.dtype, attn_implementation=self.args.attn)
        if "moe" in config.model_type and self.args.experts != "default":
            kw["experts_implementation"] = self.args.experts
        try:
            model = tf.AutoModelForImageTextToText.from_pretrained(ckpt, **kw)
        except (ValueError, KeyError):
            cls = {"qwen3_5": "Qwen3_5ForConditionalGeneration",
                   "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"}.get(config.model_type)
            if cls is None:
                raise InputError(f"{ckpt}: model_type {config.model_type} is not a Qwen3.5 checkpoint")
            model = getattr(tf, cls).from_pretrained(ckpt, **kw)
        self.model = model.to(self.device).eval()
        self.config = config
        self.ckpt = os.path.realpath(ckpt)
        inner = self.model.model
        self.lm = inner.language_model
        self.embed = self.lm.get_input_embeddings()
        self.visual = getattr(inner, "visual", None)
        tc = getattr(config, "text_config", config)
        self.merge = config.vision_config.spatial_merge_size if self.visual is not None else 1
        self.image_token = getattr(config, "image_token_id", -1)
        rp = getattr(tc, "rope_parameters", None) or {}
        head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
        self.rotary_dim = int(head_dim * rp.get("partial_rotary_factor", getattr(tc, "partial_rotary_factor", 1.0)))
        self.proc = self.make_image_processor(ckpt, config) if self.visual is not None else None
        self.procs = {}  # (min_pixels, max_pixels) -> the image processor with that size
        self.video_token = getattr(config, "video_token_id", -1)
        self.vproc = self.make_video_processor(ckpt) if self.visual is not None else None
        self.install_hooks()
        self.model_info = {
            "model_type": config.model_type, "vocab_size": tc.vocab_size, "hidden_size": tc.hidden_size,
            "num_layers": tc.num_hidden_layers, "has_vision": self.visual is not None,
            "image_token_id": self.image_token, "video_token_id": getattr(config, "video_token_id", -1),
            "vision_start_token_id": getattr(config, "vision_start_token_id", -1),
            "vision_end_token_id": getattr(config, "vision_end_token_id", -1),
            "rotary_dim": self.rotary_dim,
            "rope_theta": float(rp.get("rope_theta", getattr(tc, "rope_theta", 10000.0))),
            "mrope_section": [int(x) for x in rp.get("mrope_section", [0, 0, 0])],
            "mrope_interleaved": bool(rp.get("mrope_interleaved", True)),
        }
        self.loaded = True
        print(f"transformers_engine: loaded {ckpt} ({config.model_type}, {self.args.dtype}, {self.args.device})",
              file=sys.stderr)
        return self.model_info

    def make_image_processor(self, ckpt, config):
        """The checkpoint's own image processor (preprocessor_config.json), else the Qwen2-VL-family
        processor Qwen3.5 uses, with the vision config's patch, temporal patch and merge sizes."""
        if os.path.exists(os.path.join(ckpt, "preprocessor_config.json")):
            return self.tf.AutoImageProcessor.from_pretrained(ckpt)
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
        vc = config.vision_config
        return Qwen2VLImageProcessor(patch_size=vc.patch_size, temporal_patch_size=vc.temporal_patch_size,
                                     merge_size=vc.spatial_merge_size, image_mean=[0.5] * 3, image_std=[0.5] * 3)

    def processor_size(self):
        """(shortest_edge, longest_edge) of the checkpoint's image processor: its
        preprocessor_config.json "size" (as golden/export_real.py reads it), else the processor's."""
        path = os.path.join(self.ckpt, "preprocessor_config.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                size = json.load(f).get("size") or {}
            if "shortest_edge" in size and "longest_edge" in size:
                return int(size["shortest_edge"]), int(size["longest_edge"])
        size = self.proc.size
        get = (lambda k: size[k]) if isinstance(size, dict) else (lambda k: getattr(size, k))
        return int(get("shortest_edge")), int(get("longest_edge"))

    def image_processor(self, limits):
        """The image processor for per-request smart_resize bounds (0 = the checkpoint's), built as
        golden/export_real.py builds it: the checkpoint's processor with size {"shortest_edge": min,
        "longest_edge": max}. An override below one merge block, or min above max, is bad input."""
        lo, hi = limits
        if not lo and not hi:
            return self.proc
        vc = self.config.vision_config
        block = (vc.patch_size * vc.spatial_merge_size) ** 2
        for name, v in (("min_pixels", lo), ("max_pixels", hi)):
            if v and v < block:
                raise InputError(f"image pixel bounds: {name} {v} is below one merge block ({block} pixels: "
                                 f"(patch {vc.patch_size} * merge {vc.spatial_merge_size})^2)")
        base_lo, base_hi = self.processor_size()
        lo, hi = lo or base_lo, hi or base_hi
        if lo > hi:
            raise InputError(f"image pixel bounds: min_pixels {lo} exceeds max_pixels {hi}")
        if (lo, hi) not in self.procs:
            size = {"shortest_edge": lo, "longest_edge": hi}
            if os.path.exists(os.path.join(self.ckpt, "preprocessor_config.json")):
                self.procs[(lo, hi)] = self.tf.AutoImageProcessor.from_pretrained(self.ckpt, size=size)
            else:
                from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
                self.procs[(lo, hi)] = Qwen2VLImageProcessor(
                    patch_size=vc.patch_size, temporal_patch_size=vc.temporal_patch_size,
                    merge_size=vc.spatial_merge_size, image_mean=[0.5] * 3, image_std=[0.5] * 3, size=size)
        return self.procs[(lo, hi)]

    def make_video_processor(self, ckpt):
        """Qwen3-VL's video processor (Qwen3.5's) with the checkpoint's video_preprocessor_config.json
        when there is one, else the class defaults."""
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
        path = os.path.join(ckpt, "video_preprocessor_config.json")
        kw = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                kw = json.load(f)
            kw.pop("video_processor_type", None)
        return Qwen3VLVideoProcessor(**kw)

    def preprocess_video(self, seg):
        """A video segment -> (pixel_values_videos, grid (3,), ids of its expansion)."""
        import inspect
        import types
        import numpy as np
        from PIL import Image
        frames, fps, ts = seg.get("video"), seg.get("fps"), seg.get("timestamp_ids")
        if not frames or not all(isinstance(f, str) for f in frames):
            raise InputError('a video segment needs "video": a non-empty list of PNG paths')
        if not isinstance(ts, list) or not all(isinstance(g, list) and all(isinstance(t, int) for t in g) for g in ts):
            raise InputError('a video segment needs "timestamp_ids": one id list per temporal patch')
        if fps is not None and (not isinstance(fps, (int, float)) or fps <= 0):
            raise InputError('video "fps" is not a positive number')
        meta = types.SimpleNamespace(total_num_frames=len(frames), fps=fps, frames_indices=None)
        idx = [int(i) for i in np.asarray(self.vproc.sample_frames(meta)).reshape(-1)]
        arr = []
        try:
            for i in idx:
                with Image.open(frames[i]) as im:
                    arr.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(f"{frames[i]}: cannot read the frame: {e}")
        if len({a.shape for a in arr}) != 1:
            raise InputError(f"{frames[0]}: the frames of a video differ in size")
        kw = {}
        if "cap_pixels_per_frame" in inspect.signature(self.vproc._preprocess).parameters:
            kw["cap_pixels_per_frame"] = False
        out = self.vproc(videos=[np.stack(arr)], do_sample_frames=False, return_tensors="pt", **kw)
        grid = out["video_grid_thw"][0].to(self.torch.int64)
        t, per = int(grid[0]), int(grid[1] * grid[2]) // (self.merge * self.merge)
        if len(ts) != t:
            raise InputError(f"{frames[0]} ...: {len(ts)} timestamp groups for {t} temporal patches of {len(idx)} "
                             f"sampled frames")
        ids = []
        for g in ts:
            ids += list(g) + [self.model_info["vision_start_token_id"]] + [self.video_token] * per + \
                   [self.model_info["vision_end_token_id"]]
        return out["pixel_values_videos"], grid, ids

    def install_hooks(self):
        """Hidden taps: the decoder's input embeddings and each decoder layer's output; the final
        norm's output of the latest forward (final_hidden)."""
        self.capture = None
        self.last_norm = None

        def norm(module, inputs, output):
            self.last_norm = output

        self.lm.norm.register_forward_hook(norm)

        def pre(module, args, kwargs):
            if self.capture is not None:
                self.capture.append(kwargs.get("inputs_embeds"))

        def layer(module, inputs, output):
            if self.capture is not None:
                self.capture.append(output[0] if isinstance(output, tuple) else output)

        self.lm.register_forward_pre_hook(pre, with_kwargs=True)
        for l in self.lm.layers:
            l.register_forward_hook(layer)

    def final_hidden(self):
        """The final norm's output of the latest forward, (B, n, H): every position of the call
        (the norm runs before lm_head keeps its last rows)."""
        if self.last_norm is None:
            raise RuntimeError("final_hidden: the final norm's hook saw no forward")
        return self.last_norm

    # ---- prompts

    def prompt_open(self, segs, vision_from, pixel_limits=(0, 0)):
        torch = self.torch
        if not self.loaded:
            raise InputError("no checkpoint loaded")
        proc = self.image_processor(pixel_limits) if self.visual is not None and any(pixel_limits) else self.proc
        ids, images, kinds = [], [], []
        V = self.model_info["vocab_size"]
        for s in segs:
            if "video" in s:
                if self.visual is None or not self.have_pil:
                    raise Unsupported("video prompts need a vision checkpoint and PIL")
                pv, grid, vids = self.preprocess_video(s)
                ids += vids
                images.append((pv, grid))
                kinds.append(2)
            elif "image" in s:
                if self.visual is None or not self.have_pil:
                    raise Unsupported("image prompts need a vision checkpoint and PIL")
                pv, grid = self.preprocess(s["image"], proc)
                n = int(grid.prod()) // (self.merge * self.merge)
                ids += [self.model_info["vision_start_token_id"]] + [self.image_token] * n + \
                       [self.model_info["vision_end_token_id"]]
                images.append((pv, grid))
                kinds.append(1)
            else:
                for t in s["ids"]:
                    if not isinstance(t, int) or not 0 <= t < V:
                        raise InputError(f"token id {t} is outside the vocabulary ({V})")
                ids += s["ids"]
        if vision_from > len(images):
            raise InputError(f"vision_from {vision_from} is beyond the prompt's {len(images)} images")
        p = Prompt()
        p.n = len(ids)
        p.ids = torch.tensor(ids, dtype=torch.int64, device=self.device)
        p.grids = [[int(x) for x in g] for _, g in images]
        img_g = [g for (_, g), k in zip(images, kinds) if k == 1]
        vid_g = [g for (_, g), k in zip(images, kinds) if k == 2]
        grid = torch.stack(img_g).to(self.device) if img_g else None
        vgrid = torch.stack(vid_g).to(self.device) if vid_g else None
        mm = (p.ids == self.image_token).to(torch.int64) + 2 * (p.ids == self.video_token).to(torch.int64)
        pos, delta = self.model.model.get_rope_index(p.ids[None], mm_token_type_ids=mm[None], image_grid_thw=grid,
                                                     video_grid_thw=vgrid)
        p.pos = pos[:, 0].to(torch.int64)                      # (3, N)
        p.delta = int(delta.reshape(-1)[0])
        p.ids_np = p.ids.to("cpu").to(torch.int32).numpy()
        p.pos_np = p.pos.to("cpu").numpy()
        # merged vision embeddings of the images >= vision_from, image after image; rows of the
        # earlier images are unavailable (None)
        p.n_before = sum(int(g.prod()) // (self.merge * self.merge) for _, g in images[:vision_from])
        p.features = None
        if 2 in kinds[vision_from:]:
            # images and videos: each input through the vision tower on its own, rows in prompt order
            rows = []
            for (x, g), k in zip(images[vision_from:], kinds[vision_from:]):
                fn = self.model.model.get_video_features if k == 2 else self.model.model.get_image_features
                out = fn(x.to(self.device, self.dtype), g[None].to(self.device))
                feats = getattr(out, "pooler_output", out)
                rows.append(torch.cat(list(feats), dim=0) if isinstance(feats, (list, tuple)) else feats)
            p.features = torch.cat(rows, dim=0).to(self.dtype)
        elif images[vision_from:]:
            pv = torch.cat([x for x, _ in images[vision_from:]]).to(self.device, self.dtype)
            g = torch.stack([g for _, g in images[vision_from:]]).to(self.device)
            out = self.model.model.get_image_features(pv, g)
            feats = getattr(out, "pooler_output", out)
            if isinstance(feats, (list, tuple)):
                feats = torch.cat(list(feats), dim=0)
            p.features = feats.to(self.dtype)
        return p

    def preprocess(self, path, proc=None):
        """Stock image processor (the checkpoint's, or proc: one with per-request pixel bounds) on
        the PNG as PIL decodes it -> (pixel_values, grid (3,))."""
        from PIL import Image
        try:
            with Image.open(path) as im:
                im.load()
                out = (proc or self.proc)(images=[im], return_tensors="pt")
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(f"{path}: cannot read the image: {e}")
        return out["pixel_values"], out["image_grid_thw"][0].to(self.torch.int64)

    def span_embeds(self, p, a, b):
        """inputs_embeds of prompt columns [a, b): token embeddings, image rows replaced by the
        prompt's merged vision embeddings."""
        torch = self.torch
        ids = p.ids[a:b]
        emb = self.embed(ids)
        img = (ids == self.image_token) | (ids == self.video_token)
        if bool(img.any()):
            before = int(((p.ids[:a] == self.image_token) | (p.ids[:a] == self.video_token)).sum())
            k = torch.arange(int(img.sum()), device=self.device) + before - p.n_before
            if p.features is None or int(k.min()) < 0 or int(k.max()) >= p.features.shape[0]:
                raise InputError(f"span [{a}, {b}) covers image rows that were not run through the vision tower "
                                 f"(vision_from)")
            emb = emb.clone()
            emb[img] = p.features[k].to(emb.dtype)
        return emb

    # ---- one sequence

    def forward(self, cache, **kw):
        self.last_norm = None  # set again by the final norm's hook (final_hidden)
        out = self.model(past_key_values=cache, use_cache=True, return_dict=True, **kw)
        return out.logits, out.past_key_values

    def prefill(self, s, p, a, b, sel, hidden):
        torch = self.torch
        emb = self.span_embeds(p, a, b)[None]
        pos = p.pos[:, a:b][:, None, :]
        self.capture = [] if hidden else None
        try:
            logits, cache = self.forward(s.cache, inputs_embeds=emb, position_ids=pos,
                                         logits_to_keep=0 if sel == "all" else 1)
        finally:
            cap, self.capture = self.capture, None
        s.cache, s.length = cache, b
        s.delta = p.delta  # the prompt's delta from now on (a second turn's prompt extends the first)
        out_logits = logits[0] if sel == "all" else logits[0, -1]
        out_hidden = None
        if hidden:
            L = self.model_info["num_layers"]
            if len(cap) != L + 1:
                raise RuntimeError(f"hidden taps: captured {len(cap)} tensors, expected {L + 1}")
            out_hidden = torch.stack([h[0] for h in cap])
        return out_logits, out_hidden

    def decode(self, s, token):
        torch = self.torch
        if not 0 <= token < self.model_info["vocab_size"]:
            raise InputError(f"token {token} is outside the vocabulary")
        ids = torch.tensor([[token]], dtype=torch.int64, device=self.device)
        pos = torch.full((3, 1, 1), s.length + s.delta, dtype=torch.int64, device=self.device)
        logits, s.cache = self.forward(s.cache, input_ids=ids, position_ids=pos)
        s.length += 1
        return logits[0, -1]

    # ---- batches: transformers' left-padded batched call through one cache

    def batch_group(self, prompts, handles):
        torch = self.torch
        g = Group()
        g.B, g.M, g.done, g.cache = len(prompts), layout_len(prompts), 0, None
        g.prompt_handles = list(handles)
        H = self.model_info["hidden_size"]
        g.mask = torch.zeros((g.B, g.M), dtype=torch.int64, device=self.device)
        ids = torch.zeros((g.B, g.M), dtype=torch.int64, device=self.device)
        g.embeds = torch.zeros((g.B, g.M, H), dtype=self.dtype, device=self.device)
        grids = []
        for r, p in enumerate(prompts):
            pad = g.M - p.n
            g.mask[r, pad:] = 1
            ids[r, pad:] = p.ids
            g.embeds[r, pad:] = self.span_embeds(p, 0, p.n)
            g.embeds[r, :pad] = self.embed(ids[r, :pad])
            grids += [torch.tensor(x, dtype=torch.int64) for x in p.grids]
        grid = torch.stack(grids).to(self.device) if grids else None
        mm = (ids == self.image_token).to(torch.int64) * g.mask
        g.pos, delta = self.model.model.get_rope_index(ids, mm_token_type_ids=mm, image_grid_thw=grid,
                                                       attention_mask=g.mask)
        g.delta = [int(x) for x in delta.reshape(-1)]
        g.lengths = [p.n for p in prompts]
        return g

    def batch_prefill(self, g, a, b):
        logits, g.cache = self.forward(g.cache, inputs_embeds=g.embeds[:, a:b], attention_mask=g.mask[:, :b],
                                       position_ids=g.pos[:, :, a:b])
        g.done = b
        return logits

    def batch_decode(self, g, seqs, toks):
        torch = self.torch
        ids = torch.tensor(toks, dtype=torch.int64, device=self.device)[:, None]
        pos = torch.tensor([s.length + s.delta for s in seqs], dtype=torch.int64, device=self.device)
        pos = pos[None, :, None].expand(3, -1, 1)
        g.mask = torch.cat([g.mask, torch.ones((g.B, 1), dtype=torch.int64, device=self.device)], dim=1)
        logits, g.cache = self.forward(g.cache, input_ids=ids, attention_mask=g.mask, position_ids=pos)
        return logits[:, -1]

    # ---- taps

    def state(self, s):
        """The sequence's cache flattened layer by layer (f32, or f64 for a float64 model: every
        cache dtype converts exactly)."""
        return self.flat_cache(s.cache, 0, None)

    def state_row(self, g, r):
        """Row r of a batch's cache, its pad columns left out of the attention layers' keys and
        values (the row's own state, comparable with the same prompt run alone)."""
        return self.flat_cache(g.cache, r, g.mask[r].bool())

    def flat_cache(self, cache, r, real):
        torch = self.torch
        out_dt = torch.float64 if self.dtype == torch.float64 else torch.float32
        parts = []
        for layer in (cache.layers if cache is not None else []):
            if hasattr(layer, "conv_states"):
                for t in (layer.conv_states.get(0), layer.recurrent_states.get(0)):
                    if t is not None:
                        parts.append(t[r].reshape(-1).to(out_dt))
            if getattr(layer, "keys", None) is not None and torch.is_tensor(layer.keys):
                for t in (layer.keys[r], layer.values[r]):          # (heads, length, head_dim)
                    if real is not None:
                        t = t[:, real[: t.shape[1]]]
                    parts.append(t.reshape(-1).to(out_dt))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=out_dt)

    def vision(self, p):
        if p.features is None:
            return self.torch.zeros((0, self.model_info["hidden_size"]), dtype=self.dtype)
        return p.features

    # ---- gradients: torch autograd through transformers' own functions

    def vjp(self, fn, params, ins, grads, want):
        import importlib
        import numpy as np
        torch = self.torch
        F = torch.nn.functional
        M = importlib.import_module("transformers.models.qwen3_5.modeling_qwen3_5")

        def inp(name):
            if name not in ins:
                raise InputError(f"vjp {fn}: no input '{name}'")
            return ins[name]

        def leaf(name):
            return torch.as_tensor(np.ascontiguousarray(inp(name)), device=self.device).to(self.dtype).requires_grad_()

        def dout(name):
            g = grads.get(name)
            return None if g is None else torch.as_tensor(np.ascontiguousarray(g), device=self.device).to(self.dtype)

        def backward(outs, douts, leaves):
            terms = [(o * d).sum() for o, d in zip(outs, douts) if d is not None]
            if not terms:
                raise InputError(f"vjp {fn}: no output gradient")
            gs = torch.autograd.grad(sum(terms), leaves, allow_unused=True)
            return [torch.zeros_like(l) if g is None else g for g, l in zip(gs, leaves)]

        eps = float(params.get("eps", 1e-6))
        res = {}
        with torch.enable_grad():
            if fn in ("gdn_recurrent", "gdn_chunked"):
                names = ("q", "k", "v", "g", "beta", "state0")
                L = [leaf(n) for n in names]
                rep = L[2].shape[1] // L[0].shape[1]
                args = (L[0][None].repeat_interleave(rep, dim=2), L[1][None].repeat_interleave(rep, dim=2),
                        L[2][None], L[3][None], L[4][None])
                if fn == "gdn_chunked":
                    o, st = M.torch_chunk_gated_delta_rule(*args, chunk_size=int(params.get("chunk", 64)),
                                                           initial_state=L[5][None], output_final_state=True,
                                                           use_qk_l2norm_in_kernel=False)
                else:
                    o, st = M.torch_recurrent_gated_delta_rule(*args, initial_state=L[5][None],
                                                               output_final_state=True, use_qk_l2norm_in_kernel=False)
                o, st = o[0], st[0]
                gr = backward((o, st), (dout("d_out"), dout("d_state")), L)
                res = {"grad_" + n: g for n, g in zip(names, gr)}
                res.update(out=o, state=st)
            elif fn == "conv":
                L = [leaf(n) for n in ("x", "w", "state0")]
                n, C, K = L[0].shape[0], L[0].shape[1], L[1].shape[1]
                full = torch.cat([L[2], L[0]], dim=0).T[None]          # (1, C, K-1+n)
                conv = getattr(M, "causal_conv1d_fn", None)
                if conv is not None:
                    y = conv(full, L[1], None, activation="silu")
                else:
                    y = F.silu(F.conv1d(full, L[1][:, None, :], groups=C, padding=K - 1)[..., :full.shape[-1]])
                y = y[0].T[-n:]
                st = full[0].T[-(K - 1):]
                gr = backward((y, st), (dout("d_out"), dout("d_state")), L)
                res = dict(grad_x=gr[0], grad_w=gr[1], grad_state0=gr[2], out=y, state=st)
            elif fn == "l2norm":
                x = leaf("x")
                y = M.l2norm(x, dim=-1, eps=eps)
                res = dict(grad_x=backward((y,), (dout("d_out"),), [x])[0], out=y)
            elif fn in ("rmsnorm", "rmsnorm_gated"):
                x, w = leaf("x"), inp("w")
                gated = fn == "rmsnorm_gated"
                cls = M.Qwen3_5RMSNormGated if gated else M.Qwen3_5RMSNorm
                mod = cls(x.shape[-1], eps=eps).to(device=self.device, dtype=self.dtype)
                with torch.no_grad():
                    mod.weight.copy_(torch.as_tensor(np.ascontiguousarray(w)))
                L = [x, leaf("z")] if gated else [x]
                o = mod(*L)
                gr = backward((o,), (dout("d_out"),), L + [mod.weight])
                res = dict(grad_x=gr[0], grad_w=gr[-1], out=o)
                if gated:
                    res["grad_z"] = gr[1]
            elif fn == "rope":
                q, k = leaf("q"), leaf("k")
                pid = torch.as_tensor(inp("position_ids"), dtype=torch.int64, device=self.device)[:, None, :]
                cos, sin = self.lm.rotary_emb(q, pid)
                qo, ko = M.apply_rotary_pos_emb(q.transpose(0, 1)[None], k.transpose(0, 1)[None], cos, sin)
                qo, ko = qo[0].transpose(0, 1), ko[0].transpose(0, 1)
                gr = backward((qo, ko), (dout("d_q"), dout("d_k")), [q, k])
                res = dict(grad_q=gr[0], grad_k=gr[1], q_out=qo, k_out=ko)
            elif fn == "decoder_layer":
                res = self.vjp_layer(params, inp, leaf, dout, backward)
            else:
                raise InputError(f"vjp: unknown function '{fn[:64]}'")
        return {k: v.detach() for k, v in res.items() if k in want}

    def vjp_layer(self, params, inp, leaf, dout, backward):
        """One decoder layer as golden/export_grad.py runs it: no cache; a GDN layer gets the 2-D
        mask, an attention layer a causal additive mask and the rotary of position_ids."""
        import importlib
        torch = self.torch
        if "layer" not in params or not 0 <= int(params["layer"]) < len(self.lm.layers):
            raise InputError(f"vjp decoder_layer: parameter 'layer' missing or outside 0..{len(self.lm.layers) - 1}")
        layer = self.lm.layers[int(params["layer"])]
        x = leaf("x")
        n = x.shape[0]
        named = list(layer.named_parameters())
        pos = torch.as_tensor(inp("position_ids"), dtype=torch.int64, device=self.device)[:, None, :]
        if hasattr(layer, "linear_attn"):
            m2 = torch.as_tensor(inp("mask"), dtype=torch.int64, device=self.device)[None]
            gdn = layer.linear_attn
            M = importlib.import_module(type(layer).__module__)
            chunk = int(params.get("chunk", 64))
            if not hasattr(gdn, "chunk_gated_delta_rule"):
                raise Unsupported("vjp decoder_layer: this transformers' GDN layer has no chunk_gated_delta_rule "
                                  "to route the chunk length through")
            saved = gdn.chunk_gated_delta_rule
            if chunk > 0:
                gdn.chunk_gated_delta_rule = lambda *a, **kw: M.torch_chunk_gated_delta_rule(*a, chunk_size=chunk, **kw)
            else:
                gdn.chunk_gated_delta_rule = M.torch_recurrent_gated_delta_rule
            try:
                out = layer(x[None], position_embeddings=None, attention_mask=m2)
            finally:
                gdn.chunk_gated_delta_rule = saved
        else:
            pe = self.lm.rotary_emb(x[None], pos)
            neg = torch.finfo(self.dtype).min
            m4 = torch.full((n, n), neg, dtype=self.dtype, device=self.device).triu(1)[None, None]
            out = layer(x[None], position_embeddings=pe, attention_mask=m4, position_ids=pos)
        out = (out[0] if isinstance(out, tuple) else out)[0]
        gr = backward((out,), (dout("d_out"),), [x] + [p for _, p in named])
        res = {"grad_x": gr[0], "out": out}
        res.update({"grad_w/" + nm: g for (nm, _), g in zip(named, gr[1:])})
        return res

    def rope(self, positions):
        torch = self.torch
        pos = torch.tensor(positions, dtype=torch.int64, device=self.device)[:, None, :]   # (3, 1, n)
        x = torch.zeros((1, 1, 1), dtype=self.dtype, device=self.device)
        cos, sin = self.lm.rotary_emb(x, pos)
        half = self.rotary_dim // 2
        return torch.cat([cos[0, :, :half], sin[0, :, :half]], dim=-1)


# ---------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", choices=sorted(PRECISION), default="float32")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    ap.add_argument("--experts", default="eager",
                    help="MoE experts implementation passed to from_pretrained ('default': transformers' choice)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--tf32", choices=["default", "off"], default="default",
                    help="CUDA: 'off' disables TF32 in cuDNN convolutions and matmuls (PyTorch lets cuDNN use "
                         "TF32 for float32 convolutions by default)")
    args = ap.parse_args(argv)
    wire = Wire(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout = sys.stderr  # nothing but replies on the protocol stream
    try:
        backend = TransformersBackend(args)
    except ImportError as e:
        print(f"transformers_engine: {e} (needs numpy, torch and transformers)", file=sys.stderr)
        return 2
    Server(backend, wire).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
