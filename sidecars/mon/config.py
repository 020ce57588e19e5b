"""Reading mon's configuration file (YAML or JSON, the ``MonConfig`` model) with errors that explain."""

from __future__ import annotations

import hashlib

import yaml
from pydantic import ValidationError

from hastack_common.config_mon import MonConfig


class ConfigError(Exception):
    """The configuration file cannot be used; the message names the file and the bad fields."""


def parse(text: str, path: str = "<config>") -> MonConfig:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'monitors', got {type(data).__name__}")
    try:
        return MonConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: invalid mon configuration ({exc.error_count()} error(s)):"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc


def read(path: str) -> tuple[MonConfig, str]:
    """The parsed file and a digest of its bytes (to notice changes)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read mon configuration {path}: {exc.strerror}") from exc
    return parse(text, path), digest(text)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
