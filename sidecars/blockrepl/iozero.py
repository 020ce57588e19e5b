"""Low-level disk writes: full pwrite, and zeroing a range cheaply (hole punch / BLKZEROOUT)."""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import stat
import struct

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
BLKZEROOUT = 0x127F
_ZEROS = bytes(1 << 20)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    mv = memoryview(data)
    while mv:
        n = os.pwrite(fd, mv, offset)
        mv, offset = mv[n:], offset + n


def _fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    return bool(_libc.fallocate(fd, mode, offset, length) == 0)


def zero_range(fd: int, offset: int, length: int, punch: bool = False) -> None:
    """Make ``[offset, offset+length)`` read as zeros on this disk (the same on every replica)."""
    if length <= 0:
        return
    if stat.S_ISREG(os.fstat(fd).st_mode):
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE if punch else FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
        if _fallocate(fd, mode, offset, length):
            return
    else:
        try:
            fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", offset, length))
            return
        except OSError:
            pass
    end = offset + length
    while offset < end:
        n = min(len(_ZEROS), end - offset)
        pwrite_all(fd, memoryview(_ZEROS)[:n], offset)
        offset += n
