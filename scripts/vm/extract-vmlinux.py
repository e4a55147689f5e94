#!/usr/bin/env python3
"""Extract the uncompressed ELF vmlinux from a bzImage (XZ, LZMA or gzip payload).

QEMU boots the ELF directly through its PVH entry point, which skips the in-guest decompression
(about 7 s under TCG). Usage: extract-vmlinux.py BZIMAGE OUTPUT
"""
import gzip
import lzma
import os
import sys
import zlib

ELF_MAGIC = b"\x7fELF"
# (name, magic, decompressor) in the order the Debian kernel is most likely to use them.
CANDIDATES = (
    ("xz", b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ)),
    ("lzma", b"\x5d\x00\x00", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)),
    ("gzip", b"\x1f\x8b\x08", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
)


def extract(image: bytes) -> bytes:
    for name, magic, make in CANDIDATES:
        start = image.find(magic)
        while start != -1:
            try:
                out = make().decompress(image[start:])
            except (lzma.LZMAError, zlib.error, gzip.BadGzipFile, EOFError):
                out = b""
            if out.startswith(ELF_MAGIC):
                return out
            start = image.find(magic, start + 1)
    raise SystemExit("error: no compressed ELF payload found in the kernel image")


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: extract-vmlinux.py BZIMAGE OUTPUT")
    with open(sys.argv[1], "rb") as f:
        image = f.read()
    elf = extract(image)
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "wb") as f:
        f.write(elf)
    os.replace(tmp, sys.argv[2])


if __name__ == "__main__":
    main()
