# SPDX-License-Identifier: MIT
"""Writes compare.h5: hand-made groups for the `logitcheck compare` tests (tests/cli).

Every group holds the datasets `compare` looks at. /ref is the expected side; each other group
differs from it in one known way (values chosen exactly representable, so the expected max abs
errors are exact). Run with any Python that has h5py and numpy:  python3 make_compare_h5.py
"""
import h5py
import numpy as np

prefill = np.array([[0.5, 1.0, -2.0, 3.0], [1.5, -0.25, 4.0, 0.0]])  # (P=2, V=4)
decode = np.array([[2.0, 0.0, -1.0, 1.0]])  # (1, 4)
pos = np.array([[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]], dtype=np.int64)  # (3, T=4)

with h5py.File("compare.h5", "w") as f:
    def group(name, p=prefill, d=decode, q=pos.reshape(3, 1, 4)):
        g = f.create_group(name)
        g["prefill_logits"] = p
        g["decode_logits"] = d
        g["position_ids"] = q
        return g

    group("ref")                                   # positions stored (3, 1, T), as transformers does
    group("flat", q=pos)                           # the same, positions (3, T)
    near = prefill.copy()
    near[0, 1] += 2.0 ** -10                       # |a - e| = 9.765625e-4 at position 0, index 1
    group("near", p=near)
    nan = prefill.copy()
    nan[1, 2] = np.nan                             # NaN at position 1, index 2
    group("nan", p=nan)
    inf = decode.copy()
    inf[0, 3] = np.inf                             # +inf at position 0, index 3 of decode
    group("inf", d=inf)
    off = pos.copy()
    off[2, 3] = 7                                  # component 2, position 3: 7 instead of 3
    group("pos_off", q=off)
    group("pos_count", q=np.zeros((3, 5), dtype=np.int64))  # 15 positions instead of 12
    group("wide", p=np.zeros((2, 5)))              # prefill (2, 5) against (2, 4)
    f.create_group("empty")                        # none of the compared datasets
