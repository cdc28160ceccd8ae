#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Side-by-side benchmark: the reference engine (`logitcheck bench`) and transformers on the CPU
(bench/peer_transformers.py), on one synthetic checkpoint, the same prompt token ids and the
same thread count, run one after the other; prints the ratio table.

  bench/side_by_side.py [--logitcheck build/logitcheck] [--preset medium] [--model DIR]
                        [--threads 2,16] [--prompts 512,2048] [--decode 32] [--image 1920x1080]
                        [--repeat 2] [--work DIR] [--python python3] [--cpus 0,1]
                        [--engine-only | --peer-only [--grid T,H,W]] [--table-only]

Rows: prefill of each prompt length (one call, logits at every position), decode steps after
the first prompt length, and one image through the vision tower (the engine's grid for that
image size is passed to the peer), at each thread count. Ratio = engine rate / peer rate (for
the image, peer seconds / engine seconds): above 1 the engine is faster. The OpenBLAS kernel
set is printed (set OPENBLAS_CORETYPE to choose it; on a virtual machine OpenBLAS may fall
back to slow generic kernels). Both programs' JSON are kept in --work.

The checkpoint is `logitcheck synth --preset P --seed 1` (any preset synth knows, the
published shapes included: qwen3.5-0.8b), written once into --work, or --model DIR.
--cpus pins both programs to the CPUs of LIST ('0,1', '0-3'), so that measurements of few threads can run
at the same time on disjoint cores; --engine-only and --peer-only split one measurement into
two such runs sharing --work (the peer then needs the image's patch grid, --grid), and
--table-only prints the table from the JSON already in --work.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_list(spec):
    """'0,1' or '0-3,8' -> {0, 1} or {0, 1, 2, 3, 8}."""
    out = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def run(cmd, log, cpus=""):
    pin = cpu_list(cpus) if cpus else None
    print(("+ [cpus " + cpus + "] " if cpus else "+ ") + " ".join(cmd), flush=True)
    with open(log, "w") as f:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None)
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
    ap.add_argument("--peer-only", action="store_true", help="skip the logitcheck runs")
    ap.add_argument("--table-only", action="store_true", help="print the table from the JSON in --work")
    ap.add_argument("--model", default="", help="an existing checkpoint directory instead of synthesising one")
    ap.add_argument("--cpus", default="", help="CPU list both programs are pinned to, e.g. 0,1 or 0-3")
    ap.add_argument("--grid", default="", help="T,H,W patch grid for the peer when the engine is not run")
    a = ap.parse_args()

    os.makedirs(a.work, exist_ok=True)
    ckpt = a.model or os.path.join(a.work, "checkpoint")
    if not a.table_only and not os.path.exists(os.path.join(ckpt, "config.json")):
        if a.model:
            print(f"{ckpt}: no config.json", flush=True)
            return 2
        if not run([a.logitcheck, "synth", "--preset", a.preset, "--seed", "1", "--out", ckpt],
                   os.path.join(a.work, "synth.log")):
            return 1
    threads = [int(t) for t in a.threads.split(",") if t]
    prompts = [int(p) for p in a.prompts.split(",") if p]
    rows, extra = [], []
    for t in threads:
        eng = {}
        for i, n in enumerate(prompts):
            js = os.path.join(a.work, f"engine-t{t}-p{n}.json")
            if a.table_only or a.peer_only:
                if os.path.exists(js):
                    eng[n] = json.load(open(js))
                continue
            js = os.path.join(a.work, f"engine-t{t}-p{n}.json")
            cmd = [a.logitcheck, "bench", "--model", ckpt, "--threads", str(t), "--prompt", str(n),
                   "--decode", str(a.decode if i == 0 else 0), "--repeat", str(a.repeat), "--json", js]
            if i == 0 and a.image:
                cmd += ["--image", a.image]
            if run(cmd, js[:-5] + ".log", a.cpus):
                eng[n] = json.load(open(js))
        peer = {}
        js = os.path.join(a.work, f"peer-t{t}.json")
        if a.table_only or a.engine_only:
            if os.path.exists(js):
                peer = json.load(open(js))
        else:
            cmd = [a.python, os.path.join(HERE, "peer_transformers.py"), "--model", ckpt, "--threads", str(t),
                   "--prompt", ",".join(map(str, prompts)), "--decode", str(a.decode), "--repeat", str(a.repeat),
                   "--json", js]
            first = eng.get(prompts[0], {})
            if "vision" in first:
                cmd += ["--grid", ",".join(str(g) for g in first["vision"]["grid_thw"])]
            elif a.grid and a.image:
                cmd += ["--grid", a.grid]
            if run(cmd, js[:-5] + ".log", a.cpus):
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
        if "vision" in first or "vision" in peer:
            v = first.get("vision", {})
            g = v.get("grid_thw") or peer["vision"]["grid_thw"]
            es = v.get("seconds", {}).get("median")
            ps = peer.get("vision", {}).get("seconds")
            rows.append((f"{a.image} image ({g[0]}x{g[1]}x{g[2]} patches) through the vision tower, {t} threads",
                         es, ps, "s"))
    core = next((e["machine"]["openblas_core"] for e in
                 (json.load(open(os.path.join(a.work, f))) for f in sorted(os.listdir(a.work))
                  if f.startswith("engine-") and f.endswith(".json"))), "?")
    if a.peer_only:
        return 0
    peer_name = "transformers (CPU, float32)"
    for f in sorted(os.listdir(a.work)):
        if f.startswith("peer-") and f.endswith(".json"):
            peer_name = json.load(open(os.path.join(a.work, f)))["engine"]
    print()
    print(f"checkpoint: {'synthetic ' + a.preset if not a.model else ckpt} in {ckpt}; OpenBLAS kernels {core} "
          f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}); repeat {a.repeat}, medians")
    print()
    print(f"| | logitcheck | {peer_name} | ratio |")
    print("|---|---|---|---|")
    for name, e, p, unit in rows:
        digits = 3 if unit == "s" else 2
        fe = f"{e:.{digits}f} {unit}" if e else "-"
        fp = f"{p:.{digits}f} {unit}" if p else "-"
        # rates: engine / peer; seconds (the image): peer / engine; above 1 the engine is faster
        fr = (f"{p / e:.2f}x" if unit == "s" else f"{e / p:.2f}x") if e and p else "-"
        print(f"| {name} | {fe} | {fp} | {fr} |")
    print()
    for x in extra:
        print(x)
    return 0


if __name__ == "__main__":
    sys.exit(main())
