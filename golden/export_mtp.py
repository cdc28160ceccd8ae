#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Export float64 goldens of the MTP head (mtp_head cases of cases/*.json).

transformers has no MTP module (its Qwen3.5 classes drop mtp.* on load), so the head is
assembled here from transformers' own building blocks, the way vLLM's and sglang's
qwen3_5_mtp.py wire it:

    e   = RMSNorm(pre_fc_norm_embedding)(inputs_embeds[t + 1])   transformers' Qwen3_5RMSNorm
    h   = RMSNorm(pre_fc_norm_hidden)(final-normed hidden h_t)   (the main model's norm output)
    u   = nn.Linear(2H, H, bias=False)(cat([e, h]))              mtp.fc, embedding first
    u   = DecoderLayer(config with layer_types ["full_attention"], layer 0)(u)
          transformers' Qwen3_5DecoderLayer / Qwen3_5MoeDecoderLayer, loaded strictly from
          mtp.layers.0.*, causal over the MTP rows, rotary from the main model's rotary module
          at the main model's position of token t (3-D MRoPE)
    d   = RMSNorm(mtp.norm)(u);  logits = the main model's lm_head(d)

inputs_embeds are the main model's decoder inputs (vision rows merged), captured with a hook;
h_t is the output of the main model's final norm, captured with a hook (checked: lm_head(h)
reproduces the model's logits). The mtp.* tensors come from CKPT/mtp.safetensors (written by
make_mtp_weights.py). Everything runs on the CPU in float64 under export_hf.py's float64 lift.

