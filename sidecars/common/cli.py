"""The `hastack` command: one image, one entry point, one subcommand per component.

Each component package exposes ``main(argv) -> int`` in its ``__main__`` module; it is
imported only when chosen, so `hastack mon` never loads kopf or the Kubernetes client.
"""

from __future__ import annotations

import importlib
import sys

COMPONENTS = {
    "operator": ("hastack_operator.__main__", "the kopf operator"),
    "heartbeat": ("hastack_heartbeat.__main__", "membership, lease arbitration and failover sidecar"),
    "blockrepl": ("hastack_blockrepl.__main__", "block replication sidecar with an NBD frontend"),
    "mon": ("hastack_mon.__main__", "service probes, alert rules and receivers"),
    "fsinit": ("hastack_fsinit.__main__", "init container that lays down the filesystem"),
    "ctl": ("hastack_common.ctl", "talk to a sidecar's control socket"),
    "lab": ("harness.lab_cli", "the multi-node lab (from a source checkout)"),
}


def usage() -> str:
    lines = ["usage: hastack <component> [args...]", "", "components:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMPONENTS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMPONENTS:
        print(f"hastack: unknown component {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMPONENTS[name][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
