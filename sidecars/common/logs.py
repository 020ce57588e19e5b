"""Structured logging for every hastack process: one line per record, key=value pairs."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)  # kopf's per-object loggers
        if isinstance(ref, dict) and ref.get("name"):
            fields["object"] = f"{ref.get('namespace') or ''}/{ref['name']}".lstrip("/")
        fields.update(getattr(record, "kv", {}))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def setup(level: str | None = None) -> None:
    """Configure the root logger once for a process (level from HASTACK_LOG_LEVEL)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("HASTACK_LOG_LEVEL", "INFO")).upper())


def kv(**fields: Any) -> dict[str, Any]:
    """``log.info("msg", extra=kv(peer=..., state=...))``."""
    return {"kv": fields}
