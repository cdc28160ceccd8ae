#!/usr/bin/env python3
"""Side-by-side benchmark: the reference engine (`logitcheck bench`) and transformers on the CPU
(bench/peer_transformers.py), on one synthetic checkpoint, the same prompt token ids and the
same thread count, run one after the other; prints the ratio table.

  bench/side_by_side.py [--logitcheck build/logitcheck] [--preset medium] [--threads 2,16]
                        [--prompts 512,2048] [--decode 32] [--image 1920x1080] [--repeat 2]
                        [--work DIR] [--python python3]

Rows: prefill of each prompt length (one call, logits at every position), decode steps after
the first prompt length, and one image through the vision tower (the engine's grid for that
image size is passed to the peer), at each thread count. Ratio = engine rate / peer rate (for
the image, peer seconds / engine seconds): above 1 the engine is faster. The OpenBLAS kernel
set is printed (set OPENBLAS_CORETYPE to choose it; on a virtual machine OpenBLAS may fall
back to slow generic kernels). Both programs' JSON are kept in --work.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, log):
    print("+ " + " ".join(cmd), flush=True)
    with open(log, "w") as f:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        f.write(p.stdout)
    sys.stdout.write(p.stdout)
    if p.returncode:
        print(f"failed with exit code {p.returncode}: {' '.join(cmd)} (log {log})", flush=True)
    return p.returncode == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logitcheck", default="build/logitcheck")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--threads", default="2,16")
    ap.add_argument("--prompts", default="512,2048")
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--image", default="1920x1080", help="WxH, or '' for none")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--work", default="side-by-side")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--engine-only", action="store_true", help="skip the transformers runs")
    a = ap.parse_args()

    os.makedirs(a.work, exist_ok=True)
    ckpt = os.path.join(a.work, "checkpoint")
    if not os.path.exists(os.path.join(ckpt, "config.json")):
        if not run([a.logitcheck, "bench", "--preset", a.preset, "--synth-dir", ckpt, "--prompt", "8",
                    "--decode", "0", "--repeat", "1"], os.path.join(a.work, "synth.log")):
            return 1
    threads = [int(t) for t in a.threads.split(",") if t]
    prompts = [int(p) for p in a.prompts.split(",") if p]
    rows, extra = [], []
    for t in threads:
        eng = {}
        for i, n in enumerate(prompts):
            js = os.path.join(a.work, f"engine-t{t}-p{n}.json")
            cmd = [a.logitcheck, "bench", "--model", ckpt, "--threads", str(t), "--prompt", str(n),
                   "--decode", str(a.decode if i == 0 else 0), "--repeat", str(a.repeat), "--json", js]
            if i == 0 and a.image:
                cmd += ["--image", a.image]
            if run(cmd, js[:-5] + ".log"):
                eng[n] = json.load(open(js))
        peer = {}
        if not a.engine_only:
            js = os.path.join(a.work, f"peer-t{t}.json")
            cmd = [a.python, os.path.join(HERE, "peer_transformers.py"), "--model", ckpt, "--threads", str(t),
                   "--prompt", ",".join(map(str, prompts)), "--decode", str(a.decode), "--repeat", str(a.repeat),
                   "--json", js]
            first = eng.get(prompts[0], {})
            if "vision" in first:
                cmd += ["--grid", ",".join(str(g) for g in first["vision"]["grid_thw"])]
            if run(cmd, js[:-5] + ".log"):
                peer = json.load(open(js))
        for n in prompts:
            e = eng.get(n, {}).get("prefill", {}).get("tokens_per_second", {}).get("median")
            p = peer.get("prefill", {}).get(str(n), {}).get("tokens_per_second")
            rows.append((f"prefill {n} tokens, {t} threads", e, p, "tok/s"))
            if n in eng:
                m, pf = eng[n]["machine"], eng[n]["prefill"]
                st = pf["stage_seconds"]
                tot = sum(st.values()) or 1
                extra.append(f"{t} threads, prefill {n}: {pf['gflops_per_second']:.1f} GFLOP/s = "
                             f"{100 * pf['gflops_per_second'] / m['gemm_gflops']:.0f}% of the same-run {m['gemm']} "
                             f"({m['gemm_gflops']:.1f} GFLOP/s); stages " +
                             ", ".join(f"{k} {v:.2f} s ({100 * v / tot:.0f}%)" for k, v in st.items()))
        first = eng.get(prompts[0], {})
        e = first.get("decode", {}).get("tokens_per_second", {}).get("median")
        p = peer.get("decode", {}).get("tokens_per_second")
        rows.append((f"decode after {prompts[0]}, {t} threads", e, p, "tok/s"))
        if "vision" in first:
            v = first["vision"]
            g = v["grid_thw"]
            es = v["seconds"]["median"]
            ps = peer.get("vision", {}).get("seconds")
            rows.append((f"{a.image} image ({g[0]}x{g[1]}x{g[2]} patches) through the vision tower, {t} threads",
                         1 / es, 1 / ps if ps else None, "images/s"))
    core = next((e["machine"]["openblas_core"] for e in
                 (json.load(open(os.path.join(a.work, f))) for f in sorted(os.listdir(a.work))
                  if f.startswith("engine-") and f.endswith(".json"))), "?")
    peer_name = "transformers (CPU, float32)"
    for f in sorted(os.listdir(a.work)):
        if f.startswith("peer-") and f.endswith(".json"):
            peer_name = json.load(open(os.path.join(a.work, f)))["engine"]
    print()
    print(f"checkpoint: synthetic {a.preset} (bf16) in {ckpt}; OpenBLAS kernels {core} "
          f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}); repeat {a.repeat}, medians")
    print()
    print(f"| | logitcheck | {peer_name} | ratio |")
    print("|---|---|---|---|")
    for name, e, p, unit in rows:
        fe = f"{e:.2f} {unit}" if e else "-"
        fp = f"{p:.2f} {unit}" if p else "-"
        fr = f"{e / p:.2f}x" if e and p else "-"
        print(f"| {name} | {fe} | {fp} | {fr} |")
    print()
    for x in extra:
        print(x)
    return 0


if __name__ == "__main__":
    sys.exit(main())
