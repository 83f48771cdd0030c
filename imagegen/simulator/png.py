"""A minimal PNG encoder (solid colour), so the simulator needs no imaging library."""

from __future__ import annotations

import hashlib
import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """Encode a ``width`` x ``height`` 8-bit RGB PNG filled with ``rgb``."""
    row = b"\x00" + bytes(rgb) * width  # filter byte 0 (None) + pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b"")


def task_png(task_id: str, size: int = 64) -> bytes:
    """A small PNG whose colour is derived from the task id (different tasks, different bytes)."""
    digest = hashlib.sha256(task_id.encode()).digest()
    return solid_png(size, size, (digest[0], digest[1], digest[2]))
