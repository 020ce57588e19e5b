"""Import names are namespaced: nothing shadows the stdlib `operator`."""

from __future__ import annotations

import importlib
import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_stdlib_operator_is_not_shadowed() -> None:
    code = "import operator, hastack_operator; print(operator.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "site-packages" in out or "/lib/python3" in out, out


def test_every_package_folder_is_listed() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    listed = set(cfg["packages"])
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            dotted = ".".join([name, *rel.parts])
            assert dotted in listed, f"{init.parent} is a package but not listed in pyproject as {dotted}"
    for name in listed:
        importlib.import_module(name)


def test_cli_lists_components() -> None:
    out = subprocess.run([sys.executable, "-m", "hastack_common.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for component in ("operator", "heartbeat", "blockrepl", "mon", "fsinit"):
        assert component in out
    bad = subprocess.run([sys.executable, "-m", "hastack_common.cli", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown component 'nope'" in bad.stderr
