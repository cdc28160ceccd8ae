#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Peer benchmark: Hugging Face transformers on the CPU, on the same checkpoint, prompt and
thread count as `logitcheck bench`, so the two can be compared side by side.

  peer_transformers.py --model DIR --threads T [--prompt 512,2048] [--decode 32]
                       [--grid T,H,W] [--repeat R] [--json FILE]

float32 weights and activations (the checkpoint's bf16 values upcast, as the reference engine
does), torch.set_num_threads(T), the default attention implementation. Measured, each as the
median over R runs after one warm-up forward:
  prefill   a prompt of N tokens in one call with logits at every position, on a fresh cache,
            for each N of --prompt
  decode    --decode single-token steps after a prefill of the first --prompt length
  vision    the vision tower over one image of patch grid --grid (random patch values: the
            image processor is not timed; `logitcheck bench --image` reports the grid its
            preprocessing gives and the wrapper passes it on); its warm-up is one small image
The prompt token ids are those `logitcheck bench` uses: the same 64-bit LCG from seed 12345,
reduced modulo the vocabulary, skipping the image and video placeholder ids.

Needs numpy, torch and transformers only.
"""
import argparse
import json
import statistics
import sys
import time


def bench_tokens(n, vocab, skip, state):
    """The token stream of logitcheck bench (fill_tokens in harness/cli/cmd_bench.c)."""
    out = []
    mask = (1 << 64) - 1
    while len(out) < n:
        state = (state * 6364136223846793005 + 1442695040888963407) & mask
        t = (state >> 33) % vocab
        if t not in skip:
            out.append(t)
    return out, state


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory (e.g. from logitcheck bench --synth-dir)")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prompt", default="512", help="comma-separated prompt lengths")
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--grid", default="", help="T,H,W patch grid of one image for the vision tower")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    import numpy
    import torch
    import transformers

    torch.set_num_threads(a.threads)
    config = transformers.AutoConfig.from_pretrained(a.model)
    cls = {"qwen3_5": "Qwen3_5ForConditionalGeneration",
           "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"}[config.model_type]
    t0 = time.perf_counter()
    model = getattr(transformers, cls).from_pretrained(a.model, dtype=torch.float32)
    model.eval()
    load = time.perf_counter() - t0
    text = config.text_config
    vocab = text.vocab_size
    skip = {getattr(config, "image_token_id", -1), getattr(config, "video_token_id", -1)}
    prompts = [int(x) for x in a.prompt.split(",") if x]
    result = {
        "format": "logitcheck-peer", "version": 1,
        "engine": f"transformers {transformers.__version__} (torch {torch.__version__}, CPU, float32)",
        "threads": torch.get_num_threads(), "model": a.model, "load_seconds": load,
        "attn_implementation": getattr(model.config, "_attn_implementation", "?"),
        "numpy": numpy.__version__, "prefill": {}, "repeat": a.repeat,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }

    with torch.inference_mode():
        warm, _ = bench_tokens(16, vocab, skip, 12345)
        model(input_ids=torch.tensor([warm]), use_cache=True)
        for n in prompts:
            ids, _ = bench_tokens(n, vocab, skip, 12345)
            x = torch.tensor([ids])

            def prefill():
                out = model(input_ids=x, use_cache=True)
                assert out.logits.shape[1] == n          # logits at every position
            med, lo, hi = median_time(prefill, a.repeat)
            result["prefill"][str(n)] = {"seconds": med, "min": lo, "max": hi, "tokens_per_second": n / med}
            print(f"peer prefill {n} tokens: {n / med:.1f} tok/s median ({med:.3f} s)", flush=True)

        if a.decode > 0 and prompts:
            n = prompts[0]
            ids, state = bench_tokens(n, vocab, skip, 12345)
            feed, _ = bench_tokens(a.decode, vocab, skip, state)
            times = []
            for _ in range(a.repeat):
                out = model(input_ids=torch.tensor([ids]), use_cache=True)
                past = out.past_key_values
                t0 = time.perf_counter()
                for tok in feed:
                    out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
                    past = out.past_key_values
                times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            result["decode"] = {"steps": a.decode, "after": n, "seconds": med, "tokens_per_second": a.decode / med}
            print(f"peer decode {a.decode} steps after {n}: {a.decode / med:.2f} tok/s median", flush=True)

        if a.grid:
            g = [int(v) for v in a.grid.split(",")]
            vc = config.vision_config
            pd = vc.in_channels * vc.temporal_patch_size * vc.patch_size * vc.patch_size
            gen = torch.Generator().manual_seed(0)
            pv = torch.randn(g[0] * g[1] * g[2], pd, generator=gen, dtype=torch.float32)
            grid = torch.tensor([g])
            visual = model.model.visual

            def vision():
                visual(pv, grid_thw=grid)
            # warm-up on a small grid of the same tower (one merge block per side times 4): the
            # code paths are primed without a second full-size run
            m = getattr(vc, "spatial_merge_size", 2) * 4
            visual(torch.randn(m * m, pd, generator=gen, dtype=torch.float32), grid_thw=torch.tensor([[1, m, m]]))
            med, lo, hi = median_time(vision, a.repeat)
            result["vision"] = {"grid_thw": g, "seconds": med, "min": lo, "max": hi}
            print(f"peer vision grid {g}: {med:.3f} s median", flush=True)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
