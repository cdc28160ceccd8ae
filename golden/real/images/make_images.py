#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the real-scale test images of golden/real/images/ with the standard library only
(zlib, struct) and integer arithmetic only, so every run anywhere writes the same bytes.

  odd_500x375.png     500 x 375: neither side a multiple of 32 (resize rounds both)
  hd_1920x1080.png    1920 x 1080: above the max_pixels bound the HD case sets (1003520), so
                      smart_resize scales it down (floor branch)
  tiny_20x20.png      20 x 20: below min_pixels (65536), so smart_resize scales it up (ceil
                      branch)
  half_464x304.png    464 x 304: 464 / 32 = 14.5 and 304 / 32 = 9.5 exactly, so Python's
                      round-half-even gives 14 (down) and 10 (up) where round-half-up gives
                      15 and 10: an engine rounding half up gets a 480 x 320 grid instead of
                      448 x 320
  adj_a_256x256.png   256 x 256 (exactly min_pixels) and
  adj_b_448x192.png   448 x 192: the adjacent pair (two images with no text between them)

Each image is a smooth pattern (bands, discs, gradients) plus two bits of hash noise (none in the HD image, to keep it small on disk), different
per image, so that a patch-order or channel-order error changes the pixels an engine sees.
Rows use PNG filter 1 (Sub) so the large image stays small on disk.

Run from the repository root: python3 golden/real/images/make_images.py
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

IMAGES = [
    ("odd_500x375.png", 500, 375, 1),
    ("hd_1920x1080.png", 1920, 1080, 2),
    ("tiny_20x20.png", 20, 20, 3),
    ("half_464x304.png", 464, 304, 4),
    ("adj_a_256x256.png", 256, 256, 5),
    ("adj_b_448x192.png", 448, 192, 6),
]


def chunk(tag, data):
    body = tag + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def mix(z):
    """splitmix64 finaliser (integers only)."""
    z &= (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return z ^ (z >> 31)


def pixel(x, y, w, h, k):
    """RGB of pixel (x, y) of image k: integer arithmetic only."""
    cx, cy = (w * (k + 2)) // (k + 5), (h * (k + 1)) // (k + 4)
    d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy)
    r0 = (min(w, h) * (3 + k % 3)) // 8
    disc = 60 if d2 < r0 * r0 else 0
    band = ((x * (7 + k) + y * (3 + 2 * k)) * 256 // (w + h)) % 256
    grad = (y * 255) // max(h - 1, 1)
    noise = mix((k << 40) ^ (y << 20) ^ x) & 3 if w * h < 1000000 else 0  # the HD image stays small
    r = (band + disc + noise) % 256
    g = (grad + (x * 128) // max(w - 1, 1) + noise) % 256
    b = (255 - band + (k * 37) + disc // 2 + (noise >> 1)) % 256
    return r, g, b


def write_png(path, w, h, k):
    raw = bytearray()
    for y in range(h):
        row = bytearray()
        for x in range(w):
            row += bytes(pixel(x, y, w, h, k))
        sub = bytearray(len(row))
        for i in range(len(row)):
            sub[i] = (row[i] - (row[i - 3] if i >= 3 else 0)) & 255
        raw += b"\x01" + sub
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    out += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    out += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def main():
    for name, w, h, k in IMAGES:
        path = os.path.join(HERE, name)
        write_png(path, w, h, k)
        print(f"{path}: {w}x{h}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
