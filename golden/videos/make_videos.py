#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the video frames of golden/videos/ with the standard library only (zlib, struct).

Each video is a directory-free set of 8-bit RGB PNG frames NAME_fK.png (K = 0, 1, ...). The
pattern is smooth and moves with the frame index, so every frame differs from the others and
an engine that repeats one frame over a temporal patch, drops a frame or swaps two frames
gets other pixels. Sizes are chosen so that the video processor's smart_resize (over
t * h * w, factor 32, with the pixel budget of golden/tiny-*/video_preprocessor_config.json:
shortest_edge 8192, longest_edge 65536) takes each of its branches:

  a   8 frames, 50 x 100 (h x w)  round to 64 x 96 (in budget, resized)   grid (4, 4, 6)
  b   7 frames, 140 x 100         over budget: scaled down to 96 x 64;     grid (4, 6, 4)
                                  7 frames pad to 8 (the last repeated)
  c   2 frames, 20 x 30           below 32 px: scaled up, then under the   grid (1, 4, 6)
                                  minimum: scaled up to 64 x 96

Run from the repository root: /usr/bin/python3 golden/videos/make_videos.py
"""
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

VIDEOS = (("a", 8, 50, 100), ("b", 7, 140, 100), ("c", 2, 20, 30))


def chunk(tag, data):
    body = tag + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def write_png(path, width, height, rows):
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    out += chunk(b"IDAT", zlib.compress(raw, 9))
    out += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def frame(seed, k, h, w):
    """Rows of one frame: three phase-shifted waves that drift with k, plus a bright square
    that moves one step to the right per frame."""
    rows = []
    for y in range(h):
        row = bytearray()
        for x in range(w):
            u, v = x / w, y / h
            r = 128 + 100 * math.sin(2 * math.pi * (u * 1.5 + 0.11 * k + seed))
            g = 128 + 100 * math.cos(2 * math.pi * (v * 1.3 - 0.07 * k + 0.5 * u))
            b = 128 + 90 * math.sin(2 * math.pi * (u + v + 0.05 * k * (seed + 1)))
            sq = w // 8 + (k * w) // 16
            if sq <= x < sq + max(3, w // 6) and h // 4 <= y < h // 4 + max(3, h // 5):
                r, g, b = 250 - 3 * k, 240, 30 + 20 * k
            row += bytes(max(0, min(255, int(round(c)))) for c in (r, g, b))
        rows.append(bytes(row))
    return rows


def main():
    for i, (name, n, h, w) in enumerate(VIDEOS):
        for k in range(n):
            write_png(os.path.join(HERE, f"{name}_f{k}.png"), w, h, frame(0.37 * (i + 1), k, h, w))
    print("wrote", sum(n for _, n, _, _ in VIDEOS), "frames")


if __name__ == "__main__":
    main()
