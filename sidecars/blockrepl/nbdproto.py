"""NBD wire codec (pure, no I/O): fixed-newstyle handshake, requests, simple and structured replies.

Reference: the NBD protocol document (proto.md of the NBD project). The server side only.
``ServerHandshake`` is a sans-I/O state machine: feed it bytes, send what it returns, and
when ``state`` is ``"transmission"`` hand the rest of the buffer to :func:`parse_requests`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS = 1, 2, 3, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 6, 7, 8

REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP = (1 << 31) + 1
REP_ERR_POLICY = (1 << 31) + 2
REP_ERR_INVALID = (1 << 31) + 3
REP_ERR_UNKNOWN = (1 << 31) + 6
REP_ERR_SHUTDOWN = (1 << 31) + 7
REP_ERR_TOO_BIG = (1 << 31) + 9

INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3

TF_HAS_FLAGS, TF_READ_ONLY, TF_SEND_FLUSH, TF_SEND_FUA = 1, 2, 4, 8
TF_SEND_TRIM, TF_SEND_WRITE_ZEROES, TF_SEND_DF, TF_CAN_MULTI_CONN = 32, 64, 128, 256
TF_SEND_FAST_ZERO = 2048

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 5, 6
CMD_NAMES = {0: "read", 1: "write", 2: "disc", 3: "flush", 4: "trim", 5: "cache", 6: "write_zeroes"}
CMDF_FUA, CMDF_NO_HOLE, CMDF_DF, CMDF_FAST_ZERO = 1, 2, 4, 16

REPLY_FLAG_DONE = 1
RT_NONE, RT_OFFSET_DATA, RT_ERROR = 0, 1, (1 << 15) + 1

EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 95, 108

MAX_OPTION = 64 << 10  # option payloads larger than this end the handshake
MAX_REQUEST = 32 << 20  # largest READ/WRITE payload served (advertised as the maximum block size)
MIN_BLOCK, PREF_BLOCK = 1, 4096

REQ = struct.Struct(">IHHQQI")  # magic, flags, type, cookie, offset, length
SIMPLE = struct.Struct(">IIQ")
STRUCTURED = struct.Struct(">IHHQI")
OPT_HDR = struct.Struct(">QII")
OPT_REP = struct.Struct(">QIII")


class ProtocolError(Exception):
    """The peer broke the protocol; the connection must be closed (no reply is possible)."""


@dataclass(frozen=True)
class Export:
    name: str
    size: int
    flags: int  # transmission flags (TF_*)
    description: str = ""


@dataclass
class Request:
    cmd: int
    flags: int
    cookie: int
    offset: int
    length: int
    data: bytes | memoryview = b""
    error: int = 0  # set by the parser when the request is well-framed but must be refused


def opt_reply(option: int, rtype: int, data: bytes = b"") -> bytes:
    return OPT_REP.pack(OPT_REPLY_MAGIC, option, rtype, len(data)) + data


@dataclass
class ServerHandshake:
    """Fixed-newstyle negotiation. ``state``: greeting -> options -> transmission | closed."""

    exports: dict[str, Export]
    default: str = ""
    state: str = "greeting"
    no_zeroes: bool = False
    structured: bool = False
    export: Export | None = None
    buf: bytearray = field(default_factory=bytearray)
    reason: str = ""
    refuse: Callable[[], str] | None = None  # returns why GO is refused now ("" to serve)

    def greeting(self) -> bytes:
        return struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)

    def feed(self, data: bytes) -> bytes:
        """Consume client bytes; return the bytes to send. Leftover bytes stay in ``buf``."""
        self.buf += data
        out = bytearray()
        while self.state in ("greeting", "options"):
            if self.state == "greeting":
                if len(self.buf) < 4:
                    break
                (cflags,) = struct.unpack_from(">I", self.buf)
                del self.buf[:4]
                if not cflags & FLAG_FIXED_NEWSTYLE or cflags & ~3:
                    self._close(f"client flags {cflags:#x} unsupported (fixed newstyle required)")
                    break
                self.no_zeroes = bool(cflags & FLAG_NO_ZEROES)
                self.state = "options"
                continue
            if len(self.buf) < OPT_HDR.size:
                break
            magic, option, length = OPT_HDR.unpack_from(self.buf)
            if magic != IHAVEOPT:
                self._close(f"bad option magic {magic:#x}")
                break
            if length > MAX_OPTION:
                self._close(f"option {option} payload of {length} bytes exceeds {MAX_OPTION}")
                break
            if len(self.buf) < OPT_HDR.size + length:
                break
            payload = bytes(self.buf[OPT_HDR.size : OPT_HDR.size + length])
            del self.buf[: OPT_HDR.size + length]
            out += self._option(option, payload)
        return bytes(out)

    def _close(self, reason: str) -> None:
        self.state, self.reason = "closed", reason

    def _option(self, option: int, payload: bytes) -> bytes:
        if option == OPT_ABORT:
            self._close("client aborted")
            return opt_reply(option, REP_ACK)
        if option == OPT_LIST:
            if payload:
                return opt_reply(option, REP_ERR_INVALID, b"LIST takes no data")
            return b"".join(
                opt_reply(option, REP_SERVER, struct.pack(">I", len(n.encode())) + n.encode()) for n in self.exports
            ) + opt_reply(option, REP_ACK)
        if option == OPT_STRUCTURED_REPLY:
            if payload:
                return opt_reply(option, REP_ERR_INVALID, b"STRUCTURED_REPLY takes no data")
            self.structured = True
            return opt_reply(option, REP_ACK)
        if option in (OPT_INFO, OPT_GO):
            return self._info_go(option, payload)
        if option == OPT_EXPORT_NAME:
            exp = self._lookup(payload.decode("utf-8", "replace"))
            if exp is None or (self.refuse and self.refuse()):
                self._close("EXPORT_NAME refused (unknown export or not serving)")
                return b""
            self.export, self.state = exp, "transmission"
            return struct.pack(">QH", exp.size, exp.flags) + (b"" if self.no_zeroes else bytes(124))
        return opt_reply(option, REP_ERR_UNSUP, f"option {option} not supported".encode())

    def _lookup(self, name: str) -> Export | None:
        return self.exports.get(name or self.default)

    def _info_go(self, option: int, payload: bytes) -> bytes:
        if len(payload) < 6:
            return opt_reply(option, REP_ERR_INVALID, b"truncated INFO/GO request")
        (nlen,) = struct.unpack_from(">I", payload)
        if 4 + nlen + 2 > len(payload):
            return opt_reply(option, REP_ERR_INVALID, b"export name overruns option")
        name = payload[4 : 4 + nlen].decode("utf-8", "replace")
        (nreq,) = struct.unpack_from(">H", payload, 4 + nlen)
        if 4 + nlen + 2 + 2 * nreq != len(payload):
            return opt_reply(option, REP_ERR_INVALID, b"information request count mismatch")
        wanted = set(struct.unpack_from(f">{nreq}H", payload, 6 + nlen))
        exp = self._lookup(name)
        if exp is None:
            return opt_reply(option, REP_ERR_UNKNOWN, f"no export named {name!r}".encode())
        why = self.refuse() if self.refuse and option == OPT_GO else ""
        if why:
            return opt_reply(option, REP_ERR_POLICY, why.encode())
        out = opt_reply(option, REP_INFO, struct.pack(">HQH", INFO_EXPORT, exp.size, exp.flags))
        if INFO_NAME in wanted:
            out += opt_reply(option, REP_INFO, struct.pack(">H", INFO_NAME) + exp.name.encode())
        if INFO_DESCRIPTION in wanted and exp.description:
            out += opt_reply(option, REP_INFO, struct.pack(">H", INFO_DESCRIPTION) + exp.description.encode())
        if INFO_BLOCK_SIZE in wanted:
            out += opt_reply(
                option, REP_INFO, struct.pack(">HIII", INFO_BLOCK_SIZE, MIN_BLOCK, PREF_BLOCK, MAX_REQUEST)
            )
        out += opt_reply(option, REP_ACK)
        if option == OPT_GO:
            self.export, self.state = exp, "transmission"
        return out


def parse_requests(buf: bytearray | bytes, pos: int, size: int) -> tuple[list[Request], int]:
    """Parse every complete request in ``buf[pos:]``; returns them and the new position.

    Framing errors (wrong magic, a WRITE payload over :data:`MAX_REQUEST`) raise
    :class:`ProtocolError`: the stream cannot be resynchronised. Well-framed but invalid
    requests come back with ``error`` set, to be answered with that errno.
    """
    reqs: list[Request] = []
    mv = memoryview(buf)
    end = len(buf)
    while end - pos >= REQ.size:
        magic, flags, cmd, cookie, offset, length = REQ.unpack_from(buf, pos)
        if magic != REQUEST_MAGIC:
            raise ProtocolError(f"bad request magic {magic:#x}")
        if cmd == CMD_WRITE:
            if length > MAX_REQUEST:
                raise ProtocolError(f"WRITE of {length} bytes exceeds the {MAX_REQUEST} maximum")
            if end - pos < REQ.size + length:
                break
            data: bytes | memoryview = mv[pos + REQ.size : pos + REQ.size + length]
            pos += REQ.size + length
        else:
            data = b""
            pos += REQ.size
        req = Request(cmd, flags, cookie, offset, length, data)
        req.error = validate(req, size)
        reqs.append(req)
    return reqs, pos


def validate(req: Request, size: int) -> int:
    if req.cmd not in CMD_NAMES:
        return EINVAL
    if req.cmd in (CMD_DISC, CMD_FLUSH):
        return 0 if req.cmd == CMD_DISC or (req.offset == 0 and req.length == 0) else EINVAL
    if req.cmd == CMD_READ and req.length > MAX_REQUEST:
        return EOVERFLOW
    if req.offset + req.length > size:
        return ENOSPC if req.cmd in (CMD_WRITE, CMD_WRITE_ZEROES) else EINVAL
    return 0


def simple_reply(cookie: int, error: int = 0) -> bytes:
    return SIMPLE.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def structured_data(cookie: int, offset: int, data_len: int) -> bytes:
    """Header of a final OFFSET_DATA chunk; the caller sends ``data_len`` bytes of data after it."""
    return STRUCTURED.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE, RT_OFFSET_DATA, cookie, 8 + data_len) + struct.pack(
        ">Q", offset
    )


def structured_done(cookie: int) -> bytes:
    return STRUCTURED.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE, RT_NONE, cookie, 0)


def structured_error(cookie: int, error: int, message: str = "") -> bytes:
    msg = message.encode()[:4096]
    return (
        STRUCTURED.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE, RT_ERROR, cookie, 6 + len(msg))
        + struct.pack(">IH", error, len(msg))
        + msg
    )


def reply(cookie: int, error: int, structured: bool, message: str = "") -> bytes:
    """A data-less final reply (WRITE, FLUSH, TRIM, ... or any error)."""
    if not structured:
        return simple_reply(cookie, error)
    return structured_error(cookie, error, message) if error else structured_done(cookie)


def read_reply_header(cookie: int, offset: int, length: int, structured: bool) -> bytes:
    return structured_data(cookie, offset, length) if structured else simple_reply(cookie)
