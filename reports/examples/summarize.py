#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Verdict counts and the worst check per case kind, one column per run, from results.json files.

    python3 reports/examples/summarize.py NAME=path/results.json [NAME=path/results.json ...]

The worst check of a kind is the one closest to (or furthest past) its bound over all of the
kind's cases: value / bound for bounded metrics where smaller is better, for a bitwise bound
(0) any non-zero value; top-1/cosine style metrics (bound a lower limit) as (1 - value) /
(1 - bound). Standard library only.
"""
import json
import math
import sys

LOWER_IS_BETTER_EXCEPT = {"top1_agree", "top1_agree_margin", "min_cosine", "topk_overlap_mean", "topk_overlap_min"}


def ratio(metric, value, bound):
    if not isinstance(value, (int, float)) or not isinstance(bound, (int, float)):
        return -1.0
    if metric in LOWER_IS_BETTER_EXCEPT:
        if bound >= 1.0:
            return math.inf if value < bound else 0.0
        return (1.0 - value) / (1.0 - bound)
    if bound == 0:
        return math.inf if value > 0 else 0.0
    return value / bound


def fmt(x):
    return "0" if x == 0 else f"{x:.3g}"


def summarize(runs):
    kinds, table = [], {}
    for name, path in runs:
        d = json.load(open(path))
        for c in d["cases"]:
            k = c["kind"]
            if k not in kinds:
                kinds.append(k)
            e = table.setdefault((k, name), {"pass": 0, "fail": 0, "error": 0, "skip": 0, "worst": None})
            e[c["verdict"]] += 1
            for cmp in c.get("comparisons", []):
                for ch in cmp.get("checks", []):
                    r = ratio(ch["metric"], ch["value"], ch["bound"])
                    w = e["worst"]
                    if w is None or r > w[0]:
                        e["worst"] = (r, ch["metric"], ch["value"], ch["bound"], c["name"], cmp["id"])
    names = [n for n, _ in runs]
    out = ["| kind | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in kinds:
        cells = []
        for n in names:
            e = table.get((k, n))
            if not e:
                cells.append("—")
                continue
            counts = ", ".join(f"{e[v]} {v}" for v in ("pass", "fail", "error", "skip") if e[v])
            w = e["worst"]
            if w is None:
                worst = ""
            elif w[0] == 0:
                worst = "<br>every check exactly 0"
            else:
                worst = f"<br>worst: {w[1]} {fmt(w[2])} (bound {fmt(w[3])}), `{w[4]}` `{w[5]}`"
            cells.append(counts + worst)
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    runs = [a.split("=", 1) for a in sys.argv[1:]]
    if not runs or any(len(r) != 2 for r in runs):
        sys.exit(__doc__)
    print(summarize(runs))
