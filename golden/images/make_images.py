#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the extra test images of golden/images/ with the standard library only (zlib, struct).

  odd_50x70.png     50 x 70 RGB, 8 bit: a smooth deterministic pattern whose sides are not
                    multiples of 32, so the image processor must resize it.
  img_a_rgb16.png   golden/tiny-dense/img_a.png as 16-bit RGB. Every sample is v*257 + d with
                    a small deterministic d chosen so that the high byte and round(x / 257)
                    both give back v: a reader that strips or scales 16-bit samples to 8 bits
                    decodes exactly img_a, a reader that keeps the low byte does not.
  palette_64x64.png 64 x 64, an 8-bit palette (colour type 3) image of 216 colours (a 6x6x6
                    colour cube walked by a smooth pattern); sides are multiples of 32, so only
                    the palette expansion is exercised.

Run from the repository root: /usr/bin/python3 golden/images/make_images.py
"""
import math
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def chunk(tag, data):
    body = tag + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def write_png(path, width, height, depth, color_type, rows, palette=None):
    """rows: list of bytes objects, one per scanline (already packed); filter 0 everywhere."""
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", b"".join(bytes(c) for c in palette))
    out += chunk(b"IDAT", zlib.compress(raw, 9))
    out += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def read_png_rgb8(path):
    """Minimal reader for 8-bit RGB, non-interlaced PNGs: returns (width, height, rows of
    [r, g, b] lists)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    width, height, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype == 2 and interlace == 0, (path, hdr)
    raw = zlib.decompress(idat)
    bpp, stride = 3, width * 3
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
            else:
                assert ft == 0, ft
        rows.append([list(line[x * 3:x * 3 + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def odd_image():
    w, h = 50, 70
    rows = []
    for y in range(h):
        line = bytearray()
        for x in range(w):
            r = 128 + 100 * math.sin(x / 7.0 + y / 11.0)
            g = 128 + 90 * math.cos(x / 5.0 - y / 9.0)
            b = 40 + 2 * x + y
            line += bytes(int(round(v)) for v in (r, g, b))
        rows.append(bytes(line))
    write_png(os.path.join(HERE, "odd_50x70.png"), w, h, 8, 2, rows)


def rgb16_variant(width, height, pixels):
    rows = []
    for y in range(height):
        line = bytearray()
        for x in range(width):
            for ch, v in enumerate(pixels[y][x]):
                lo, hi = max(-v, -127), min(127, 255 - v)
                d = lo + (x * 7 + y * 13 + ch * 29) % (hi - lo + 1)
                s = v * 257 + d
                assert s >> 8 == v and (s + 128) // 257 == v and (s * 255 + 32767) // 65535 == v
                line += struct.pack(">H", s)
        rows.append(bytes(line))
    write_png(os.path.join(HERE, "img_a_rgb16.png"), width, height, 16, 2, rows)


def palette_image():
    w, h = 64, 64
    cube = [(r * 51, g * 51, b * 51) for r in range(6) for g in range(6) for b in range(6)]
    rows = []
    for y in range(h):
        line = bytearray()
        for x in range(w):
            r = int(round(2.5 + 2.5 * math.sin(x / 9.0 + y / 17.0)))
            g = int(round(2.5 + 2.5 * math.cos(y / 8.0 - x / 23.0)))
            b = (x // 11 + y // 13) % 6
            line.append(r * 36 + g * 6 + b)
        rows.append(bytes(line))
    write_png(os.path.join(HERE, "palette_64x64.png"), w, h, 8, 3, rows, cube)


def main():
    odd_image()
    w, h, px = read_png_rgb8(os.path.join(ROOT, "golden", "tiny-dense", "img_a.png"))
    rgb16_variant(w, h, px)
    palette_image()


if __name__ == "__main__":
    main()