Per case (group /cases/NAME): input_ids, position_ids, rope_delta, prefill_logits (T, V) of
the main model, mtp_logits (T - 1, V) teacher-forced (row t: h_t with token t + 1), and
chain_first (the greedy choice of the last prefill row), chain_tokens (K) and chain_logits
(K, V): K drafts chained after the prompt (draft j + 1 reads d of draft j as its hidden state
and draft j's embedding, one position further on; the text position len - 1 + delta + j).

    python3 golden/export_mtp.py --cases cases --out golden
"""

import argparse
import copy
import datetime
import json
import math
import os
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_hf as hf  # noqa: E402  (the same session, float64 lift and checkpoint hash)

HEAD_CHECK_TOL = 1e-12   # lm_head(captured final-normed hidden) vs the model's own logits


def mtp_classes(model_type):
    if "moe" in model_type:
        from transformers.models.qwen3_5_moe import modeling_qwen3_5_moe as m
        return m.Qwen3_5MoeDecoderLayer, m.Qwen3_5MoeRMSNorm
    from transformers.models.qwen3_5 import modeling_qwen3_5 as m
    return m.Qwen3_5DecoderLayer, m.Qwen3_5RMSNorm


class MTPHead:
    """The head, assembled from transformers' modules and the checkpoint's mtp.* tensors."""

    def __init__(self, torch, s):
        from safetensors.torch import load_file
        self.torch, self.s = torch, s
        path = os.path.join(s.ckpt, "mtp.safetensors")
        if not os.path.exists(path):
            raise hf.ExportError(f"{s.ckpt}: no mtp.safetensors (write it with golden/make_mtp_weights.py)")
        self.path = path
        tensors = {k: v.to(torch.float64) for k, v in load_file(path).items()}
        tc = copy.deepcopy(s.model.config.get_text_config())
        tc.layer_types = ["full_attention"]
        tc.num_hidden_layers = 1
        Layer, Norm = mtp_classes(s.config.model_type)
        H, eps = tc.hidden_size, tc.rms_norm_eps
        self.layer = Layer(tc, 0).to(torch.float64).eval()
        self.fc = torch.nn.Linear(2 * H, H, bias=False).to(torch.float64)
        self.pre_e = Norm(H, eps=eps).to(torch.float64)
        self.pre_h = Norm(H, eps=eps).to(torch.float64)
        self.norm = Norm(H, eps=eps).to(torch.float64)
        prefix = "mtp.layers.0."
        layer_sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = self.layer.load_state_dict(layer_sd, strict=False)
        missing = [k for k in missing if not k.endswith("inv_freq")]
        if missing or unexpected:
            raise hf.ExportError(f"{path}: the decoder layer's parameters do not match mtp.layers.0.*: missing "
                                 f"{missing}, unexpected {unexpected}")
        own = {"mtp.fc.weight": self.fc, "mtp.pre_fc_norm_embedding.weight": self.pre_e,
               "mtp.pre_fc_norm_hidden.weight": self.pre_h, "mtp.norm.weight": self.norm}
        for name, mod in own.items():
            if name not in tensors or tuple(tensors[name].shape) != tuple(mod.weight.shape):
                raise hf.ExportError(f"{path}: {name} missing or of the wrong shape")
            with torch.no_grad():
                mod.weight.copy_(tensors[name])
        left = set(tensors) - set(own) - {prefix + k for k in layer_sd}
        if left:
            raise hf.ExportError(f"{path}: tensors not used by the head: {sorted(left)}")
        for name, p in list(self.layer.named_parameters()) + [(n, m.weight) for n, m in own.items()]:
            if p.dtype != torch.float64:
                raise hf.ExportError(f"MTP parameter {name} is {p.dtype}")
        lm = s.model.model.language_model
        self.rotary = lm.rotary_emb
        self.lm_head = s.model.lm_head
        self.modules = [self.layer, self.fc, self.pre_e, self.pre_h, self.norm]

    def rows(self, emb, hid, pos):
        """emb, hid (n, H); pos (3, n) -> (d (n, H), logits (n, V)), causal over the n rows."""
        torch = self.torch
        n = emb.shape[0]
        x = self.fc(torch.cat([self.pre_e(emb), self.pre_h(hid)], dim=-1))[None]
        p = pos.reshape(3, 1, n).to(torch.int64)
        cos, sin = self.rotary(x, p)
        mask = torch.full((n, n), -math.inf, dtype=torch.float64).triu(1)[None, None]
        out = self.layer(x, position_embeddings=(cos, sin), attention_mask=mask, position_ids=p)
        out = out[0] if isinstance(out, tuple) else out
        d = self.norm(out)[0]
        return d, self.lm_head(d)


class Taps:
    """The decoder's input embeddings and the final norm's output during one forward."""

    def __init__(self, model):
        lm = model.model.language_model
        self.embeds = self.normed = None
        self.handles = [lm.register_forward_pre_hook(self._pre, with_kwargs=True),
                        lm.norm.register_forward_hook(self._norm)]

    def _pre(self, module, args, kwargs):
        self.embeds = kwargs.get("inputs_embeds")

    def _norm(self, module, inputs, output):
        self.normed = output

    def remove(self):
        for h in self.handles:
            h.remove()


def run_case(torch, s, head, taps, case):
    ids, images = s.expand(case["prompt"])
    K = int(case["draft_k"])
    pv, grid = s.vision_inputs(images)
    pos, delta = s.rope_index(ids, grid)
    pos, delta = pos[:, 0], int(delta[0])
    T = len(ids)
    out = s.forward(ids, pos[:, None, :], pv, grid, use_cache=False)
    logits = out.logits[0]
    emb, hid = taps.embeds[0], taps.normed[0]
    check = float((s.model.lm_head(hid) - logits).abs().max())
    if check > HEAD_CHECK_TOL:
        raise hf.ExportError(f"case '{case['name']}': lm_head(final-normed hidden) differs from the logits by "
                             f"{check:.3g}: the captured hidden state is not the final norm's output")
    # teacher-forced: row t pairs h_t with the input embedding of token t + 1
    _, mtp = head.rows(emb[1:], hid[:-1], pos[:, :-1])
    # chained drafts after the prompt
    first, _ = s.greedy(logits[-1])
    e_rows = [emb[t + 1] for t in range(T - 1)] + [s.model.model.language_model.embed_tokens.weight[first]]
    h_rows = [hid[t] for t in range(T)]
    p_cols = [pos[:, t] for t in range(T)]
    chain_tok, chain_rows, margins = [], [], []
    base = T - 1 + delta
    for j in range(K):
        d, lg = head.rows(torch.stack(e_rows), torch.stack(h_rows), torch.stack(p_cols, dim=1))
        row = lg[-1]
        tok, m = s.greedy(row)
        chain_tok.append(tok)
        chain_rows.append(row)
        margins.append(m)
        e_rows.append(s.model.model.language_model.embed_tokens.weight[tok])
        h_rows.append(d[-1])
        p_cols.append(torch.full((3,), base + j + 1, dtype=torch.int64))
    return dict(ids=ids, images=images, pos=pos, delta=delta, prefill=logits, mtp=mtp, first=first,
                chain_tokens=chain_tok, chain=torch.stack(chain_rows), chain_margin=min(margins),
                top1_margin=hf.top1_margin(logits, mtp, torch.stack(chain_rows)), head_check=check)


def export_file(torch, transformers, Lift, root, out_path, cases):
    ckpts = {hf.norm_rel(c["checkpoint"]) for c in cases}
    if len(ckpts) != 1:
        raise hf.ExportError(f"{out_path}: cases of several checkpoints share one golden file: {sorted(ckpts)}")
    ckpt_rel = ckpts.pop()
    t0 = time.time()
    s = hf.Session(torch, transformers, root, ckpt_rel)
    hf.rebuild_inv_freq(torch, s.model, s.config)
    s.preload(cases)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    taps = Taps(s.model)
    mode = Lift()
    results = []
    try:
        head = MTPHead(torch, s)
        hooks = [hf.DtypeHooks(torch, s.model)] + [hf.DtypeHooks(torch, m) for m in head.modules]
        with torch.no_grad(), mode:
            for c in cases:
                res = run_case(torch, s, head, taps, c)
                hf.log(f"  {c['name']:<32} T={len(res['ids'])} K={len(res['chain_tokens'])} images="
                       f"{len(res['images'])} head check {res['head_check']:.2e} top1 margin "
                       f"{res['top1_margin']:.2g} chain margin {res['chain_margin']:.2g} drafts {res['chain_tokens']}")
                results.append((c, res))
        low = sum(mode.low_outputs.values()) + sum(sum(h.bad.values()) for h in hooks)
        for h in hooks:
            h.remove()
        if low:
            raise hf.ExportError(f"{out_path}: {low} low-precision tensors in the forward "
                                 f"({dict(mode.low_outputs)})")
    finally:
        torch.set_default_dtype(old)
        taps.remove()
    attrs = {
        "format": hf.FORMAT, "format_version": np.int64(hf.FORMAT_VERSION),
        "generator": hf.versions(torch, transformers) + "; golden/export_mtp.py", "dtype": "float64",
        "device": "cpu", "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "checkpoint": ckpt_rel, "checkpoint_sha256": hf.checkpoint_hash(s.ckpt),
        "mtp_sha256": hf.sha256_of(head.path),
        "assembly": "fc(cat[RMSNorm_e(embeds[t+1]), RMSNorm_h(final-normed h_t)]) -> transformers "
                    f"{type(head.layer).__name__} (full_attention, strict mtp.layers.0.*) -> RMSNorm(mtp.norm) "
                    "-> lm_head; positions of token t; chained drafts one text position further on",
        "float64_lift": "export_hf.py's torch function mode; default dtype float64; inv_freq rebuilt",
    }
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
                g.attrs["top1_min_margin"] = res["top1_margin"]
                g.attrs["chain_min_margin"] = res["chain_margin"]
                g.attrs["check_head_max_abs"] = res["head_check"]
                hf.write_dataset(g, "input_ids", res["ids"], np.int64)
                if res["images"]:
                    g.create_dataset("images", data=res["images"], dtype=h5py.string_dtype())
                hf.write_dataset(g, "position_ids", hf.t2np(res["pos"]), np.int64)
                hf.write_dataset(g, "rope_delta", np.int64(res["delta"]))
                hf.write_dataset(g, "prefill_logits", hf.t2np(res["prefill"]), np.float64)
                hf.write_dataset(g, "mtp_logits", hf.t2np(res["mtp"]), np.float64)
                hf.write_dataset(g, "chain_first", np.int64(res["first"]))
                hf.write_dataset(g, "chain_tokens", res["chain_tokens"], np.int64)
                hf.write_dataset(g, "chain_logits", hf.t2np(res["chain"]), np.float64)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    hf.log(f"wrote {out_path} ({len(results)} cases, {time.time() - t0:.1f} s)")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="cases")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--root", default=os.path.dirname(here))
    args = ap.parse_args(argv)
    import torch
    import transformers
    cases = [c for c in hf.load_cases(args.cases) if c["kind"] == "mtp_head"]
    if not cases:
        raise hf.ExportError("no mtp_head case")
    torch.set_grad_enabled(False)
    Lift = hf.make_lift(torch)
    hf.lift_selftest(torch, Lift)
    groups = {}
    for c in cases:
        groups.setdefault(os.path.basename(c["golden"]), []).append(c)
    os.makedirs(args.out, exist_ok=True)
    for name, group in groups.items():
        export_file(torch, transformers, Lift, args.root, os.path.join(args.out, name), group)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except hf.ExportError as e:
        print(f"export_mtp: error: {e}", file=sys.stderr)
        sys.exit(1)
