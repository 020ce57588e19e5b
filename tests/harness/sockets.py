"""Small helpers for tests that drive a compiled loop over a real socket pair."""

from __future__ import annotations

import socket


def received(sock: socket.socket) -> bytes:
    """Everything waiting on a socket now (it is left non-blocking)."""
    sock.setblocking(False)
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except BlockingIOError:
        pass
    return data
